//! `tandem.crm.v1.CrmSync`, for the bridge and the operator CLI.
//!
//! - `Apply*`: ERP-owned state into the CRM's mirrors. Idempotent and version-gated (`repair`
//!   lets an equal version apply); none writes an outbox row (no echo).
//! - `UpsertCustomerByExternalRef`, `PlaceExternalOrder`: integrators' customers and orders.
//!   The CRM owns these, so a change publishes its normal `crm.*` event.
//! - `Republish`: the current state of every customer and known order, through the outbox,
//!   about 10 s of it per call (a token goes on where a call stopped).
//! - `LiftCustomerVersions`, `RecoverOrders`: the resync after a restore of the CRM's
//!   database (see [`crate::restore`]).

use std::time::{Duration, Instant};
use tandem_proto::crm::v1::{
    ApplyCustomerFinanceRequest, ApplyCustomerFinanceResponse, ApplyOrderStatusRequest,
    ApplyOrderStatusResponse, ApplyOrderStatusesRequest, ApplyOrderStatusesResponse,
    ApplyProductRequest, ApplyProductResponse, ApplyStockLevelsRequest, ApplyStockLevelsResponse,
    LiftCustomerVersionsRequest, LiftCustomerVersionsResponse, LiftOutcome, LiftedCustomer,
    PlaceExternalOrderRequest, PlaceExternalOrderResponse, RecoverOrdersRequest,
    RecoverOrdersResponse, RecoveredOrder, RepublishRequest, RepublishResponse, StockLevelResult,
    UpsertCustomerByExternalRefRequest, UpsertCustomerByExternalRefResponse,
    crm_sync_server::CrmSync,
};

use serde::{Deserialize, Serialize};
use tandem_common::paging;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{customers as customers_pb, optional, orders as orders_pb, parse_id, source_version};
use crate::{
    catalogue::{Catalogue, ProductData, StockLevel, model::stock_violations},
    customers::Customers,
    error::{Error, check},
    finance::{FinanceData, FinanceMirror},
    orders::{ExternalOrder, FulfilmentUpdate, LineRequest, Orders, StatusChange},
    restore::{MirroredCustomer, MirroredLine, MirroredOrder, Outcome, Restore},
};

/// The most entities one resync call carries.
const RESYNC_BATCH: usize = 500;
/// The most statuses one `ApplyOrderStatuses` call carries.
const STATUSES_MAX: usize = 1_000;

/// How long one `Republish` call works before it answers a token to go on with: well inside
/// the server's own deadline (`grpc.limits.request_timeout_ms`, 30 s by default).
const REPUBLISH_BUDGET: Duration = Duration::from_secs(10);
/// What a `Republish` token is bound to.
const REPUBLISH: &str = "crm.republish";

/// Where a `Republish` goes on: after this customer, or this order (`None`: the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Resume {
    Customers(Option<Uuid>),
    Orders(Option<Uuid>),
}

pub struct SyncApi {
    customers: Customers,
    catalogue: Catalogue,
    orders: Orders,
    finance: FinanceMirror,
    restore: Restore,
}

impl SyncApi {
    pub fn new(
        customers: Customers,
        catalogue: Catalogue,
        orders: Orders,
        finance: FinanceMirror,
        restore: Restore,
    ) -> Self {
        Self {
            customers,
            catalogue,
            orders,
            finance,
            restore,
        }
    }
}

fn outcome_to(outcome: Outcome) -> LiftOutcome {
    match outcome {
        Outcome::Current => LiftOutcome::Current,
        Outcome::Lifted => LiftOutcome::Lifted,
        Outcome::Recovered => LiftOutcome::Recovered,
        Outcome::Missing => LiftOutcome::Missing,
        Outcome::CustomerMissing => LiftOutcome::CustomerMissing,
    }
}

/// 1..=[`RESYNC_BATCH`] entities.
fn batch_size(field: &str, len: usize) -> Result<(), Error> {
    if len == 0 || len > RESYNC_BATCH {
        return Err(Error::invalid(
            field,
            format!("1 to {RESYNC_BATCH} entries, not {len}"),
        ));
    }
    Ok(())
}

/// The customers of a `LiftCustomerVersions` call, every bad field named.
fn mirrored_customers(
    request: LiftCustomerVersionsRequest,
) -> Result<Vec<MirroredCustomer>, Error> {
    batch_size("customers", request.customers.len())?;
    let mut violations = Vec::new();
    let mut customers = Vec::with_capacity(request.customers.len());
    let mut seen = std::collections::HashSet::new();
    for (i, mirrored) in request.customers.into_iter().enumerate() {
        let prefix = format!("customers[{i}].");
        if mirrored.mirror_version <= 0 {
            violations.push(tandem_common::validation::FieldViolation::new(
                format!("{prefix}mirror_version"),
                "must be positive",
            ));
        }
        let Some(customer) = mirrored.customer else {
            violations.push(tandem_common::validation::FieldViolation::new(
                format!("{prefix}customer"),
                "required",
            ));
            continue;
        };
        let id = match parse_id("id", &customer.id)
            .map_err(|e| e.prefixed(&format!("{prefix}customer.")))
        {
            Ok(id) => id,
            Err(Error::Invalid(found)) => {
                violations.extend(found);
                continue;
            }
            Err(other) => return Err(other),
        };
        if !seen.insert(id) {
            violations.push(tandem_common::validation::FieldViolation::new(
                format!("{prefix}customer.id"),
                "appears twice",
            ));
        }
        match customers_pb::mirrored_profile(customer) {
            Ok(profile) => customers.push(MirroredCustomer {
                id,
                profile,
                mirror_version: mirrored.mirror_version,
            }),
            Err(error @ Error::Invalid(_)) => {
                if let Error::Invalid(found) = error.prefixed(&format!("{prefix}customer.")) {
                    violations.extend(found);
                }
            }
            Err(other) => return Err(other),
        }
    }
    check(violations)?;
    Ok(customers)
}

/// The orders of a `RecoverOrders` call, every bad field named.
fn mirrored_orders(request: RecoverOrdersRequest) -> Result<Vec<MirroredOrder>, Error> {
    use tandem_common::validation::FieldViolation;
    batch_size("orders", request.orders.len())?;
    let mut violations = Vec::new();
    let mut orders = Vec::with_capacity(request.orders.len());
    for (i, order) in request.orders.into_iter().enumerate() {
        let prefix = format!("orders[{i}].");
        let id = parse_id(&format!("{prefix}id"), &order.id);
        let customer_id = parse_id(&format!("{prefix}customer_id"), &order.customer_id);
        let currency = order.currency_code.trim().to_owned();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            violations.push(FieldViolation::new(
                format!("{prefix}currency_code"),
                "three upper-case letters",
            ));
        }
        if order.lines.is_empty() || order.lines.len() > RESYNC_BATCH {
            violations.push(FieldViolation::new(
                format!("{prefix}lines"),
                format!("1 to {RESYNC_BATCH} lines"),
            ));
        }
        let mut skus = std::collections::HashSet::new();
        for (j, line) in order.lines.iter().enumerate() {
            let sku = line.sku.trim();
            if sku.is_empty() || !skus.insert(sku.to_owned()) {
                violations.push(FieldViolation::new(
                    format!("{prefix}lines[{j}].sku"),
                    "required, each sku at most once",
                ));
            }
            if line.quantity <= 0 {
                violations.push(FieldViolation::new(
                    format!("{prefix}lines[{j}].quantity"),
                    "must be positive",
                ));
            }
            if line.unit_price_minor < 0 {
                violations.push(FieldViolation::new(
                    format!("{prefix}lines[{j}].unit_price_minor"),
                    "must not be negative",
                ));
            }
        }
        match (id, customer_id) {
            (Ok(id), Ok(customer_id)) => orders.push(MirroredOrder {
                id,
                customer_id,
                currency,
                lines: order
                    .lines
                    .iter()
                    .map(|line| MirroredLine {
                        sku: line.sku.trim().to_owned(),
                        quantity: line.quantity,
                        unit_price_minor: line.unit_price_minor,
                    })
                    .collect(),
            }),
            (id, customer_id) => {
                for error in [id.err(), customer_id.err()].into_iter().flatten() {
                    if let Error::Invalid(found) = error {
                        violations.extend(found);
                    }
                }
            }
        }
    }
    check(violations)?;
    Ok(orders)
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl CrmSync for SyncApi {
    async fn apply_product(
        &self,
        request: Request<ApplyProductRequest>,
    ) -> Reply<ApplyProductResponse> {
        let request = request.into_inner();
        let product = request
            .product
            .ok_or_else(|| Error::invalid("product", "required"))?;
        let price = product.unit_price.unwrap_or_default();
        let data = ProductData {
            sku: product.sku.trim().to_owned(),
            name: product.name.trim().to_owned(),
            unit_price_minor: price.amount_minor,
            currency: price.currency_code,
            active: product.active,
        };
        check(data.violations()).map_err(|e| e.prefixed("product."))?;
        let version = source_version(request.source_version)?;
        let applied = self
            .catalogue
            .apply_product(&data, version, request.repair)
            .await?;
        Ok(Response::new(ApplyProductResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    async fn apply_stock_levels(
        &self,
        request: Request<ApplyStockLevelsRequest>,
    ) -> Reply<ApplyStockLevelsResponse> {
        let request = request.into_inner();
        let levels: Vec<StockLevel> = request
            .levels
            .into_iter()
            .map(|level| StockLevel {
                sku: level.sku.trim().to_owned(),
                available: level.available,
                source_version: level.source_version,
            })
            .collect();
        check(stock_violations(&levels))?;
        let outcomes = self
            .catalogue
            .apply_stock_levels(&levels, request.repair)
            .await?;
        Ok(Response::new(ApplyStockLevelsResponse {
            results: levels
                .iter()
                .zip(outcomes)
                .map(|(level, applied)| StockLevelResult {
                    sku: level.sku.clone(),
                    applied: applied.changed,
                    current_version: applied.current_version,
                })
                .collect(),
        }))
    }

    async fn apply_order_status(
        &self,
        request: Request<ApplyOrderStatusRequest>,
    ) -> Reply<ApplyOrderStatusResponse> {
        let change = status_change(&request.into_inner())?;
        let applied = self.orders.apply_status(&change).await?;
        Ok(Response::new(ApplyOrderStatusResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    async fn apply_order_statuses(
        &self,
        request: Request<ApplyOrderStatusesRequest>,
    ) -> Reply<ApplyOrderStatusesResponse> {
        let statuses = request.into_inner().statuses;
        if statuses.is_empty() || statuses.len() > STATUSES_MAX {
            return Err(Error::invalid("statuses", format!("1 to {STATUSES_MAX} statuses")).into());
        }
        let changes = statuses
            .iter()
            .enumerate()
            .map(|(i, status)| {
                status_change(status).map_err(|e| e.prefixed(&format!("statuses[{i}].")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let applied = self
            .orders
            .apply_statuses(&changes, |i| format!("statuses[{i}]."))
            .await?;
        Ok(Response::new(ApplyOrderStatusesResponse {
            results: applied
                .into_iter()
                .map(|a| ApplyOrderStatusResponse {
                    applied: a.changed,
                    current_version: a.current_version,
                })
                .collect(),
        }))
    }

    async fn apply_customer_finance(
        &self,
        request: Request<ApplyCustomerFinanceRequest>,
    ) -> Reply<ApplyCustomerFinanceResponse> {
        let request = request.into_inner();
        let customer_id = parse_id("customer_id", &request.customer_id)?;
        let mut violations = Vec::new();
        let limit = request.credit_limit.unwrap_or_default();
        let balance = request.open_balance.unwrap_or_default();
        let data = FinanceData {
            currency: limit.currency_code,
            credit_limit_minor: limit.amount_minor,
            open_balance_minor: balance.amount_minor,
            payment_terms: optional(&request.payment_terms),
            credit_hold: request.credit_hold,
        };
        violations.extend(data.violations(&balance.currency_code));
        if request.source_version <= 0 {
            violations.push(tandem_common::validation::FieldViolation::new(
                "source_version",
                "must be positive",
            ));
        }
        check(violations)?;
        let applied = self
            .finance
            .apply(customer_id, data, request.source_version, request.repair)
            .await?;
        Ok(Response::new(ApplyCustomerFinanceResponse {
            applied: applied.changed,
            current_version: applied.current_version,
        }))
    }

    #[tracing::instrument(skip_all, fields(event_id))]
    async fn upsert_customer_by_external_ref(
        &self,
        request: Request<UpsertCustomerByExternalRefRequest>,
    ) -> Reply<UpsertCustomerByExternalRefResponse> {
        let request = request.into_inner();
        tracing::Span::current().record("event_id", request.event_id.as_str());
        let customer = request
            .customer
            .ok_or_else(|| Error::invalid("customer", "required"))?;
        // Every bad field in one answer, and nothing written when there is one.
        let upsert =
            customers_pb::integration_upsert(customer, &request.source, request.source_version)
                .and_then(|upsert| {
                    let upsert = upsert.normalised();
                    check(upsert.violations())?;
                    Ok(upsert)
                })
                .map_err(|e| e.prefixed("customer."));
        let mut top_level = match source_version(request.source_version) {
            Err(Error::Invalid(violations)) => violations,
            _ => Vec::new(),
        };
        if request.source.chars().any(char::is_control) {
            top_level.push(tandem_common::validation::FieldViolation::new(
                "source",
                "must not contain control characters",
            ));
        }
        let upsert = match (upsert, check(top_level)) {
            (Ok(upsert), Ok(_)) => upsert,
            (Err(Error::Invalid(mut violations)), Err(Error::Invalid(more))) => {
                violations.extend(more);
                return Err(Error::Invalid(violations).into());
            }
            (Err(error), _) | (_, Err(error)) => return Err(error.into()),
        };
        let (customer, applied) = self
            .customers
            .upsert_by_external_ref(upsert)
            .await
            .map_err(|e| e.prefixed("customer."))?;
        Ok(Response::new(UpsertCustomerByExternalRefResponse {
            customer: Some(customers_pb::to_proto(&customer)),
            applied,
        }))
    }

    #[tracing::instrument(skip_all, fields(source, event_id))]
    async fn place_external_order(
        &self,
        request: Request<PlaceExternalOrderRequest>,
    ) -> Reply<PlaceExternalOrderResponse> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("source", request.source.as_str());
        span.record("event_id", request.event_id.as_str());
        let order = ExternalOrder {
            external_ref: request.external_ref.trim().to_owned(),
            customer_external_ref: request.customer_external_ref.trim().to_owned(),
            currency: request.currency_code.trim().to_owned(),
            lines: request
                .lines
                .iter()
                .map(|line| LineRequest {
                    sku: line.sku.trim().to_owned(),
                    quantity: line.quantity,
                })
                .collect(),
        };
        let (order, applied) = self.orders.place_external(&order).await?;
        Ok(Response::new(PlaceExternalOrderResponse {
            order: Some(orders_pb::to_proto(&order)),
            applied,
        }))
    }

    #[tracing::instrument(skip_all, fields(customers, recover_from_mirror))]
    async fn lift_customer_versions(
        &self,
        request: Request<LiftCustomerVersionsRequest>,
    ) -> Reply<LiftCustomerVersionsResponse> {
        let request = request.into_inner();
        let recover = request.recover_from_mirror;
        let span = tracing::Span::current();
        span.record("customers", request.customers.len());
        span.record("recover_from_mirror", recover);
        let customers = mirrored_customers(request)?;
        let mut results = Vec::with_capacity(customers.len());
        for mirrored in &customers {
            let lifted = self.restore.lift_customer(mirrored, recover).await?;
            results.push(LiftedCustomer {
                id: mirrored.id.to_string(),
                outcome: outcome_to(lifted.outcome) as i32,
                previous_version: lifted.previous_version,
                version: lifted.version,
            });
        }
        Ok(Response::new(LiftCustomerVersionsResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(orders))]
    async fn recover_orders(
        &self,
        request: Request<RecoverOrdersRequest>,
    ) -> Reply<RecoverOrdersResponse> {
        let request = request.into_inner();
        tracing::Span::current().record("orders", request.orders.len());
        let orders = mirrored_orders(request)?;
        let mut results = Vec::with_capacity(orders.len());
        for order in &orders {
            let (outcome, version) = self.restore.recover_order(order).await?;
            results.push(RecoveredOrder {
                id: order.id.to_string(),
                outcome: outcome_to(outcome) as i32,
                version,
            });
        }
        Ok(Response::new(RecoverOrdersResponse { results }))
    }

    async fn republish(&self, request: Request<RepublishRequest>) -> Reply<RepublishResponse> {
        let from = paging::resume_from(REPUBLISH, &request.get_ref().page_token)
            .map_err(Error::from)?
            .unwrap_or(Resume::Customers(None));
        let until = Instant::now() + REPUBLISH_BUDGET;
        let (mut customers, mut orders) = (0, 0);
        // Customers first, then orders, in the same call while the budget lasts.
        let (mut next, mut orders_from) = (None, None);
        match from {
            Resume::Customers(after) => {
                let (count, more) = self.customers.republish(after, until).await?;
                customers = count;
                match more {
                    Some(last) => next = Some(Resume::Customers(Some(last))),
                    None if Instant::now() >= until => next = Some(Resume::Orders(None)),
                    None => orders_from = Some(None),
                }
            }
            Resume::Orders(after) => orders_from = Some(after),
        }
        if let Some(after) = orders_from {
            let (count, more) = self.orders.republish(after, until).await?;
            orders = count;
            next = more.map(|last| Resume::Orders(Some(last)));
        }
        let next_page_token = match &next {
            Some(resume) => paging::resume_token(REPUBLISH, resume)
                .map_err(|e| Status::internal(format!("encoding the republish token: {e}")))?,
            None => String::new(),
        };
        tracing::info!(
            customers,
            orders,
            done = next.is_none(),
            "republished the current state"
        );
        Ok(Response::new(RepublishResponse {
            customers,
            orders,
            next_page_token,
        }))
    }
}

/// The change an `ApplyOrderStatusRequest` asks for, or what is wrong with it.
fn status_change(request: &ApplyOrderStatusRequest) -> Result<StatusChange, Error> {
    let id = parse_id("order_id", &request.order_id)?;
    let status = orders_pb::fulfilment_from(request.status())
        .ok_or_else(|| Error::invalid("status", "required"))?;
    let version = source_version(request.source_version)?;
    Ok(StatusChange {
        id,
        update: FulfilmentUpdate {
            status,
            rejection_reason: optional(&request.rejection_reason),
            invoice_number: optional(&request.invoice_number),
            invoice_amount: request
                .invoice_amount
                .as_ref()
                .map(|m| (m.currency_code.clone(), m.amount_minor)),
        },
        version,
        repair: request.repair,
    })
}
