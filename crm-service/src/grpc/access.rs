//! Who may call each method of the public API (`tandem.crm.v1.CrmService`): the roles in the
//! caller's bearer token. A method missing here is refused. `docs/api-crm.md` prints this
//! table; the internal port (`CrmSync`) is for client certificates, not tokens.

use tandem_common::auth::{Access, AccessTable, Role};

const EVERYONE: Access = Access::Roles(&[
    Role::ReadOnly,
    Role::Sales,
    Role::Warehouse,
    Role::Finance,
    Role::Admin,
]);
const SALES: Access = Access::Roles(&[Role::Sales, Role::Admin]);

pub const ACCESS: AccessTable = &[
    ("/grpc.health.v1.Health/*", Access::Anyone),
    ("/grpc.reflection.v1.ServerReflection/*", Access::Anyone),
    (
        "/grpc.reflection.v1alpha.ServerReflection/*",
        Access::Anyone,
    ),
    ("/tandem.crm.v1.CrmService/CreateCustomer", SALES),
    ("/tandem.crm.v1.CrmService/GetCustomer", EVERYONE),
    ("/tandem.crm.v1.CrmService/ListCustomers", EVERYONE),
    ("/tandem.crm.v1.CrmService/UpdateCustomer", SALES),
    ("/tandem.crm.v1.CrmService/ArchiveCustomer", SALES),
    ("/tandem.crm.v1.CrmService/CreateOrder", SALES),
    ("/tandem.crm.v1.CrmService/GetOrder", EVERYONE),
    ("/tandem.crm.v1.CrmService/ListOrders", EVERYONE),
    ("/tandem.crm.v1.CrmService/UpdateOrder", SALES),
    ("/tandem.crm.v1.CrmService/SubmitOrder", SALES),
    ("/tandem.crm.v1.CrmService/RequestOrderCancellation", SALES),
    ("/tandem.crm.v1.CrmService/ListProducts", EVERYONE),
    ("/tandem.crm.v1.CrmService/GetAvailability", EVERYONE),
];
