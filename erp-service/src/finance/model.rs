//! Customer finance and the pure rules over it: the credit check and due dates.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tandem_proto::events::erp::CustomerFinanceChangedV1;
use uuid::Uuid;

/// Credit terms a customer gets until finance sets others (settings `finance.*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FinanceDefaults {
    /// Credit limit in minor units. 0 (the default) puts every order of a customer without
    /// terms on CREDIT_HOLD until finance sets a limit or releases the order.
    pub credit_limit_minor: i64,
    /// ISO 4217 currency of the credit limit and the open balance.
    pub currency: String,
    /// Days from invoice to due date.
    pub payment_terms_days: i32,
}

impl Default for FinanceDefaults {
    fn default() -> Self {
        Self {
            credit_limit_minor: 0,
            currency: "EUR".to_owned(),
            payment_terms_days: 30,
        }
    }
}

/// The finance the ERP owns for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finance {
    pub customer_id: Uuid,
    pub credit_limit_minor: i64,
    pub currency: String,
    pub payment_terms_days: i32,
    /// Invoiced minus paid; negative is a credit.
    pub open_balance_minor: i64,
    pub credit_hold: bool,
    /// 0 until the first change.
    pub version: i64,
    pub update_time: DateTime<Utc>,
}

impl Finance {
    pub fn defaults(customer_id: Uuid, defaults: &FinanceDefaults) -> Self {
        Self {
            customer_id,
            credit_limit_minor: defaults.credit_limit_minor,
            currency: defaults.currency.clone(),
            payment_terms_days: defaults.payment_terms_days,
            open_balance_minor: 0,
            credit_hold: false,
            version: 0,
            update_time: Utc::now(),
        }
    }

    pub fn changed_event(&self) -> CustomerFinanceChangedV1 {
        CustomerFinanceChangedV1 {
            customer_id: self.customer_id.to_string(),
            credit_limit_minor: self.credit_limit_minor,
            currency: self.currency.clone(),
            payment_terms_days: self.payment_terms_days,
            open_balance_minor: self.open_balance_minor,
            credit_hold: self.credit_hold,
        }
    }
}

/// Finance plus what the credit check also counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinanceView {
    pub finance: Finance,
    /// Total of accepted, not yet invoiced orders (RESERVED, BACKORDERED, SHIPPED).
    pub uninvoiced_minor: i64,
}

/// A partial change of the terms: `Some` fields replace the stored ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermsPatch {
    pub credit_limit: Option<(i64, String)>,
    pub payment_terms_days: Option<i32>,
    pub credit_hold: Option<bool>,
}

/// The outcome of the credit check for a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditDecision {
    Approved,
    Hold(String),
}

/// Open balance + uninvoiced accepted orders + this order must stay within the limit, and
/// the customer must not be on credit hold.
pub fn credit_check(
    finance: &Finance,
    uninvoiced_minor: i64,
    order_total_minor: i64,
) -> CreditDecision {
    if finance.credit_hold {
        return CreditDecision::Hold("customer is on credit hold".to_owned());
    }
    let exposure = i128::from(finance.open_balance_minor)
        + i128::from(uninvoiced_minor)
        + i128::from(order_total_minor);
    if exposure > i128::from(finance.credit_limit_minor) {
        CreditDecision::Hold(format!(
            "credit limit exceeded: open balance {} + uninvoiced orders {} + this order {} > \
             limit {} {}",
            finance.open_balance_minor,
            uninvoiced_minor,
            order_total_minor,
            finance.credit_limit_minor,
            finance.currency
        ))
    } else {
        CreditDecision::Approved
    }
}

/// The due date of an invoice issued on `issue_date` under `terms_days` payment terms.
pub fn due_date(issue_date: NaiveDate, terms_days: i32) -> Option<NaiveDate> {
    let days = u64::try_from(terms_days).ok()?;
    issue_date.checked_add_days(Days::new(days))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finance(limit: i64, open: i64) -> Finance {
        Finance {
            credit_limit_minor: limit,
            open_balance_minor: open,
            ..Finance::defaults(Uuid::nil(), &FinanceDefaults::default())
        }
    }

    #[test]
    fn exposure_within_the_limit_is_approved_up_to_the_last_cent() {
        assert_eq!(
            credit_check(&finance(1000, 300), 200, 500),
            CreditDecision::Approved
        );
        assert!(matches!(
            credit_check(&finance(1000, 300), 200, 501),
            CreditDecision::Hold(reason) if reason.contains("credit limit exceeded")
        ));
        // A credit balance (overpayment) adds headroom.
        assert_eq!(
            credit_check(&finance(100, -50), 0, 150),
            CreditDecision::Approved
        );
        // The default limit 0 holds every priced order; a free one passes.
        assert!(matches!(
            credit_check(&finance(0, 0), 0, 1),
            CreditDecision::Hold(_)
        ));
        assert_eq!(credit_check(&finance(0, 0), 0, 0), CreditDecision::Approved);
    }

    #[test]
    fn a_customer_on_hold_is_held_whatever_the_amount() {
        let on_hold = Finance {
            credit_hold: true,
            ..finance(1_000_000, 0)
        };
        assert_eq!(
            credit_check(&on_hold, 0, 1),
            CreditDecision::Hold("customer is on credit hold".to_owned())
        );
    }

    #[test]
    fn huge_amounts_do_not_overflow() {
        assert!(matches!(
            credit_check(&finance(i64::MAX, i64::MAX), i64::MAX, i64::MAX),
            CreditDecision::Hold(_)
        ));
    }

    #[test]
    fn due_dates_follow_the_terms_across_months_and_leap_years() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        assert_eq!(due_date(date(2028, 2, 15), 30), Some(date(2028, 3, 16)));
        assert_eq!(due_date(date(2027, 2, 15), 30), Some(date(2027, 3, 17)));
        assert_eq!(due_date(date(2026, 12, 20), 14), Some(date(2027, 1, 3)));
        assert_eq!(due_date(date(2026, 5, 1), 0), Some(date(2026, 5, 1)));
        assert_eq!(due_date(date(2026, 5, 1), -1), None);
    }
}
