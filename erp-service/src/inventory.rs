//! Inventory: the stock use cases of the warehouse (receipts, adjustments, transfers) and of
//! integrators (counts), each one transaction through a [`StockSession`]. Stock arriving
//! (receipt, upward adjustment, transfer in) reserves backordered orders in the same
//! transaction, oldest first ([`orders::reserve_backorders`]); `stock` itself knows nothing of
//! orders.

use sqlx::PgConnection;
use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    outbox::OutboxWaker,
    paging::Page,
};
use uuid::Uuid;

use crate::{
    PAGE_SIZES,
    error::{Error, Reason, Result},
    orders,
    retry::retrying,
    stock::{
        AdjustmentReason, Count, Level, Movement, MovementReason, NewMovement, StockSession, store,
    },
    text, warehouses,
};

/// A manual stock movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockRequest {
    Receive {
        warehouse: String,
        quantity: i64,
    },
    Adjust {
        warehouse: String,
        delta: i64,
        reason: AdjustmentReason,
    },
    Transfer {
        from: String,
        to: String,
        quantity: i64,
    },
}

impl StockRequest {
    fn warehouses(&self) -> Vec<&str> {
        match self {
            Self::Receive { warehouse, .. } | Self::Adjust { warehouse, .. } => vec![warehouse],
            Self::Transfer { from, to, .. } => vec![from, to],
        }
    }

    /// Does this movement make stock available somewhere (so backorders may now fit)?
    fn brings_stock(&self) -> bool {
        match self {
            Self::Receive { .. } | Self::Transfer { .. } => true,
            Self::Adjust { delta, .. } => *delta > 0,
        }
    }

    fn movements(&self, sku: &str, reference: Option<&str>) -> Vec<NewMovement> {
        let movement = |warehouse: &str, delta: i64, reason| NewMovement {
            sku: sku.to_owned(),
            warehouse: warehouse.to_owned(),
            on_hand_delta: delta,
            reserved_delta: 0,
            reason,
            reference: reference.map(str::to_owned),
            order_id: None,
        };
        match self {
            Self::Receive {
                warehouse,
                quantity,
            } => vec![movement(warehouse, *quantity, MovementReason::Receipt)],
            Self::Adjust {
                warehouse,
                delta,
                reason,
            } => vec![movement(
                warehouse,
                *delta,
                MovementReason::Adjustment(*reason),
            )],
            Self::Transfer { from, to, quantity } => vec![
                movement(from, -*quantity, MovementReason::TransferOut),
                movement(to, *quantity, MovementReason::TransferIn),
            ],
        }
    }
}

impl Count {
    fn validate(&self) -> Result<()> {
        use tandem_common::validation::FieldViolation;
        let mut violations = Vec::new();
        if self.sku.is_empty() {
            violations.push(FieldViolation::new("sku", "required"));
        } else if !crate::products::is_sku(&self.sku) {
            violations.push(FieldViolation::new("sku", "not a valid sku"));
        }
        violations.extend(warehouses::code_violation("warehouse", &self.warehouse));
        if self.counted_quantity < 0 {
            violations.push(FieldViolation::new(
                "counted_quantity",
                "must not be negative",
            ));
        }
        let length = self.event_id.chars().count();
        if length == 0 || length > 200 {
            violations.push(FieldViolation::new("event_id", "1..=200 characters"));
        }
        if self.source.chars().count() > 100 {
            violations.push(FieldViolation::new("source", "at most 100 characters"));
        }
        violations.extend(text::nul_violations(&[
            ("event_id", &self.event_id),
            ("source", &self.source),
        ]));
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(violations))
        }
    }
}

/// What a count did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// False when the event id had been applied before (nothing changed).
    pub applied: bool,
    /// The level after the call.
    pub level: Level,
}

/// What a movement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovementOutcome {
    /// Levels changed by the call (including by backorders it reserved).
    pub levels: Vec<Level>,
    pub movements: Vec<Movement>,
    /// CRM order ids of backordered orders reserved by the arrival.
    pub reserved_orders: Vec<String>,
}

#[derive(Clone)]
pub struct Stock {
    pool: Db,
    outbox: OutboxWaker,
}

impl Stock {
    pub fn new(pool: Db, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    /// Receives, adjusts or transfers stock of `sku`; with `once`, at most once per request
    /// id (a retry replays the first outcome).
    #[tracing::instrument(skip(self, once))]
    pub async fn movement(
        &self,
        sku: &str,
        request: StockRequest,
        reference: Option<String>,
        once: Option<&Once<MovementOutcome>>,
    ) -> Result<Answer<MovementOutcome>> {
        validate(sku, &request, reference.as_deref())?;
        retrying("stock movement", || {
            self.movement_once(sku, &request, reference.as_deref(), once)
        })
        .await
    }

    async fn movement_once(
        &self,
        sku: &str,
        request: &StockRequest,
        reference: Option<&str>,
        once: Option<&Once<MovementOutcome>>,
    ) -> Result<Answer<MovementOutcome>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        for warehouse in request.warehouses() {
            if !warehouses::store::exists(&mut tx, warehouse).await? {
                return Err(Error::not_found("warehouse", warehouse));
            }
        }
        let arriving = [sku.to_owned()];
        let waiting = if request.brings_stock() {
            orders::store::backordered_skus(&mut tx, &arriving).await?
        } else {
            Vec::new()
        };
        let mut session =
            StockSession::lock(&mut tx, arriving.iter().cloned().chain(waiting)).await?;
        if session.product_active(sku).is_none() {
            return Err(Error::not_found("product", sku));
        }
        let mut movements = Vec::new();
        for movement in request.movements(sku, reference) {
            session
                .ensure_level(&mut tx, &movement.sku, &movement.warehouse)
                .await?;
            movements.push(session.apply(&mut tx, movement).await?);
        }
        let reserved_orders = if request.brings_stock() {
            orders::reserve_backorders(&mut tx, &mut session, &arriving).await?
        } else {
            Vec::new()
        };
        session.publish(&mut tx).await?;
        let outcome = MovementOutcome {
            levels: session.changed_levels(),
            movements,
            reserved_orders,
        };
        idempotency::remember(&mut tx, once, &outcome).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(outcome))
    }

    /// Sets on hand of (sku, warehouse) to the counted quantity, once per event id: one COUNT
    /// ledger entry for the difference, `erp.stock.changed` when the level changed, and
    /// backorders reserved when stock went up, all in one transaction.
    #[tracing::instrument(skip(self, count), fields(sku = %count.sku, warehouse = %count.warehouse, event_id = %count.event_id))]
    pub async fn count(&self, count: &Count) -> Result<Counted> {
        count.validate()?;
        retrying("stock count", || self.count_once(count)).await
    }

    async fn count_once(&self, count: &Count) -> Result<Counted> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(level) = self.repeated_count(&mut tx, count).await? {
            return Ok(Counted {
                applied: false,
                level,
            });
        }
        if !warehouses::store::exists(&mut tx, &count.warehouse).await? {
            return Err(Error::precondition_info(
                format!("warehouse {} is not known to the ERP", count.warehouse),
                Reason::UnknownWarehouse,
                [("warehouse", count.warehouse.clone())],
            ));
        }
        let arriving = [count.sku.clone()];
        // Locked up front in case the count goes up (the direction is known only under lock).
        let waiting = orders::store::backordered_skus(&mut tx, &arriving).await?;
        let mut session =
            StockSession::lock(&mut tx, arriving.iter().cloned().chain(waiting)).await?;
        if session.product_active(&count.sku).is_none() {
            return Err(Error::precondition_info(
                format!("sku {} is not known to the ERP", count.sku),
                Reason::UnknownSku,
                [("skus", count.sku.clone())],
            ));
        }
        session
            .ensure_level(&mut tx, &count.sku, &count.warehouse)
            .await?;
        let before = locked_level(&session, count)?;
        if count.counted_quantity < before.reserved {
            return Err(Error::precondition_info(
                format!(
                    "counted {} of {} in {}, below the {} reserved there",
                    count.counted_quantity, count.sku, count.warehouse, before.reserved
                ),
                Reason::CountBelowReserved,
                [
                    ("sku", count.sku.clone()),
                    ("warehouse", count.warehouse.clone()),
                    ("reserved", before.reserved.to_string()),
                    ("counted_quantity", count.counted_quantity.to_string()),
                ],
            ));
        }
        if !store::insert_count(&mut tx, count, before.on_hand).await? {
            // A concurrent call with the same event id committed first.
            drop(tx);
            let mut conn = self.pool.acquire().await?;
            let level = self
                .repeated_count(&mut conn, count)
                .await?
                .ok_or_else(|| Error::Internal("a committed count vanished".to_owned()))?;
            return Ok(Counted {
                applied: false,
                level,
            });
        }
        let delta = count.counted_quantity - before.on_hand;
        if delta != 0 {
            session
                .apply(
                    &mut tx,
                    NewMovement {
                        sku: count.sku.clone(),
                        warehouse: count.warehouse.clone(),
                        on_hand_delta: delta,
                        reserved_delta: 0,
                        reason: MovementReason::Adjustment(AdjustmentReason::Count),
                        reference: Some(count.event_id.clone()),
                        order_id: None,
                    },
                )
                .await?;
            if delta > 0 {
                let reserved = orders::reserve_backorders(&mut tx, &mut session, &arriving).await?;
                if !reserved.is_empty() {
                    tracing::info!(?reserved, "count reserved backorders");
                }
            }
            session.publish(&mut tx).await?;
        }
        let level = locked_level(&session, count)?;
        tx.commit().await?;
        tracing::info!(
            source = %count.source,
            previous_on_hand = before.on_hand,
            counted = count.counted_quantity,
            "stock counted"
        );
        Ok(Counted {
            applied: true,
            level,
        })
    }

    /// The current level the count of `count.event_id` applied to, if it was applied before.
    async fn repeated_count(
        &self,
        conn: &mut PgConnection,
        count: &Count,
    ) -> Result<Option<Level>> {
        let Some((sku, warehouse, counted)) = store::count_of(conn, &count.event_id).await? else {
            return Ok(None);
        };
        if (sku.as_str(), warehouse.as_str(), counted)
            != (
                count.sku.as_str(),
                count.warehouse.as_str(),
                count.counted_quantity,
            )
        {
            tracing::warn!(
                stored_sku = %sku,
                stored_warehouse = %warehouse,
                stored_counted = counted,
                "a count with this event id but other values was applied before; ignoring"
            );
        }
        let level = store::get_level(conn, &sku, &warehouse)
            .await?
            .ok_or_else(|| Error::Internal(format!("level {sku}/{warehouse} vanished")))?;
        Ok(Some(level))
    }

    #[tracing::instrument(skip(self))]
    pub async fn level(&self, sku: &str, warehouse: &str) -> Result<Level> {
        let violations: Vec<_> = crate::products::model::sku_violation("sku", sku)
            .into_iter()
            .chain(warehouses::code_violation("warehouse", warehouse))
            .collect();
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut conn = self.pool.acquire().await?;
        store::get_level(&mut conn, sku, warehouse)
            .await?
            .ok_or_else(|| Error::not_found("stock level", format!("{sku}/{warehouse}")))
    }

    #[tracing::instrument(skip(self))]
    pub async fn levels(
        &self,
        sku: &str,
        warehouse: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Level>, String)> {
        let filters = format!("stock_levels|{sku:?}|{warehouse:?}");
        let page: Page<(String, String)> =
            Page::parse(page_size, page_token, &filters, PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::list_levels(
            &mut conn,
            page.after.as_ref(),
            sku,
            warehouse,
            page.fetch_limit(),
        )
        .await?;
        let next = page.finish(&mut rows, |l| (l.sku.clone(), l.warehouse.clone()))?;
        Ok((rows, next))
    }

    #[tracing::instrument(skip(self))]
    pub async fn movements(
        &self,
        sku: &str,
        warehouse: &str,
        order_id: Option<Uuid>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Movement>, String)> {
        let filters = format!("stock_movements|{sku:?}|{warehouse:?}|{order_id:?}");
        let page: Page<i64> = Page::parse(page_size, page_token, &filters, PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::list_movements(
            &mut conn,
            page.after,
            sku,
            warehouse,
            order_id,
            page.fetch_limit(),
        )
        .await?;
        let next = page.finish(&mut rows, |m| m.id)?;
        Ok((rows, next))
    }
}

/// The locked level a count applies to.
fn locked_level(session: &StockSession, count: &Count) -> Result<Level> {
    session
        .level(&count.sku, &count.warehouse)
        .cloned()
        .ok_or_else(|| {
            Error::Internal(format!(
                "level {}/{} used without its lock",
                count.sku, count.warehouse
            ))
        })
}

fn validate(sku: &str, request: &StockRequest, reference: Option<&str>) -> Result<()> {
    use tandem_common::validation::FieldViolation;
    let mut violations = Vec::new();
    if !crate::products::is_sku(sku) {
        violations.push(FieldViolation::new("sku", "not a valid sku"));
    }
    if reference.is_some_and(|r| r.chars().count() > 200) {
        violations.push(FieldViolation::new("reference", "at most 200 characters"));
    }
    violations.extend(text::nul_violation(
        "reference",
        reference.unwrap_or_default(),
    ));
    match request {
        StockRequest::Receive {
            warehouse,
            quantity,
        } => {
            violations.extend(warehouses::code_violation("warehouse", warehouse));
            if *quantity <= 0 {
                violations.push(FieldViolation::new("quantity", "must be positive"));
            }
        }
        StockRequest::Adjust {
            warehouse, delta, ..
        } => {
            violations.extend(warehouses::code_violation("warehouse", warehouse));
            if *delta == 0 {
                violations.push(FieldViolation::new("quantity_delta", "must not be zero"));
            }
        }
        StockRequest::Transfer { from, to, quantity } => {
            violations.extend(warehouses::code_violation("from_warehouse", from));
            if let Some(violation) = warehouses::code_violation("to_warehouse", to) {
                violations.push(violation);
            } else if from == to {
                violations.push(FieldViolation::new(
                    "to_warehouse",
                    "must differ from from_warehouse",
                ));
            }
            if *quantity <= 0 {
                violations.push(FieldViolation::new("quantity", "must be positive"));
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(violations))
    }
}
