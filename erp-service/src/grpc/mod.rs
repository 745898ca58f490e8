//! The ERP's gRPC layer, laid out as the CRM's: `service` (`tandem.erp.v1.ErpService`, the
//! public API), `sync` (`tandem.erp.v1.ErpSync`, for the bridge), `convert` (messages to the
//! domain and back), `status` (the one Error -> Status mapping), `access` (the role table).

mod access;
mod convert;
mod service;
mod status;
mod sync;

pub use access::ACCESS;

use prost::Message;
use tandem_common::{
    auth,
    idempotency::{Answer, Once, RequestKey},
    validation::FieldViolation,
};
use tandem_proto::erp::v1::{self as pb};
use tonic::{Response, Status};

use crate::{
    customers::Customers,
    error::Error,
    finance::Finances,
    inventory::{MovementOutcome, Stock},
    orders::Orders,
    products::Products,
    republish::Republisher,
    restore::{self, Restore},
    warehouses::Warehouses,
};

/// Every domain service the gRPC surfaces use.
#[derive(Clone)]
pub struct ErpApi {
    pub customers: Customers,
    pub products: Products,
    pub warehouses: Warehouses,
    pub stock: Stock,
    pub finances: Finances,
    pub orders: Orders,
    pub republisher: Republisher,
    pub restore: Restore,
}

/// Most entities in one `LiftVersions` or `RecoverProducts` call.
const RESYNC_BATCH: usize = 500;

fn lifted(key: String, lifted: restore::Lifted) -> pb::LiftedVersion {
    let outcome = match lifted.outcome {
        restore::Outcome::Current => pb::LiftOutcome::Current,
        restore::Outcome::Lifted => pb::LiftOutcome::Lifted,
        restore::Outcome::Recovered => pb::LiftOutcome::Recovered,
        restore::Outcome::Missing => pb::LiftOutcome::Missing,
    };
    pb::LiftedVersion {
        key,
        outcome: outcome as i32,
        previous_version: lifted.previous_version,
        version: lifted.version,
    }
}

/// Every bad floor of a `LiftVersions` request, by field.
fn floor_violations(field: &str, floors: &[pb::VersionFloor]) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    for (i, floor) in floors.iter().enumerate() {
        if floor.key.trim().is_empty() {
            violations.push(FieldViolation::new(format!("{field}[{i}].key"), "required"));
        }
        if floor.mirror_version <= 0 {
            violations.push(FieldViolation::new(
                format!("{field}[{i}].mirror_version"),
                "must be positive",
            ));
        }
    }
    violations
}

type Reply<T> = Result<Response<T>, Status>;

/// Most customers in one `ApplyCustomers` call.
const APPLY_CUSTOMERS_MAX: usize = 1_000;
/// Most orders in one `AcceptOrders` call.
const ACCEPT_ORDERS_MAX: usize = 1_000;

fn reference(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The idempotency of a call to `method` (its full gRPC path): `None` without a request id
/// (read through `request_id`), else the id under the caller's subject, and how the result is
/// encoded for a retry. A malformed id is INVALID_ARGUMENT naming `request_id`.
fn once<M: Message + Clone, T>(
    method: &'static str,
    request: &M,
    request_id: impl FnOnce(&mut M) -> &mut String,
    encode: fn(&T) -> Vec<u8>,
) -> Result<Option<Once<T>>, Error> {
    Ok(
        RequestKey::of(method, auth::current_subject(), request, request_id)?
            .map(|key| Once::new(key, encode)),
    )
}

/// The response of a fresh result or of a replayed one.
fn reply<T, M: Message + Default>(answer: Answer<T>, to_proto: impl FnOnce(&T) -> M) -> Reply<M> {
    Ok(Response::new(answer.reply(to_proto).map_err(Error::from)?))
}

fn movement_result(outcome: &MovementOutcome) -> pb::StockMovementResult {
    pb::StockMovementResult {
        levels: outcome.levels.iter().map(convert::level).collect(),
        movements: outcome.movements.iter().map(convert::movement).collect(),
        reserved_orders: outcome.reserved_orders.clone(),
    }
}
