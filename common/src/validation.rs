//! What is wrong with a request, in terms free of any transport: domain code validates into
//! these, and each service's gRPC layer turns them into INVALID_ARGUMENT with a
//! `google.rpc.BadRequest` ([`crate::grpc::invalid_argument`]).

/// One invalid field of a request: its path (e.g. `customer.email`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}
