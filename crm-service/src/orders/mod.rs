//! The sales order domain. Drafts are private to the CRM; submitting and requesting a
//! cancellation write the order and its `crm.order.*` outbox event in one transaction, then
//! wake the relay. The ERP's fulfilment status is mirrored in through [`Orders::apply_status`],
//! which never publishes (no echo).

pub mod model;
pub(crate) mod store;

use std::time::Instant;

use sqlx::PgConnection;
use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    outbox::{OutboxTx, OutboxWaker},
    paging::Page,
};
use tandem_proto::events::{CustomerStatus, crm::OrderStatus};
use uuid::Uuid;

pub use model::{
    ExternalOrder, Fulfilment, FulfilmentStatus, FulfilmentUpdate, Line, LineRequest, Order,
    OrderFilter,
};

use crate::{
    PAGE_SIZES, REPUBLISH_BATCH, SOURCE, catalogue, customers,
    error::{Error, Reason, Result, check},
    mirror::Applied,
};

/// Sales order operations over one database.
#[derive(Clone)]
pub struct Orders {
    pool: Db,
    outbox: OutboxWaker,
}

impl Orders {
    pub fn new(pool: Db, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    /// Creates a DRAFT order for an ACTIVE customer, quoting every line from the catalogue.
    /// With `once`, at most once per request id (a retry replays the first answer).
    #[tracing::instrument(skip(self, lines, once), fields(order_id))]
    pub async fn create(
        &self,
        customer_id: Uuid,
        lines: &[LineRequest],
        once: Option<&Once<Order>>,
    ) -> Result<Answer<Order>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        require_active_customer(&mut tx, customer_id).await?;
        let (currency, lines) = quote(&mut tx, lines).await?;
        let order = store::insert(
            &mut tx,
            Uuid::now_v7(),
            customer_id,
            currency.as_deref(),
            &lines,
        )
        .await?;
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        idempotency::remember(&mut tx, once, &order).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(order))
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Order> {
        let mut conn = self.pool.acquire().await?;
        store::get(&mut conn, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        filter: &OrderFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Order>, String)> {
        let page: Page<Uuid> =
            Page::parse(page_size, page_token, &filter.fingerprint(), PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut orders = store::list(&mut conn, filter, &page).await?;
        let next = page.finish(&mut orders, |o| o.id)?;
        Ok((orders, next))
    }

    /// Replaces the lines of a DRAFT order, quoting them again.
    #[tracing::instrument(skip(self, lines))]
    pub async fn update_lines(
        &self,
        id: Uuid,
        lines: &[LineRequest],
        expected_version: Option<i64>,
    ) -> Result<Order> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = locked(&mut tx, id, expected_version).await?;
        current.check_editable()?;
        let (currency, lines) = quote(&mut tx, lines).await?;
        if currency == current.currency && lines == current.lines {
            return Ok(current);
        }
        let order = store::replace_lines(&mut tx, id, currency.as_deref(), &lines).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// DRAFT -> SUBMITTED, publishing `crm.order.submitted` with the lines and quoted prices.
    /// With `once`, a retry of the same request id replays the first answer.
    #[tracing::instrument(skip(self, once))]
    pub async fn submit(
        &self,
        id: Uuid,
        expected_version: Option<i64>,
        once: Option<&Once<Order>>,
    ) -> Result<Answer<Order>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        let current = locked(&mut tx, id, expected_version).await?;
        current.check_submittable()?;
        require_active_customer(&mut tx, current.customer_id).await?;
        let order = store::transition(&mut tx, id, OrderStatus::Submitted, None).await?;
        publish(&mut tx, &order).await?;
        idempotency::remember(&mut tx, once, &order).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(order))
    }

    /// SUBMITTED -> CANCEL_REQUESTED (publishing `crm.order.cancel_requested`); a DRAFT is
    /// CANCELLED at once (the ERP never saw it, nothing is published). Asking again while
    /// the request is pending changes nothing.
    #[tracing::instrument(skip(self, reason))]
    pub async fn request_cancellation(
        &self,
        id: Uuid,
        reason: Option<String>,
        expected_version: Option<i64>,
    ) -> Result<Order> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = locked(&mut tx, id, expected_version).await?;
        let Some(target) = current.cancellation_target()? else {
            return Ok(current);
        };
        let order = store::transition(&mut tx, id, target, reason.as_deref()).await?;
        let published = target == OrderStatus::CancelRequested;
        if published {
            publish(&mut tx, &order).await?;
        }
        tx.commit().await?;
        Ok(order)
    }

    /// Creates and submits an integrator's order in one transaction that writes
    /// `crm.order.submitted`, quoting every line from the catalogue. Idempotent by
    /// `external_ref`: when that order exists it is returned as it is, with `false`.
    #[tracing::instrument(
        skip_all,
        fields(external_ref = %order.external_ref, order_id)
    )]
    pub async fn place_external(&self, order: &ExternalOrder) -> Result<(Order, bool)> {
        check(order.violations())?;
        let placed = async {
            let mut tx = self.outbox.begin(&self.pool).await?;
            if let Some(existing) = store::get_by_external_ref(&mut tx, &order.external_ref).await?
            {
                return Ok((existing, false));
            }
            let customer_id = external_customer(&mut tx, &order.customer_external_ref).await?;
            let skus: Vec<String> = order.lines.iter().map(|l| l.sku.clone()).collect();
            let products = catalogue::store::get_many(&mut tx, &skus).await?;
            let unknown: Vec<&str> = skus
                .iter()
                .filter(|sku| !products.get(*sku).is_some_and(|p| p.orderable()))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(Error::precondition_info(
                    format!(
                        "not active products of the catalogue: {}",
                        unknown.join(", ")
                    ),
                    Reason::UnknownSku,
                    vec![("skus", unknown.join(","))],
                ));
            }
            check(order.currency_violations(&products))?;
            let (currency, lines) = model::price(&order.lines, &products)?;
            let placed = store::insert_submitted(
                &mut tx,
                Uuid::now_v7(),
                customer_id,
                currency.as_deref(),
                &lines,
                &order.external_ref,
            )
            .await?;
            publish(&mut tx, &placed).await?;
            tx.commit().await?;
            Ok((placed, true))
        }
        .await;
        let placed = match placed {
            // A concurrent call placed it between our read and our insert: it exists now.
            Err(Error::Database(error)) if is_external_ref_taken(&error) => {
                let mut conn = self.pool.acquire().await?;
                let existing = store::get_by_external_ref(&mut conn, &order.external_ref)
                    .await?
                    .ok_or(Error::Database(error))?;
                (existing, false)
            }
            other => other?,
        };
        tracing::Span::current().record("order_id", tracing::field::display(placed.0.id));
        Ok(placed)
    }

    /// Publishes the current state of the orders after `after` that the ERP knows again at
    /// their current versions, in batches of at most [`REPUBLISH_BATCH`] per transaction,
    /// until all are done or `until` has passed: `crm.order.submitted` while
    /// SUBMITTED, `crm.order.cancel_requested` while CANCEL_REQUESTED and once CANCELLED (the
    /// CRM's side of a cancelled order is its cancellation; the ERP answers a cancel of an
    /// order it cancelled already with that order, unchanged). Drafts, cancelled ones
    /// included, are private. Returns how many, and the last one when more remain.
    #[tracing::instrument(skip(self))]
    pub async fn republish(
        &self,
        mut after: Option<Uuid>,
        until: Instant,
    ) -> Result<(i64, Option<Uuid>)> {
        let mut count = 0;
        loop {
            let mut tx = self.outbox.begin(&self.pool).await?;
            let batch = store::published_batch_for_share(&mut tx, after, REPUBLISH_BATCH).await?;
            tx.publish_all(
                SOURCE,
                batch.iter().map(|order| {
                    let event = if order.status == OrderStatus::Cancelled {
                        Order {
                            status: OrderStatus::CancelRequested,
                            ..order.clone()
                        }
                        .event()
                    } else {
                        order.event()
                    };
                    (order.version, event)
                }),
            )
            .await?;
            tx.commit().await?;
            count += i64::try_from(batch.len()).unwrap_or(i64::MAX);
            match batch.last() {
                Some(last) if i64::try_from(batch.len()).unwrap_or(0) >= REPUBLISH_BATCH => {
                    after = Some(last.id);
                    if Instant::now() >= until {
                        return Ok((count, after));
                    }
                }
                _ => return Ok((count, None)),
            }
        }
    }

    /// Applies the ERP's fulfilment status at `version` (version-gated; never published; with
    /// `repair`, an equal version applies too). CANCELLED ends the CRM order too. Unknown orders
    /// are NOT_FOUND; drafts, which the ERP cannot know, FAILED_PRECONDITION.
    #[tracing::instrument(skip(self, change), fields(status = change.update.status.as_str()))]
    pub async fn apply_status(&self, change: &StatusChange) -> Result<Applied> {
        let mut applied = self
            .apply_statuses(std::slice::from_ref(change), |_| String::new())
            .await?;
        applied.pop().ok_or_else(|| {
            sqlx::Error::Protocol("a status applied without an answer".into()).into()
        })
    }

    /// Applies each of `changes` as [`Orders::apply_status`] would, in the order given (an
    /// order may come more than once), in one transaction: one read of every order, a write
    /// per change that passes its version gate. Any change refused refuses them all; the
    /// fields of an invalid one are named under `prefix(its index)`.
    #[tracing::instrument(skip_all, fields(size = changes.len()))]
    pub async fn apply_statuses(
        &self,
        changes: &[StatusChange],
        prefix: impl Fn(usize) -> String,
    ) -> Result<Vec<Applied>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let mut ids: Vec<Uuid> = changes.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut gates = store::fulfilment_gates_for_update(&mut tx, &ids).await?;
        let mut applied = Vec::with_capacity(changes.len());
        let mut wrote = false;
        for (index, change) in changes.iter().enumerate() {
            let id = change.id;
            let gate = gates.get_mut(&id).ok_or_else(|| not_found(id))?;
            if gate.status == OrderStatus::Draft {
                return Err(Error::precondition(format!(
                    "order {id} is a DRAFT, which the ERP cannot know"
                )));
            }
            check(change.update.violations(gate.currency.as_deref()))
                .map_err(|e| e.prefixed(&prefix(index)))?;
            let stored = gate.version;
            if change.version < stored || (change.version == stored && !change.repair) {
                applied.push(Applied {
                    changed: false,
                    current_version: stored,
                });
                continue;
            }
            let status = model::status_after(gate.status, change.update.status);
            let written = store::apply_fulfilment(
                &mut tx,
                id,
                &change.update,
                change.version,
                status,
                change.repair,
            )
            .await?;
            if written {
                gate.status = status;
                gate.version = change.version;
                wrote = true;
            }
            applied.push(Applied {
                changed: written,
                current_version: gate.version,
            });
        }
        if wrote {
            tx.commit().await?;
        }
        Ok(applied)
    }
}

/// A fulfilment status to apply to an order: what `CrmSync.ApplyOrderStatus` carries.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub id: Uuid,
    pub update: FulfilmentUpdate,
    pub version: i64,
    pub repair: bool,
}

/// Reads and locks the order; with `expected_version`, fails with `Aborted` unless current.
async fn locked(conn: &mut PgConnection, id: Uuid, expected_version: Option<i64>) -> Result<Order> {
    let current = store::get_for_update(conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(expected) = expected_version
        && expected != current.version
    {
        return Err(Error::Aborted(format!(
            "order {id} is at version {}, not {expected}; read it again and retry",
            current.version
        )));
    }
    Ok(current)
}

async fn require_active_customer(conn: &mut PgConnection, customer_id: Uuid) -> Result<()> {
    match customers::store::status_for_share(conn, customer_id).await? {
        None => Err(Error::not_found("customer", customer_id)),
        Some(CustomerStatus::Archived) => Err(Error::precondition(format!(
            "customer {customer_id} is ARCHIVED; it cannot order"
        ))),
        Some(CustomerStatus::Active) => Ok(()),
    }
}

/// The id of the ACTIVE customer with `external_ref`, locked against changes until the
/// transaction ends.
async fn external_customer(conn: &mut PgConnection, external_ref: &str) -> Result<Uuid> {
    match customers::store::status_by_external_ref_for_share(conn, external_ref).await? {
        None => Err(Error::precondition_info(
            format!("no customer has external_ref {external_ref:?}"),
            Reason::UnknownCustomer,
            vec![("customer_external_ref", external_ref.to_owned())],
        )),
        Some((id, CustomerStatus::Archived)) => Err(Error::precondition_info(
            format!("customer {id} ({external_ref}) is ARCHIVED; it cannot order"),
            Reason::CustomerArchived,
            vec![
                ("customer_external_ref", external_ref.to_owned()),
                ("customer_id", id.to_string()),
            ],
        )),
        Some((id, CustomerStatus::Active)) => Ok(id),
    }
}

fn is_external_ref_taken(error: &sqlx::Error) -> bool {
    tandem_common::db::is_unique_violation(error)
        && matches!(error, sqlx::Error::Database(db)
            if db.constraint() == Some("orders_external_ref_key"))
}

async fn quote(
    conn: &mut PgConnection,
    requests: &[LineRequest],
) -> Result<(Option<String>, Vec<Line>)> {
    check(model::line_violations(requests))?;
    let skus: Vec<String> = requests.iter().map(|l| l.sku.clone()).collect();
    let products = catalogue::store::get_many(conn, &skus).await?;
    model::quote(requests, &products)
}

/// Writes the outbox row of an order event: `crm.order.cancel_requested` once its
/// cancellation is asked for, else `crm.order.submitted` (both carry the full order).
pub(crate) async fn publish(tx: &mut OutboxTx, order: &Order) -> Result<()> {
    Ok(tx.publish(SOURCE, order.version, &order.event()).await?)
}

fn not_found(id: Uuid) -> Error {
    Error::not_found("order", id)
}
