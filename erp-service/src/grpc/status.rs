//! The one mapping of the ERP's [`Error`] to `tonic::Status` (the domain knows no tonic).

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
            Error::Internal(detail) => grpc::internal("internal invariant broken", &detail),
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;
    use crate::error::Reason;

    #[test]
    fn preconditions_carry_error_info() {
        let status = Status::from(Error::precondition_info(
            "customer c1 is unknown",
            Reason::UnknownCustomer,
            [("customer_id", "c1".to_owned())],
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo detail");
        assert_eq!(info.reason, "UNKNOWN_CUSTOMER");
        assert_eq!(info.domain, "tandem.erp");
        assert_eq!(
            info.metadata.get("customer_id").map(String::as_str),
            Some("c1")
        );

        let plain = Status::from(Error::precondition("no"));
        assert_eq!(plain.code(), Code::FailedPrecondition);
        assert!(plain.get_error_details().error_info().is_none());
    }
}
