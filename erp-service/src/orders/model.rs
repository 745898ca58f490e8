//! Sales orders: what they hold, the legal status transitions, and what makes a new one valid.

use chrono::{DateTime, NaiveDate, Utc};
use tandem_common::validation::FieldViolation;
use tandem_proto::events::erp::{InvoiceV1, OrderStatusChangedV1};
use uuid::Uuid;

pub use tandem_proto::events::erp::OrderStatus;

use crate::{money::currency_problem, products::is_sku, stock::plan::Need};

/// Most lines an order may have.
pub const MAX_LINES: usize = 500;

/// Where a reserved line's stock is, or was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    /// Counted in the level's `reserved`.
    Held,
    /// Given back when the order was cancelled.
    Released,
    /// Left the warehouse with the shipment.
    Shipped,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Released => "RELEASED",
            Self::Shipped => "SHIPPED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Held, Self::Released, Self::Shipped]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub warehouse: String,
    pub quantity: i64,
    pub state: ReservationState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line_number: i32,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub reservations: Vec<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub number: String,
    pub amount_minor: i64,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    pub crm_order_id: String,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    pub version: i64,
    pub invoice: Option<Invoice>,
    pub lines: Vec<Line>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl Order {
    /// The distinct skus of the order's lines.
    pub fn skus(&self) -> Vec<String> {
        let mut skus: Vec<String> = self.lines.iter().map(|l| l.sku.clone()).collect();
        skus.sort();
        skus.dedup();
        skus
    }

    pub fn needs(&self) -> Vec<Need> {
        self.lines
            .iter()
            .map(|l| Need {
                line_number: l.line_number,
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect()
    }

    pub fn status_event(&self) -> OrderStatusChangedV1 {
        OrderStatusChangedV1 {
            order_id: self.id.to_string(),
            crm_order_id: self.crm_order_id.clone(),
            customer_id: self.customer_id.to_string(),
            status: self.status,
            reason: self.reason.clone(),
            currency: self.currency.clone(),
            total_minor: self.total_minor,
            invoice: self.invoice.as_ref().map(|invoice| InvoiceV1 {
                invoice_number: invoice.number.clone(),
                amount_minor: invoice.amount_minor,
                issue_date: invoice.issue_date.to_string(),
                due_date: invoice.due_date.to_string(),
            }),
        }
    }
}

/// Can an order go from `from` to `to`? (Acceptance is not a transition: it creates the
/// order in RESERVED, BACKORDERED, CREDIT_HOLD or REJECTED.)
pub fn can_transition(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::*;
    matches!(
        (from, to),
        (Backordered, Reserved)
            | (CreditHold, Reserved | Backordered)
            | (Reserved, Shipped)
            | (Shipped, Invoiced)
            | (Reserved | Backordered | CreditHold, Cancelled)
    )
}

/// A line of an order the CRM submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// An order the CRM submitted, as `ErpSync.AcceptOrder` receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub crm_order_id: String,
    pub customer_id: Uuid,
    pub currency: String,
    pub lines: Vec<NewLine>,
    /// Record unknown customers or skus as REJECTED instead of failing.
    pub final_attempt: bool,
}

impl NewOrder {
    /// Every problem, by request field path.
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let id_length = self.crm_order_id.chars().count();
        if id_length == 0 || id_length > 128 {
            violations.push(FieldViolation::new("crm_order_id", "1..=128 characters"));
        }
        violations.extend(crate::text::nul_violation(
            "crm_order_id",
            &self.crm_order_id,
        ));
        if let Some(problem) = currency_problem(&self.currency) {
            violations.push(FieldViolation::new("currency_code", problem));
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            violations.push(FieldViolation::new("lines", "1..=500 lines"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            if !is_sku(&line.sku) {
                violations.push(FieldViolation::new(
                    format!("lines[{i}].sku"),
                    "not a valid sku",
                ));
            }
            if line.quantity <= 0 {
                violations.push(FieldViolation::new(
                    format!("lines[{i}].quantity"),
                    "must be positive",
                ));
            }
            if line.unit_price_minor < 0 {
                violations.push(FieldViolation::new(
                    format!("lines[{i}].unit_price_minor"),
                    "must not be negative",
                ));
            }
        }
        if violations.is_empty() && self.total_minor().is_none() {
            violations.push(FieldViolation::new("lines", "order total is too large"));
        }
        violations
    }

    /// Sum of quantity x unit price, or `None` on overflow.
    pub fn total_minor(&self) -> Option<i64> {
        self.lines.iter().try_fold(0_i64, |total, line| {
            line.quantity
                .checked_mul(line.unit_price_minor)
                .and_then(|amount| total.checked_add(amount))
        })
    }

    /// The distinct skus of the order's lines.
    pub fn skus(&self) -> Vec<String> {
        let mut skus: Vec<String> = self.lines.iter().map(|l| l.sku.clone()).collect();
        skus.sort();
        skus.dedup();
        skus
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(lines: Vec<NewLine>) -> NewOrder {
        NewOrder {
            crm_order_id: "crm-1".into(),
            customer_id: Uuid::nil(),
            currency: "EUR".into(),
            lines,
            final_attempt: false,
        }
    }

    fn line(sku: &str, quantity: i64, unit_price_minor: i64) -> NewLine {
        NewLine {
            sku: sku.into(),
            quantity,
            unit_price_minor,
        }
    }

    #[test]
    fn the_transition_table() {
        use OrderStatus::*;
        let legal = [
            (Backordered, Reserved),
            (CreditHold, Reserved),
            (CreditHold, Backordered),
            (Reserved, Shipped),
            (Shipped, Invoiced),
            (Reserved, Cancelled),
            (Backordered, Cancelled),
            (CreditHold, Cancelled),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    can_transition(from, to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn totals_and_violations() {
        let good = order(vec![line("A", 2, 150), line("B", 1, 1000), line("A", 1, 0)]);
        assert!(good.violations().is_empty());
        assert_eq!(good.total_minor(), Some(1300));
        assert_eq!(good.skus(), ["A", "B"]);

        let bad = NewOrder {
            crm_order_id: String::new(),
            currency: "eur".into(),
            ..order(vec![line("", 0, -1)])
        };
        let fields: Vec<String> = bad.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "crm_order_id",
                "currency_code",
                "lines[0].sku",
                "lines[0].quantity",
                "lines[0].unit_price_minor"
            ]
        );
        assert_eq!(order(vec![]).violations().len(), 1);
        let huge = order(vec![line("A", i64::MAX, 2)]);
        assert_eq!(huge.total_minor(), None);
        assert_eq!(huge.violations()[0].description, "order total is too large");
    }
}
