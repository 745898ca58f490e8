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

    /// This violation with its path put under `prefix` (`customer.`, `customers[3].`).
    ///
    /// The convention in both services: domain code validates a value with paths relative to
    /// that value (`email`, `lines[0].sku`); the gRPC layer, which knows where the value sits
    /// in the request, puts them under its path.
    #[must_use]
    pub fn under(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}{}", self.field),
            description: self.description,
        }
    }
}

/// Every violation of `violations` put under `prefix` ([`FieldViolation::under`]).
pub fn under(prefix: &str, violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    violations.into_iter().map(|v| v.under(prefix)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_put_under_the_prefix() {
        let found = under(
            "customers[3].",
            vec![
                FieldViolation::new("email", "not an email"),
                FieldViolation::new("addresses[0].city", "required"),
            ],
        );
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["customers[3].email", "customers[3].addresses[0].city"]
        );
        assert_eq!(found[0].description, "not an email");
    }
}
