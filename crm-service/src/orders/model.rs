//! Sales orders: lines, quoting, money totals and the lifecycle rules (pure, no I/O).
//!
//! The CRM owns `DRAFT -> SUBMITTED -> CANCEL_REQUESTED`; the ERP decides the fulfilment
//! ([`FulfilmentStatus`]), which is mirrored here and can end the CRM lifecycle
//! ([`status_after`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use tandem_common::validation::FieldViolation;
use tandem_proto::events::crm::{OrderLineV1, OrderStatus, OrderV1};
use uuid::Uuid;

use crate::{
    catalogue::Product,
    error::{Error, Result},
    validation::{currency_problem, optional_text, required_text, sku_problem, token_problem},
};

pub const LINES_MAX: usize = 200;
/// Lines of an order placed by an integrator (`CrmSync.PlaceExternalOrder`).
pub const EXTERNAL_LINES_MAX: usize = 500;
pub const EXTERNAL_REF_MAX: usize = 100;
pub const QUANTITY_MAX: i64 = 1_000_000;
pub const REASON_MAX: usize = 500;
pub const INVOICE_NUMBER_MAX: usize = 64;

/// Fulfilment status decided by the ERP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FulfilmentStatus {
    Reserved,
    Backordered,
    CreditHold,
    Rejected,
    Shipped,
    Invoiced,
    Cancelled,
}

impl FulfilmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Backordered => "BACKORDERED",
            Self::CreditHold => "CREDIT_HOLD",
            Self::Rejected => "REJECTED",
            Self::Shipped => "SHIPPED",
            Self::Invoiced => "INVOICED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "RESERVED" => Self::Reserved,
            "BACKORDERED" => Self::Backordered,
            "CREDIT_HOLD" => Self::CreditHold,
            "REJECTED" => Self::Rejected,
            "SHIPPED" => Self::Shipped,
            "INVOICED" => Self::Invoiced,
            "CANCELLED" => Self::Cancelled,
            _ => return None,
        })
    }

    /// After these the ERP can no longer cancel the order.
    pub fn is_final_or_shipped(self) -> bool {
        matches!(
            self,
            Self::Rejected | Self::Shipped | Self::Invoiced | Self::Cancelled
        )
    }
}

/// A line as the sales desk asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRequest {
    pub sku: String,
    pub quantity: i64,
}

/// A quoted line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line_number: i32,
    pub sku: String,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

impl Line {
    /// quantity x unit price, `None` on overflow.
    pub fn total_minor(&self) -> Option<i64> {
        self.quantity.checked_mul(self.unit_price_minor)
    }
}

/// The ERP's view of an order, as mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulfilment {
    pub update: FulfilmentUpdate,
    pub source_version: i64,
    pub update_time: DateTime<Utc>,
}

/// What one `ApplyOrderStatus` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfilmentUpdate {
    pub status: FulfilmentStatus,
    pub rejection_reason: Option<String>,
    pub invoice_number: Option<String>,
    /// Currency and amount in minor units.
    pub invoice_amount: Option<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// The currency of every line; `None` while there are no lines.
    pub currency: Option<String>,
    pub lines: Vec<Line>,
    pub cancellation_reason: Option<String>,
    /// Counts CRM changes; the aggregate_version of order events.
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub submit_time: Option<DateTime<Utc>>,
    pub fulfilment: Option<Fulfilment>,
    /// The integrator's reference, for orders placed by `PlaceExternalOrder`.
    pub external_ref: Option<String>,
}

/// An order an integrator places (`CrmSync.PlaceExternalOrder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalOrder {
    /// The integrator's order reference: the idempotency key.
    pub external_ref: String,
    pub customer_external_ref: String,
    /// The currency the integrator expects; every line must be priced in it.
    pub currency: String,
    pub lines: Vec<LineRequest>,
}

impl ExternalOrder {
    /// Shape rules (before the database is consulted).
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let reference = |value: &str| {
            required_text(value, EXTERNAL_REF_MAX)
                .or_else(|| token_problem(value, EXTERNAL_REF_MAX, "-_.:/"))
        };
        if let Some(problem) = reference(&self.external_ref) {
            violations.push(FieldViolation::new("external_ref", problem));
        }
        if let Some(problem) = reference(&self.customer_external_ref) {
            violations.push(FieldViolation::new("customer_external_ref", problem));
        }
        if let Some(problem) = currency_problem(&self.currency) {
            violations.push(FieldViolation::new("currency_code", problem));
        }
        if self.lines.is_empty() {
            violations.push(FieldViolation::new("lines", "at least one line"));
        }
        violations.extend(lines_violations_up_to(&self.lines, EXTERNAL_LINES_MAX));
        violations
    }

    /// Lines priced in another currency than the order's, with `lines[i].sku` paths.
    pub fn currency_violations(&self, catalogue: &HashMap<String, Product>) -> Vec<FieldViolation> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| {
                let price_currency = &catalogue.get(&line.sku)?.data.currency;
                (price_currency != &self.currency).then(|| {
                    FieldViolation::new(
                        format!("lines[{i}].sku"),
                        format!(
                            "priced in {price_currency} in the catalogue, but the order is in {}",
                            self.currency
                        ),
                    )
                })
            })
            .collect()
    }
}

/// Filters of ListOrders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub customer_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
}

impl OrderFilter {
    pub fn fingerprint(&self) -> String {
        format!(
            "orders|{:?}|{:?}",
            self.customer_id,
            self.status.map(OrderStatus::as_str)
        )
    }
}

impl Order {
    /// Sum of the line totals. Quoting refuses lines whose total would overflow, so stored
    /// orders always fit; saturating keeps this total even for a corrupt row.
    pub fn total_minor(&self) -> i64 {
        self.lines.iter().fold(0_i64, |sum, line| {
            sum.saturating_add(line.total_minor().unwrap_or(i64::MAX))
        })
    }

    /// Lines can change only while the order is a draft.
    pub fn check_editable(&self) -> Result<()> {
        if self.status == OrderStatus::Draft {
            Ok(())
        } else {
            Err(Error::precondition(format!(
                "order {} is {}; only a DRAFT order can be edited",
                self.id,
                self.status.as_str()
            )))
        }
    }

    /// `DRAFT -> SUBMITTED` needs a draft with at least one line.
    pub fn check_submittable(&self) -> Result<()> {
        if self.status != OrderStatus::Draft {
            return Err(Error::precondition(format!(
                "order {} is {}; only a DRAFT order can be submitted",
                self.id,
                self.status.as_str()
            )));
        }
        if self.lines.is_empty() {
            return Err(Error::precondition(format!(
                "order {} has no lines; add at least one before submitting",
                self.id
            )));
        }
        Ok(())
    }

    /// The status a cancellation request leads to: a draft (unknown to the ERP) is cancelled
    /// at once, a submitted order waits for the ERP. `None`: already requested, nothing to do.
    pub fn cancellation_target(&self) -> Result<Option<OrderStatus>> {
        match self.status {
            OrderStatus::Draft => Ok(Some(OrderStatus::Cancelled)),
            OrderStatus::CancelRequested => Ok(None),
            OrderStatus::Cancelled => Err(Error::precondition(format!(
                "order {} is already CANCELLED",
                self.id
            ))),
            OrderStatus::Submitted => match self.fulfilment.as_ref().map(|f| f.update.status) {
                Some(status) if status.is_final_or_shipped() => Err(Error::precondition(format!(
                    "order {} is {} in the ERP and can no longer be cancelled",
                    self.id,
                    status.as_str()
                ))),
                _ => Ok(Some(OrderStatus::CancelRequested)),
            },
        }
    }

    /// The state the CRM owns, as published (`crm.order.submitted`,
    /// `crm.order.cancel_requested`).
    pub fn event(&self) -> OrderV1 {
        OrderV1 {
            order_id: self.id.to_string(),
            customer_id: self.customer_id.to_string(),
            status: self.status,
            currency: self.currency.clone().unwrap_or_default(),
            lines: self
                .lines
                .iter()
                .map(|line| OrderLineV1 {
                    line_number: u32::try_from(line.line_number).unwrap_or_default(),
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                    line_total_minor: line.total_minor().unwrap_or(i64::MAX),
                })
                .collect(),
            total_minor: self.total_minor(),
            submitted_at: self
                .submit_time
                .unwrap_or(self.update_time)
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            cancellation_reason: self.cancellation_reason.clone(),
        }
    }
}

/// Shape rules of requested lines (before the catalogue is consulted).
pub fn line_violations(requests: &[LineRequest]) -> Vec<FieldViolation> {
    lines_violations_up_to(requests, LINES_MAX)
}

/// Shape rules of requested lines, at most `max` of them.
fn lines_violations_up_to(requests: &[LineRequest], max: usize) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if requests.len() > max {
        violations.push(FieldViolation::new("lines", format!("at most {max} lines")));
    }
    let mut seen = HashSet::new();
    for (i, line) in requests.iter().enumerate() {
        if let Some(problem) = sku_problem(&line.sku) {
            violations.push(FieldViolation::new(format!("lines[{i}].sku"), problem));
        } else if !seen.insert(line.sku.as_str()) {
            violations.push(FieldViolation::new(
                format!("lines[{i}].sku"),
                "appears more than once; put the whole quantity on one line",
            ));
        }
        if !(1..=QUANTITY_MAX).contains(&line.quantity) {
            violations.push(FieldViolation::new(
                format!("lines[{i}].quantity"),
                format!("must be between 1 and {QUANTITY_MAX}"),
            ));
        }
    }
    violations
}

/// Quotes `requests` from the catalogue mirror: every sku must be an orderable product, all in
/// one currency, and the totals must fit in 64 bits. Returns the order currency and the lines.
pub fn quote(
    requests: &[LineRequest],
    catalogue: &HashMap<String, Product>,
) -> Result<(Option<String>, Vec<Line>)> {
    let violations = line_violations(requests);
    if !violations.is_empty() {
        return Err(Error::Invalid(violations));
    }
    price(requests, catalogue)
}

/// Prices lines whose shape was checked: every sku must be an orderable product, all in one
/// currency, and the totals must fit in 64 bits. Returns the order currency and the lines.
pub fn price(
    requests: &[LineRequest],
    catalogue: &HashMap<String, Product>,
) -> Result<(Option<String>, Vec<Line>)> {
    let mut violations = Vec::new();
    let mut currency: Option<String> = None;
    let mut lines = Vec::with_capacity(requests.len());
    let mut total: i64 = 0;
    for (i, request) in requests.iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        let Some(product) = catalogue.get(&request.sku) else {
            violations.push(FieldViolation::new(field("sku"), "not in the catalogue"));
            continue;
        };
        if !product.orderable() {
            violations.push(FieldViolation::new(
                field("sku"),
                "the product is not active in the catalogue",
            ));
            continue;
        }
        let price_currency = &product.data.currency;
        match &currency {
            None => currency = Some(price_currency.clone()),
            Some(order_currency) if order_currency != price_currency => {
                violations.push(FieldViolation::new(
                    field("sku"),
                    format!(
                        "priced in {price_currency}, but the order is in {order_currency}; \
                         one currency per order"
                    ),
                ));
                continue;
            }
            Some(_) => {}
        }
        let line = Line {
            line_number: i32::try_from(i + 1).unwrap_or(i32::MAX),
            sku: request.sku.clone(),
            product_name: product.data.name.clone(),
            quantity: request.quantity,
            unit_price_minor: product.data.unit_price_minor,
        };
        match line.total_minor().and_then(|t| total.checked_add(t)) {
            Some(sum) => total = sum,
            None => violations.push(FieldViolation::new(
                field("quantity"),
                "the order total would exceed the largest amount",
            )),
        }
        lines.push(line);
    }
    if violations.is_empty() {
        Ok((currency, lines))
    } else {
        Err(Error::Invalid(violations))
    }
}

/// The CRM status after the ERP reported `fulfilment`: its cancellation ends the order;
/// shipping ends a pending cancellation request (too late to cancel).
pub fn status_after(current: OrderStatus, fulfilment: FulfilmentStatus) -> OrderStatus {
    match (current, fulfilment) {
        (OrderStatus::Submitted | OrderStatus::CancelRequested, FulfilmentStatus::Cancelled) => {
            OrderStatus::Cancelled
        }
        (OrderStatus::CancelRequested, FulfilmentStatus::Shipped | FulfilmentStatus::Invoiced) => {
            OrderStatus::Submitted
        }
        (status, _) => status,
    }
}

impl FulfilmentUpdate {
    /// Every rule the update breaks; an invoice must be in the order's currency.
    pub fn violations(&self, order_currency: Option<&str>) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        if let Some(problem) = self
            .rejection_reason
            .as_deref()
            .and_then(|r| optional_text(r, REASON_MAX))
        {
            violations.push(FieldViolation::new("rejection_reason", problem));
        }
        if self.status == FulfilmentStatus::Rejected && self.rejection_reason.is_none() {
            violations.push(FieldViolation::new(
                "rejection_reason",
                "required when REJECTED",
            ));
        }
        if let Some(problem) = self
            .invoice_number
            .as_deref()
            .and_then(|n| optional_text(n, INVOICE_NUMBER_MAX))
        {
            violations.push(FieldViolation::new("invoice_number", problem));
        }
        if self.status == FulfilmentStatus::Invoiced {
            if self.invoice_number.is_none() {
                violations.push(FieldViolation::new(
                    "invoice_number",
                    "required when INVOICED",
                ));
            }
            if self.invoice_amount.is_none() {
                violations.push(FieldViolation::new(
                    "invoice_amount",
                    "required when INVOICED",
                ));
            }
        }
        if let Some((currency, amount)) = &self.invoice_amount {
            if let Some(problem) = currency_problem(currency) {
                violations.push(FieldViolation::new("invoice_amount.currency_code", problem));
            } else if order_currency.is_some_and(|c| c != currency) {
                violations.push(FieldViolation::new(
                    "invoice_amount.currency_code",
                    "must be the order's currency",
                ));
            }
            if *amount < 0 {
                violations.push(FieldViolation::new(
                    "invoice_amount.amount_minor",
                    "must not be negative",
                ));
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::ProductData;

    fn product(sku: &str, price: i64, currency: &str, active: bool) -> (String, Product) {
        (
            sku.to_owned(),
            Product {
                data: ProductData {
                    sku: sku.into(),
                    name: format!("Product {sku}"),
                    unit_price_minor: price,
                    currency: currency.into(),
                    active,
                },
                product_version: 1,
                available: 10,
                stock_version: 1,
                update_time: Utc::now(),
            },
        )
    }

    fn catalogue() -> HashMap<String, Product> {
        HashMap::from([
            product("A", 1_999, "EUR", true),
            product("B", 250, "EUR", true),
            product("D", 100, "USD", true),
            product("OLD", 100, "EUR", false),
            product("HUGE", i64::MAX / 2, "EUR", true),
        ])
    }

    fn request(sku: &str, quantity: i64) -> LineRequest {
        LineRequest {
            sku: sku.into(),
            quantity,
        }
    }

    fn violations(result: Result<(Option<String>, Vec<Line>)>) -> Vec<String> {
        match result {
            Err(Error::Invalid(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    fn order(status: OrderStatus, lines: Vec<Line>) -> Order {
        Order {
            id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            status,
            currency: Some("EUR".into()),
            lines,
            cancellation_reason: None,
            version: 1,
            create_time: Utc::now(),
            update_time: Utc::now(),
            submit_time: None,
            fulfilment: None,
            external_ref: None,
        }
    }

    #[test]
    fn quoting_prices_each_line_and_totals_the_order() {
        let (currency, lines) = quote(&[request("A", 3), request("B", 4)], &catalogue()).unwrap();
        assert_eq!(currency.as_deref(), Some("EUR"));
        assert_eq!(lines[0].line_number, 1);
        assert_eq!(lines[0].unit_price_minor, 1_999);
        assert_eq!(lines[0].total_minor(), Some(5_997));
        assert_eq!(lines[1].line_number, 2);
        assert_eq!(lines[1].product_name, "Product B");
        let order = order(OrderStatus::Draft, lines);
        assert_eq!(order.total_minor(), 5_997 + 1_000);
        let event = order.event();
        assert_eq!(event.total_minor, 6_997);
        assert_eq!(event.lines[1].line_total_minor, 1_000);
        assert_eq!(event.currency, "EUR");
    }

    #[test]
    fn an_empty_draft_has_no_currency_and_a_zero_total() {
        let (currency, lines) = quote(&[], &catalogue()).unwrap();
        assert_eq!((currency, lines.len()), (None, 0));
        assert_eq!(order(OrderStatus::Draft, Vec::new()).total_minor(), 0);
    }

    #[test]
    fn quoting_refuses_unknown_inactive_mixed_and_malformed_lines() {
        assert_eq!(
            violations(quote(
                &[
                    request("A", 1),
                    request("NOPE", 1),
                    request("OLD", 1),
                    request("D", 1)
                ],
                &catalogue()
            )),
            ["lines[1].sku", "lines[2].sku", "lines[3].sku"]
        );
        assert_eq!(
            violations(quote(
                &[
                    request("A", 0),
                    request("A", 1),
                    request("B", QUANTITY_MAX + 1)
                ],
                &catalogue()
            )),
            ["lines[0].quantity", "lines[1].sku", "lines[2].quantity"]
        );
        let too_many: Vec<LineRequest> = (0..=LINES_MAX)
            .map(|i| request(&format!("S{i}"), 1))
            .collect();
        assert_eq!(violations(quote(&too_many, &catalogue()))[0], "lines");
    }

    #[test]
    fn external_orders_need_references_a_currency_and_up_to_500_lines() {
        let external = |lines: Vec<LineRequest>| ExternalOrder {
            external_ref: "shop-1".into(),
            customer_external_ref: "web:ada".into(),
            currency: "EUR".into(),
            lines,
        };
        let fields = |order: &ExternalOrder| -> Vec<String> {
            order.violations().into_iter().map(|v| v.field).collect()
        };
        let many: Vec<LineRequest> = (0..EXTERNAL_LINES_MAX)
            .map(|i| request(&format!("S{i}"), 1))
            .collect();
        assert!(fields(&external(many.clone())).is_empty(), "500 lines fit");
        let mut too_many = many;
        too_many.push(request("LAST", 1));
        assert_eq!(fields(&external(too_many)), ["lines"]);
        let bad = ExternalOrder {
            external_ref: "has space".into(),
            customer_external_ref: String::new(),
            currency: "EURO".into(),
            lines: Vec::new(),
        };
        assert_eq!(
            fields(&bad),
            [
                "external_ref",
                "customer_external_ref",
                "currency_code",
                "lines"
            ]
        );
        let mixed = external(vec![request("A", 1), request("D", 1), request("NOPE", 1)]);
        let currency: Vec<String> = mixed
            .currency_violations(&catalogue())
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(currency, ["lines[1].sku"]);
    }

    #[test]
    fn totals_that_overflow_are_refused() {
        assert_eq!(
            violations(quote(&[request("HUGE", 3)], &catalogue())),
            ["lines[0].quantity"]
        );
        // Each line fits, their sum does not.
        assert_eq!(
            violations(quote(&[request("HUGE", 2), request("A", 1)], &catalogue())),
            ["lines[1].quantity"]
        );
    }

    #[test]
    fn only_drafts_with_lines_are_submitted_and_edited() {
        let (_, lines) = quote(&[request("A", 1)], &catalogue()).unwrap();
        assert!(
            order(OrderStatus::Draft, lines.clone())
                .check_submittable()
                .is_ok()
        );
        assert!(matches!(
            order(OrderStatus::Draft, Vec::new()).check_submittable(),
            Err(Error::FailedPrecondition { .. })
        ));
        for status in [
            OrderStatus::Submitted,
            OrderStatus::CancelRequested,
            OrderStatus::Cancelled,
        ] {
            let order = order(status, lines.clone());
            assert!(matches!(
                order.check_submittable(),
                Err(Error::FailedPrecondition { .. })
            ));
            assert!(matches!(
                order.check_editable(),
                Err(Error::FailedPrecondition { .. })
            ));
        }
        assert!(order(OrderStatus::Draft, lines).check_editable().is_ok());
    }

    #[test]
    fn cancellation_targets() {
        let draft = order(OrderStatus::Draft, Vec::new());
        assert_eq!(
            draft.cancellation_target().unwrap(),
            Some(OrderStatus::Cancelled)
        );
        let mut submitted = order(OrderStatus::Submitted, Vec::new());
        assert_eq!(
            submitted.cancellation_target().unwrap(),
            Some(OrderStatus::CancelRequested)
        );
        for (status, allowed) in [
            (FulfilmentStatus::Reserved, true),
            (FulfilmentStatus::Backordered, true),
            (FulfilmentStatus::CreditHold, true),
            (FulfilmentStatus::Rejected, false),
            (FulfilmentStatus::Shipped, false),
            (FulfilmentStatus::Invoiced, false),
            (FulfilmentStatus::Cancelled, false),
        ] {
            submitted.fulfilment = Some(Fulfilment {
                update: FulfilmentUpdate {
                    status,
                    rejection_reason: None,
                    invoice_number: None,
                    invoice_amount: None,
                },
                source_version: 1,
                update_time: Utc::now(),
            });
            assert_eq!(
                submitted.cancellation_target().is_ok(),
                allowed,
                "{status:?}"
            );
        }
        let requested = order(OrderStatus::CancelRequested, Vec::new());
        assert_eq!(requested.cancellation_target().unwrap(), None);
        assert!(
            order(OrderStatus::Cancelled, Vec::new())
                .cancellation_target()
                .is_err()
        );
    }

    #[test]
    fn erp_statuses_move_the_crm_status() {
        use FulfilmentStatus as F;
        use OrderStatus as O;
        assert_eq!(status_after(O::CancelRequested, F::Cancelled), O::Cancelled);
        assert_eq!(status_after(O::Submitted, F::Cancelled), O::Cancelled);
        assert_eq!(
            status_after(O::CancelRequested, F::Reserved),
            O::CancelRequested
        );
        assert_eq!(status_after(O::CancelRequested, F::Shipped), O::Submitted);
        assert_eq!(status_after(O::Submitted, F::Shipped), O::Submitted);
        assert_eq!(status_after(O::Cancelled, F::Reserved), O::Cancelled);
        for status in [
            "RESERVED",
            "BACKORDERED",
            "CREDIT_HOLD",
            "REJECTED",
            "SHIPPED",
            "INVOICED",
            "CANCELLED",
        ] {
            assert_eq!(
                FulfilmentStatus::parse(status).map(FulfilmentStatus::as_str),
                Some(status)
            );
        }
    }

    #[test]
    fn fulfilment_updates_need_their_details() {
        let update =
            |status, reason: Option<&str>, number: Option<&str>, amount: Option<(&str, i64)>| {
                FulfilmentUpdate {
                    status,
                    rejection_reason: reason.map(str::to_owned),
                    invoice_number: number.map(str::to_owned),
                    invoice_amount: amount.map(|(c, a)| (c.to_owned(), a)),
                }
            };
        let fields = |u: FulfilmentUpdate| -> Vec<String> {
            u.violations(Some("EUR"))
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        assert!(fields(update(FulfilmentStatus::Reserved, None, None, None)).is_empty());
        assert_eq!(
            fields(update(FulfilmentStatus::Rejected, None, None, None)),
            ["rejection_reason"]
        );
        assert_eq!(
            fields(update(FulfilmentStatus::Invoiced, None, None, None)),
            ["invoice_number", "invoice_amount"]
        );
        assert_eq!(
            fields(update(
                FulfilmentStatus::Invoiced,
                None,
                Some("INV-1"),
                Some(("USD", 5))
            )),
            ["invoice_amount.currency_code"]
        );
        assert!(
            fields(update(
                FulfilmentStatus::Invoiced,
                None,
                Some("INV-1"),
                Some(("EUR", 5))
            ))
            .is_empty()
        );
    }
}
