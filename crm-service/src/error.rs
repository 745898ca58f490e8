//! The CRM's error type, free of any transport; `grpc/status.rs` maps it to
//! `tonic::Status`, once.

use tandem_common::{
    idempotency::IdempotencyError,
    outbox::OutboxError,
    validation::{self, FieldViolation},
};

/// The `domain` of every `google.rpc.ErrorInfo` the CRM returns.
pub const ERROR_DOMAIN: &str = "tandem.crm";

/// `ErrorInfo` reasons, shared with the bridge.
pub use tandem_proto::reasons::Reason;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Aborted(String),
    /// The request is valid but the system is not in a state to perform it. With a `reason`
    /// (one of [`reasons`]), the status carries a machine-readable `google.rpc.ErrorInfo` in
    /// domain [`ERROR_DOMAIN`] with `metadata`, so callers can act on it.
    #[error("{message}")]
    FailedPrecondition {
        message: String,
        reason: Option<Reason>,
        metadata: Vec<(&'static str, String)>,
    },
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
    /// A request id reused for another request, or its store failing.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        // A broken connection must not stay warm (see tandem_common::pool).
        tandem_common::pool::note_error(&error);
        Self::Database(error)
    }
}

impl Error {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(resource: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    /// FAILED_PRECONDITION without a machine-readable reason.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            message: message.into(),
            reason: None,
            metadata: Vec::new(),
        }
    }

    /// FAILED_PRECONDITION with an `ErrorInfo` of `reason` and `metadata`.
    pub fn precondition_info(
        message: impl Into<String>,
        reason: Reason,
        metadata: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Self {
        Self::FailedPrecondition {
            message: message.into(),
            reason: Some(reason),
            metadata: metadata.into_iter().collect(),
        }
    }

    /// The machine-readable reason of a FAILED_PRECONDITION, if any.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::FailedPrecondition { reason, .. } => *reason,
            _ => None,
        }
    }

    /// This error with every field violation's path put under `prefix` (e.g. `customer.`).
    pub fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::Invalid(violations) => Self::Invalid(validation::under(prefix, violations)),
            other => other,
        }
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid(vec![violation])
    }
}

/// `Ok(())` when there are no violations, else `Error::Invalid` with all of them.
pub fn check(violations: Vec<FieldViolation>) -> Result<()> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(violations))
    }
}

impl From<OutboxError> for Error {
    fn from(error: OutboxError) -> Self {
        match error {
            OutboxError::Encode(error) => Self::Encode(error),
            OutboxError::Database(error) => Self::Database(error),
        }
    }
}
