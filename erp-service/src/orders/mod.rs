//! Sales orders: accepted from the CRM once per CRM order id, then reserved, shipped,
//! invoiced or cancelled here. Every status change writes the order and its
//! `erp.order.status_changed` outbox event (plus `erp.stock.changed` for the skus whose stock
//! it moved, and `erp.customer.finance_changed` when it invoices) in one transaction.
//!
//! Locks follow the global order of migrations/0002: sku locks and level rows (through a
//! [`StockSession`]), then order rows, then the customer's finance row.

pub mod model;
pub(crate) mod store;

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use sqlx::PgConnection;
use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    outbox::{OutboxTx, OutboxWaker},
    paging::Page,
    validation,
};
use uuid::Uuid;

pub use model::{NewLine, NewOrder, Order, OrderStatus, ReservationState, can_transition};
pub use store::OrderFilter;

use crate::{
    PAGE_SIZES,
    error::{Error, Reason, Result},
    finance::{self, CreditDecision, FinanceDefaults, credit_check, due_date},
    products::SOURCE,
    retry::retrying,
    stock::{
        MovementReason, NewMovement, StockSession,
        plan::{Part, plan},
    },
};

/// What `AcceptOrder` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub order: Order,
    /// False when the CRM order had been accepted before; the order is unchanged.
    pub created: bool,
}

#[derive(Clone)]
pub struct Orders {
    pool: Db,
    outbox: OutboxWaker,
    defaults: FinanceDefaults,
}

impl Orders {
    pub fn new(pool: Db, outbox: OutboxWaker, defaults: FinanceDefaults) -> Self {
        Self {
            pool,
            outbox,
            defaults,
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Order> {
        let mut conn = self.pool.acquire().await?;
        store::load(&mut conn, id, false)
            .await?
            .ok_or_else(|| Error::not_found("sales order", id))
    }

    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        filter: &OrderFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Order>, String)> {
        let filters = format!(
            "sales_orders|{:?}|{:?}|{:?}",
            filter.status, filter.customer_id, filter.crm_order_id
        );
        let page = Page::parse(page_size, page_token, &filters, PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::list(&mut conn, page.after, filter, page.fetch_limit()).await?;
        let next = page.finish(&mut rows, |o| o.id)?;
        Ok((rows, next))
    }

    /// Accepts a CRM order once: credit check, then reservation of every line or none.
    #[tracing::instrument(skip(self, order), fields(crm_order_id = %order.crm_order_id))]
    pub async fn accept(&self, order: NewOrder) -> Result<Accepted> {
        let violations = order.violations();
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        retrying("accept order", || self.accept_once(&order)).await
    }

    /// Accepts several CRM orders in the order given; one outcome per order. The orders
    /// accepted before are read at once (`created: false`); each new one is accepted as
    /// [`Orders::accept`] does, in a transaction of its own. An order it refuses ends the call
    /// with its error: the ones before it stay accepted, the ones after it are not looked at.
    /// Fields are checked first, for every order, naming `orders[i].…`.
    #[tracing::instrument(skip_all, fields(orders = batch.len()))]
    pub async fn accept_many(&self, batch: Vec<NewOrder>) -> Result<Vec<Accepted>> {
        let violations: Vec<_> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, order)| validation::under(&format!("orders[{i}]."), order.violations()))
            .collect();
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut known: HashMap<String, Order> = {
            let ids: Vec<&str> = batch.iter().map(|o| o.crm_order_id.as_str()).collect();
            let mut conn = self.pool.acquire().await?;
            store::load_by_crm_ids(&mut conn, &ids)
                .await?
                .into_iter()
                .map(|order| (order.crm_order_id.clone(), order))
                .collect()
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for new in &batch {
            let accepted = match known.get(&new.crm_order_id) {
                Some(order) => Accepted {
                    order: order.clone(),
                    created: false,
                },
                None => {
                    let accepted = retrying("accept order", || self.accept_once(new)).await?;
                    // A second submission of the same order later in the batch finds it.
                    known.insert(new.crm_order_id.clone(), accepted.order.clone());
                    accepted
                }
            };
            outcomes.push(accepted);
        }
        Ok(outcomes)
    }

    async fn accept_once(&self, new: &NewOrder) -> Result<Accepted> {
        if let Some(existing) = self.by_crm_id(&new.crm_order_id).await? {
            return Ok(Accepted {
                order: existing,
                created: false,
            });
        }
        let total = new
            .total_minor()
            .ok_or_else(|| Error::invalid("lines", "order total is too large"))?;
        let mut tx = self.outbox.begin(&self.pool).await?;
        let id = Uuid::now_v7();
        let decided = if !finance::store::customer_exists(&mut tx, new.customer_id).await? {
            let reason = format!(
                "{}: customer {} is unknown",
                Reason::UnknownCustomer,
                new.customer_id
            );
            if !new.final_attempt {
                return Err(Error::precondition_info(
                    format!(
                        "customer {} is not known to the ERP yet; retry after it is synced",
                        new.customer_id
                    ),
                    Reason::UnknownCustomer,
                    [("customer_id", new.customer_id.to_string())],
                ));
            }
            store::insert(
                &mut tx,
                id,
                new,
                total,
                OrderStatus::Rejected,
                Some(&reason),
            )
            .await?
        } else {
            self.decide(&mut tx, id, new, total).await?
        };
        if !decided {
            // A concurrent call for the same CRM order committed first.
            drop(tx);
            let existing = self
                .by_crm_id(&new.crm_order_id)
                .await?
                .ok_or_else(|| Error::Internal("duplicate order vanished".to_owned()))?;
            return Ok(Accepted {
                order: existing,
                created: false,
            });
        }
        let order = load_locked(&mut tx, id).await?;
        publish_status(&mut tx, &order).await?;
        tx.commit().await?;
        tracing::info!(order_id = %order.id, status = order.status.as_str(), "order accepted");
        Ok(Accepted {
            order,
            created: true,
        })
    }

    /// Decides a new order of a known customer and writes it; `false` if a concurrent call
    /// wrote the same CRM order first.
    async fn decide(
        &self,
        tx: &mut OutboxTx,
        id: Uuid,
        new: &NewOrder,
        total: i64,
    ) -> Result<bool> {
        let skus = new.skus();
        let mut session = StockSession::lock(tx, skus.iter().cloned()).await?;
        let unknown: Vec<&str> = skus
            .iter()
            .filter(|sku| session.product_active(sku).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let list = unknown.join(",");
            if !new.final_attempt {
                return Err(Error::precondition_info(
                    format!("skus not known to the ERP: {list}"),
                    Reason::UnknownSku,
                    [("skus", list)],
                ));
            }
            let reason = format!("{}: {list}", Reason::UnknownSku);
            return Ok(
                store::insert(tx, id, new, total, OrderStatus::Rejected, Some(&reason)).await?,
            );
        }
        let inactive: Vec<&str> = skus
            .iter()
            .filter(|sku| session.product_active(sku) == Some(false))
            .map(String::as_str)
            .collect();
        if !inactive.is_empty() {
            let reason = format!("INACTIVE_SKU: {}", inactive.join(","));
            return Ok(
                store::insert(tx, id, new, total, OrderStatus::Rejected, Some(&reason)).await?,
            );
        }
        let account = finance::store::lock_or_create(tx, new.customer_id, &self.defaults).await?;
        if account.currency != new.currency {
            let reason = format!(
                "CURRENCY_MISMATCH: order in {}, the customer's account in {}",
                new.currency, account.currency
            );
            return Ok(
                store::insert(tx, id, new, total, OrderStatus::Rejected, Some(&reason)).await?,
            );
        }
        let uninvoiced = finance::store::uninvoiced_total(tx, new.customer_id).await?;
        if let CreditDecision::Hold(reason) = credit_check(&account, uninvoiced, total) {
            return Ok(
                store::insert(tx, id, new, total, OrderStatus::CreditHold, Some(&reason)).await?,
            );
        }
        let needs: Vec<_> = new
            .lines
            .iter()
            .zip(1..)
            .map(|(line, line_number)| crate::stock::plan::Need {
                line_number,
                sku: line.sku.clone(),
                quantity: line.quantity,
            })
            .collect();
        let Some(parts) = plan(&needs, &session.availability()) else {
            return Ok(store::insert(tx, id, new, total, OrderStatus::Backordered, None).await?);
        };
        if !store::insert(tx, id, new, total, OrderStatus::Reserved, None).await? {
            return Ok(false);
        }
        reserve_parts(tx, &mut session, id, &new.crm_order_id, &parts).await?;
        session.publish(tx).await?;
        Ok(true)
    }

    async fn by_crm_id(&self, crm_order_id: &str) -> Result<Option<Order>> {
        let mut conn = self.pool.acquire().await?;
        match store::id_of(&mut conn, crm_order_id).await? {
            Some(id) => Ok(store::load(&mut conn, id, false).await?),
            None => Ok(None),
        }
    }

    /// Cancels the order of `crm_order_id` while not shipped, releasing its reservation (the
    /// freed stock goes to backorders). Cancelling a cancelled order changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn cancel(&self, crm_order_id: &str, reason: Option<String>) -> Result<Order> {
        if crm_order_id.is_empty() {
            return Err(Error::invalid("crm_order_id", "required"));
        }
        if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(Error::invalid("reason", "at most 500 characters"));
        }
        crate::text::check_no_nul(&[
            ("crm_order_id", crm_order_id),
            ("reason", reason.as_deref().unwrap_or_default()),
        ])?;
        retrying("cancel order", || {
            self.cancel_once(crm_order_id, reason.as_deref())
        })
        .await
    }

    async fn cancel_once(&self, crm_order_id: &str, reason: Option<&str>) -> Result<Order> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let id = store::id_of(&mut tx, crm_order_id)
            .await?
            .ok_or_else(|| Error::not_found("sales order for CRM order", crm_order_id))?;
        let (mut session, order) = lock_with_stock(&mut tx, id, true).await?;
        if order.status == OrderStatus::Cancelled {
            return Ok(order);
        }
        ensure_transition(&order, OrderStatus::Cancelled)?;
        let mut released = false;
        for line in &order.lines {
            for held in line
                .reservations
                .iter()
                .filter(|r| r.state == ReservationState::Held)
            {
                session
                    .apply(
                        &mut tx,
                        NewMovement {
                            sku: line.sku.clone(),
                            warehouse: held.warehouse.clone(),
                            on_hand_delta: 0,
                            reserved_delta: -held.quantity,
                            reason: MovementReason::Release,
                            reference: Some(order.crm_order_id.clone()),
                            order_id: Some(order.id),
                        },
                    )
                    .await?;
                released = true;
            }
        }
        store::settle_reservations(&mut tx, id, ReservationState::Released).await?;
        let reason = reason.unwrap_or("cancelled in the CRM");
        store::set_status(&mut tx, id, OrderStatus::Cancelled, Some(reason)).await?;
        if released {
            reserve_backorders(&mut tx, &mut session, &order.skus()).await?;
        }
        session.publish(&mut tx).await?;
        let order = load_locked(&mut tx, id).await?;
        publish_status(&mut tx, &order).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// CREDIT_HOLD -> RESERVED, or BACKORDERED when the stock is not there: finance approved.
    /// With `once`, a retry of the same request id replays the first answer.
    #[tracing::instrument(skip(self, once))]
    pub async fn release_credit_hold(
        &self,
        id: Uuid,
        once: Option<&Once<Order>>,
    ) -> Result<Answer<Order>> {
        retrying("release credit hold", || self.release_once(id, once)).await
    }

    async fn release_once(&self, id: Uuid, once: Option<&Once<Order>>) -> Result<Answer<Order>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        let (mut session, order) = lock_with_stock(&mut tx, id, false).await?;
        // Only a held order is released (BACKORDERED -> RESERVED is for arriving stock).
        if order.status != OrderStatus::CreditHold {
            return Err(illegal(&order, OrderStatus::Reserved));
        }
        match plan(&order.needs(), &session.availability()) {
            Some(parts) => {
                reserve_parts(&mut tx, &mut session, id, &order.crm_order_id, &parts).await?;
                store::set_status(&mut tx, id, OrderStatus::Reserved, None).await?;
            }
            None => store::set_status(&mut tx, id, OrderStatus::Backordered, None).await?,
        }
        session.publish(&mut tx).await?;
        let order = load_locked(&mut tx, id).await?;
        publish_status(&mut tx, &order).await?;
        idempotency::remember(&mut tx, once, &order).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(order))
    }

    /// RESERVED -> SHIPPED: the reserved stock leaves (on hand and reserved both drop). With
    /// `once`, a retry of the same request id replays the first answer.
    #[tracing::instrument(skip(self, once))]
    pub async fn ship(&self, id: Uuid, once: Option<&Once<Order>>) -> Result<Answer<Order>> {
        retrying("ship order", || self.ship_once(id, once)).await
    }

    async fn ship_once(&self, id: Uuid, once: Option<&Once<Order>>) -> Result<Answer<Order>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        let (mut session, order) = lock_with_stock(&mut tx, id, false).await?;
        ensure_transition(&order, OrderStatus::Shipped)?;
        for line in &order.lines {
            for held in line
                .reservations
                .iter()
                .filter(|r| r.state == ReservationState::Held)
            {
                session
                    .apply(
                        &mut tx,
                        NewMovement {
                            sku: line.sku.clone(),
                            warehouse: held.warehouse.clone(),
                            on_hand_delta: -held.quantity,
                            reserved_delta: -held.quantity,
                            reason: MovementReason::Shipment,
                            reference: Some(order.crm_order_id.clone()),
                            order_id: Some(order.id),
                        },
                    )
                    .await?;
            }
        }
        store::settle_reservations(&mut tx, id, ReservationState::Shipped).await?;
        store::set_status(&mut tx, id, OrderStatus::Shipped, None).await?;
        session.publish(&mut tx).await?;
        let order = load_locked(&mut tx, id).await?;
        publish_status(&mut tx, &order).await?;
        idempotency::remember(&mut tx, once, &order).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(order))
    }

    /// SHIPPED -> INVOICED: issues the invoice (due after the customer's payment terms) and
    /// raises the customer's open balance by the order total. With `once`, a retry of the
    /// same request id replays the first answer.
    #[tracing::instrument(skip(self, once))]
    pub async fn invoice(&self, id: Uuid, once: Option<&Once<Order>>) -> Result<Answer<Order>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        let order = store::load(&mut tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("sales order", id))?;
        ensure_transition(&order, OrderStatus::Invoiced)?;
        let account =
            finance::store::lock_or_create(&mut tx, order.customer_id, &self.defaults).await?;
        if account.currency != order.currency {
            return Err(Error::precondition(format!(
                "the order is in {}, the customer's account in {}",
                order.currency, account.currency
            )));
        }
        let issue_date = Utc::now().date_naive();
        let due = due_date(issue_date, account.payment_terms_days)
            .ok_or_else(|| Error::Internal("due date out of range".to_owned()))?;
        let number = store::next_invoice_number(&mut tx).await?;
        let invoice = model::Invoice {
            number: format!("INV-{number:08}"),
            amount_minor: order.total_minor,
            issue_date,
            due_date: due,
        };
        store::set_invoice(&mut tx, id, &invoice).await?;
        let open_balance_minor = account
            .open_balance_minor
            .checked_add(order.total_minor)
            .ok_or_else(|| Error::precondition("the open balance would overflow"))?;
        let account = finance::store::update(
            &mut tx,
            &finance::Finance {
                open_balance_minor,
                ..account
            },
        )
        .await?;
        finance::publish_changed(&mut tx, &account).await?;
        let order = load_locked(&mut tx, id).await?;
        publish_status(&mut tx, &order).await?;
        idempotency::remember(&mut tx, once, &order).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(order))
    }
}

/// Locks the skus of order `id` (and, with `with_backorders`, of the backorders waiting for
/// them), then the order itself; returns the order as locked.
async fn lock_with_stock(
    conn: &mut PgConnection,
    id: Uuid,
    with_backorders: bool,
) -> Result<(StockSession, Order)> {
    // Lines never change, so the skus read before locking are the skus after.
    let order = store::load(conn, id, false)
        .await?
        .ok_or_else(|| Error::not_found("sales order", id))?;
    let skus = order.skus();
    let waiting = if with_backorders {
        store::backordered_skus(conn, &skus).await?
    } else {
        Vec::new()
    };
    let session = StockSession::lock(conn, skus.into_iter().chain(waiting)).await?;
    let order = load_locked(conn, id).await?;
    Ok((session, order))
}

async fn load_locked(conn: &mut PgConnection, id: Uuid) -> Result<Order> {
    store::load(conn, id, true)
        .await?
        .ok_or_else(|| Error::not_found("sales order", id))
}

fn ensure_transition(order: &Order, to: OrderStatus) -> Result<()> {
    if can_transition(order.status, to) {
        Ok(())
    } else {
        Err(illegal(order, to))
    }
}

fn illegal(order: &Order, to: OrderStatus) -> Error {
    Error::precondition_info(
        format!(
            "order {} is {}; it cannot become {}",
            order.id,
            order.status.as_str(),
            to.as_str()
        ),
        Reason::IllegalTransition,
        [
            ("status", order.status.as_str().to_owned()),
            ("requested", to.as_str().to_owned()),
        ],
    )
}

/// Reserves `parts` for order `order_id`: each line once (the guard in the lines table),
/// one reservation row and one ledger entry per part.
async fn reserve_parts(
    conn: &mut PgConnection,
    session: &mut StockSession,
    order_id: Uuid,
    crm_order_id: &str,
    parts: &[Part],
) -> Result<()> {
    let mut lines: BTreeMap<i32, Vec<&Part>> = BTreeMap::new();
    for part in parts {
        lines.entry(part.line_number).or_default().push(part);
    }
    for (line_number, parts) in lines {
        if !store::mark_line_reserved(conn, order_id, line_number).await? {
            return Err(Error::Internal(format!(
                "line {line_number} of order {order_id} is already reserved"
            )));
        }
        for part in parts {
            store::insert_reservation(
                conn,
                order_id,
                line_number,
                &part.sku,
                &part.warehouse,
                part.quantity,
            )
            .await?;
            session
                .apply(
                    conn,
                    NewMovement {
                        sku: part.sku.clone(),
                        warehouse: part.warehouse.clone(),
                        on_hand_delta: 0,
                        reserved_delta: part.quantity,
                        reason: MovementReason::Reservation,
                        reference: Some(crm_order_id.to_owned()),
                        order_id: Some(order_id),
                    },
                )
                .await?;
        }
    }
    Ok(())
}

/// Stock of `skus` became available: reserves the BACKORDERED orders waiting for any of
/// them, oldest first, each in full or not at all (an order that does not fit yet does not
/// block younger ones that do). Runs inside the caller's transaction, whose session already
/// holds the locks of `skus` and of the skus those orders need. Returns the CRM order ids
/// reserved.
pub async fn reserve_backorders(
    tx: &mut OutboxTx,
    session: &mut StockSession,
    skus: &[String],
) -> Result<Vec<String>> {
    let mut reserved = Vec::new();
    for id in store::lock_backordered(tx, skus).await? {
        let order = load_locked(tx, id).await?;
        // Only an order that went BACKORDERED after the caller read the candidates needs
        // skus not locked yet.
        session.extend(tx, order.skus()).await?;
        let Some(parts) = plan(&order.needs(), &session.availability()) else {
            continue;
        };
        reserve_parts(tx, session, id, &order.crm_order_id, &parts).await?;
        store::set_status(tx, id, OrderStatus::Reserved, None).await?;
        let order = load_locked(tx, id).await?;
        publish_status(tx, &order).await?;
        tracing::info!(order_id = %id, crm_order_id = %order.crm_order_id, "backorder reserved");
        reserved.push(order.crm_order_id);
    }
    Ok(reserved)
}

/// Enqueues `erp.order.status_changed` for `order` at its current version.
pub(crate) async fn publish_status(tx: &mut OutboxTx, order: &Order) -> Result<()> {
    Ok(tx
        .publish(SOURCE, order.version, &order.status_event())
        .await?)
}
