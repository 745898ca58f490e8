//! Who may call each method of the public API (`tandem.erp.v1.ErpService`): the roles in the
//! caller's bearer token. A method missing here is refused. `docs/api-erp.md` prints this
//! table; the internal port (`ErpSync`) is for client certificates, not tokens.

use tandem_common::auth::{Access, AccessTable, Role};

const EVERYONE: Access = Access::Roles(&[
    Role::ReadOnly,
    Role::Sales,
    Role::Warehouse,
    Role::Finance,
    Role::Admin,
]);
const WAREHOUSE: Access = Access::Roles(&[Role::Warehouse, Role::Admin]);
const FINANCE: Access = Access::Roles(&[Role::Finance, Role::Admin]);
const ADMIN: Access = Access::Roles(&[Role::Admin]);

pub const ACCESS: AccessTable = &[
    ("/grpc.health.v1.Health/*", Access::Anyone),
    ("/grpc.reflection.v1.ServerReflection/*", Access::Anyone),
    (
        "/grpc.reflection.v1alpha.ServerReflection/*",
        Access::Anyone,
    ),
    ("/tandem.erp.v1.ErpService/CreateProduct", WAREHOUSE),
    ("/tandem.erp.v1.ErpService/GetProduct", EVERYONE),
    ("/tandem.erp.v1.ErpService/ListProducts", EVERYONE),
    ("/tandem.erp.v1.ErpService/UpdateProduct", WAREHOUSE),
    ("/tandem.erp.v1.ErpService/CreateWarehouse", ADMIN),
    ("/tandem.erp.v1.ErpService/ListWarehouses", EVERYONE),
    ("/tandem.erp.v1.ErpService/ReceiveStock", WAREHOUSE),
    ("/tandem.erp.v1.ErpService/AdjustStock", WAREHOUSE),
    ("/tandem.erp.v1.ErpService/TransferStock", WAREHOUSE),
    ("/tandem.erp.v1.ErpService/GetStockLevel", EVERYONE),
    ("/tandem.erp.v1.ErpService/ListStockLevels", EVERYONE),
    ("/tandem.erp.v1.ErpService/ListStockMovements", EVERYONE),
    ("/tandem.erp.v1.ErpService/GetCustomer", EVERYONE),
    ("/tandem.erp.v1.ErpService/ListCustomers", EVERYONE),
    ("/tandem.erp.v1.ErpService/SetCreditTerms", FINANCE),
    ("/tandem.erp.v1.ErpService/RecordPayment", FINANCE),
    ("/tandem.erp.v1.ErpService/GetSalesOrder", EVERYONE),
    ("/tandem.erp.v1.ErpService/ListSalesOrders", EVERYONE),
    ("/tandem.erp.v1.ErpService/ReleaseCreditHold", FINANCE),
    ("/tandem.erp.v1.ErpService/ShipOrder", WAREHOUSE),
    ("/tandem.erp.v1.ErpService/InvoiceOrder", FINANCE),
];
