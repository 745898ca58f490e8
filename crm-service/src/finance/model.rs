//! The ERP's finance view of a customer, as mirrored in the CRM (pure, no I/O).

use chrono::{DateTime, Utc};
use tandem_common::validation::FieldViolation;

use crate::validation::{currency_problem, optional_text};

pub const PAYMENT_TERMS_MAX: usize = 32;

/// What the ERP reports; one currency for the limit and the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinanceData {
    pub currency: String,
    pub credit_limit_minor: i64,
    pub open_balance_minor: i64,
    pub payment_terms: Option<String>,
    pub credit_hold: bool,
}

/// The stored mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finance {
    pub data: FinanceData,
    pub source_version: i64,
    pub update_time: DateTime<Utc>,
}

impl FinanceData {
    /// Every rule the data breaks. `balance_currency` is the open balance's currency, which
    /// must equal the credit limit's.
    pub fn violations(&self, balance_currency: &str) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        if let Some(problem) = currency_problem(&self.currency) {
            violations.push(FieldViolation::new("credit_limit.currency_code", problem));
        }
        if self.credit_limit_minor < 0 {
            violations.push(FieldViolation::new(
                "credit_limit.amount_minor",
                "must not be negative",
            ));
        }
        if balance_currency != self.currency {
            violations.push(FieldViolation::new(
                "open_balance.currency_code",
                "must be the credit limit's currency",
            ));
        }
        if let Some(problem) = self
            .payment_terms
            .as_deref()
            .and_then(|t| optional_text(t, PAYMENT_TERMS_MAX))
        {
            violations.push(FieldViolation::new("payment_terms", problem));
        }
        violations
    }

    /// Headroom under the credit limit (negative when over it).
    pub fn available_credit_minor(&self) -> i64 {
        self.credit_limit_minor
            .saturating_sub(self.open_balance_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> FinanceData {
        FinanceData {
            currency: "EUR".into(),
            credit_limit_minor: 100_000,
            open_balance_minor: 25_000,
            payment_terms: Some("NET30".into()),
            credit_hold: false,
        }
    }

    #[test]
    fn valid_data_passes_and_each_fault_is_named() {
        assert!(data().violations("EUR").is_empty());
        assert_eq!(data().available_credit_minor(), 75_000);
        let bad = FinanceData {
            currency: "eur".into(),
            credit_limit_minor: -1,
            payment_terms: Some("x".repeat(PAYMENT_TERMS_MAX + 1)),
            ..data()
        };
        let fields: Vec<String> = bad.violations("USD").into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "credit_limit.currency_code",
                "credit_limit.amount_minor",
                "open_balance.currency_code",
                "payment_terms"
            ]
        );
    }
}
