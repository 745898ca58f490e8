//! The one mapping of the CRM's [`Error`] to `tonic::Status` (the domain knows no tonic).

use tandem_common::grpc;
use tonic::Status;

use crate::error::{ERROR_DOMAIN, Error, Reason};

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(violations) => grpc::invalid_argument(&violations),
            Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::Aborted(message) => Status::aborted(message),
            Error::FailedPrecondition {
                message,
                reason,
                metadata,
            } => grpc::failed_precondition(
                message,
                ERROR_DOMAIN,
                reason.map(Reason::as_str),
                metadata,
            ),
            Error::Database(error) => grpc::database_status(&error),
            Error::Encode(error) => grpc::internal("event encoding failed", &error),
            Error::Idempotency(error) => error.into_status(ERROR_DOMAIN),
        }
    }
}
