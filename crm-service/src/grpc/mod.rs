//! The gRPC surface: `tandem.crm.v1.CrmService` ([`CrmApi`]) for the sales desk and
//! `tandem.crm.v1.CrmSync` ([`SyncApi`]) for the bridge. Handlers only translate between
//! messages and the domain; conversions live next to each domain's messages.

mod access;
mod catalogue;
mod customers;
mod orders;
mod service;
mod status;
mod sync;

pub use access::ACCESS;
pub use service::CrmApi;
pub use sync::SyncApi;

use prost::Message;
use tandem_common::{
    auth,
    idempotency::{Answer, Once, RequestKey},
};
use tandem_proto::crm::v1 as pb;
use tonic::{Response, Status};
use uuid::Uuid;

use crate::error::Error;

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
fn reply<T, M: Message + Default>(
    answer: Answer<T>,
    to_proto: impl FnOnce(&T) -> M,
) -> Result<Response<M>, Status> {
    Ok(Response::new(answer.reply(to_proto).map_err(Error::from)?))
}

fn parse_id(field: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// An optional UUID filter: empty means "any".
fn parse_optional_id(field: &str, id: &str) -> Result<Option<Uuid>, Error> {
    if id.is_empty() {
        Ok(None)
    } else {
        parse_id(field, id).map(Some)
    }
}

/// An enum field's value, refused when unknown: proto3 enums are open, and prost's getters
/// would silently read an unknown value as the default (e.g. "any status").
fn known<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Error> {
    E::try_from(value).map_err(|_| Error::invalid(field, format!("unknown value {value}")))
}

/// Optimistic concurrency: a version of 0 (unset) means "unconditional".
fn expected_version(version: i64) -> Option<i64> {
    (version != 0).then_some(version)
}

fn money(currency: &str, amount_minor: i64) -> pb::Money {
    pb::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    }
}

/// Empty (or blank) text is "not set".
fn optional(text: &str) -> Option<String> {
    crate::validation::blank_to_none(Some(text.to_owned()))
}

/// Versions from the ERP start at 1.
fn source_version(version: i64) -> Result<i64, Error> {
    if version > 0 {
        Ok(version)
    } else {
        Err(Error::invalid("source_version", "must be positive"))
    }
}
