//! `ErpSync.Republish`: the current state of every product, every stocked sku, every sales
//! order and every customer finance that ever changed, enqueued again through the outbox at
//! the versions they have now (the snapshot for an initial load of a consumer).
//!
//! One call republishes until a deadline and says where to go on ([`Resume`]), so a large
//! database takes several calls, each well inside the server's call deadline.
//!
//! Each kind is walked in key order in transactions of at most [`BATCH`] rows. A batch
//! share-locks its rows, so a writer of one of them waits until the batch commits and its own
//! event (at the next version) follows the republished one: per-entity order holds. Nothing
//! changes state or versions; consumers that already have a version ignore it.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tandem_common::outbox::OutboxWaker;
use tandem_common::pool::Db;
use uuid::Uuid;

use crate::{error::Result, finance, orders, products, products::SOURCE, retry::retrying, stock};

/// The most rows one republish transaction covers.
pub const BATCH: i64 = 500;

/// Where a republish goes on: after this key of this kind (`None`: its first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    Products(Option<String>),
    Stock(Option<String>),
    Orders(Option<Uuid>),
    Finance(Option<Uuid>),
}

impl Default for Resume {
    fn default() -> Self {
        Self::Products(None)
    }
}

/// How many events a republish enqueued, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Republished {
    /// `erp.product.upserted`, one per product.
    pub products: i64,
    /// `erp.stock.changed`, one per sku whose stock ever changed.
    pub stock_levels: i64,
    /// `erp.order.status_changed`, one per sales order.
    pub orders: i64,
    /// `erp.customer.finance_changed`, one per customer whose finance ever changed.
    pub customers: i64,
}

#[derive(Clone)]
pub struct Republisher {
    pool: Db,
    outbox: OutboxWaker,
}

/// A batch's count and, when it was full, the key to continue after.
type Step<K> = (i64, Option<K>);

fn step<K>(count: usize, last: Option<K>) -> Step<K> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    (count, if count < BATCH { None } else { last })
}

impl Republisher {
    pub fn new(pool: Db, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    /// Republishes from `from` on, kind after kind, until everything is done (`None`) or
    /// `until` has passed (where to go on).
    #[tracing::instrument(skip(self))]
    pub async fn run(&self, from: Resume, until: Instant) -> Result<(Republished, Option<Resume>)> {
        let mut done = Republished::default();
        let mut at = Some(from);
        while let Some(resume) = at.take() {
            let next = match resume {
                Resume::Products(after) => {
                    let (count, next) =
                        retrying("republish products", || self.products(after.as_deref())).await?;
                    done.products += count;
                    next.map_or(Resume::Stock(None), |last| Resume::Products(Some(last)))
                }
                Resume::Stock(after) => {
                    let (count, next) =
                        retrying("republish stock", || self.stock(after.as_deref())).await?;
                    done.stock_levels += count;
                    next.map_or(Resume::Orders(None), |last| Resume::Stock(Some(last)))
                }
                Resume::Orders(after) => {
                    let (count, next) = retrying("republish orders", || self.orders(after)).await?;
                    done.orders += count;
                    next.map_or(Resume::Finance(None), |last| Resume::Orders(Some(last)))
                }
                Resume::Finance(after) => {
                    let (count, next) =
                        retrying("republish finance", || self.finance(after)).await?;
                    done.customers += count;
                    match next {
                        Some(last) => Resume::Finance(Some(last)),
                        None => {
                            tracing::info!(?done, "republished everything");
                            return Ok((done, None));
                        }
                    }
                }
            };
            if Instant::now() >= until {
                return Ok((done, Some(next)));
            }
            at = Some(next);
        }
        Ok((done, None))
    }

    async fn products(&self, after: Option<&str>) -> Result<Step<String>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let rows = products::store::share_after(&mut tx, after, BATCH).await?;
        tx.publish_all(SOURCE, rows.iter().map(|p| (p.version, p.upserted_event())))
            .await?;
        tx.commit().await?;
        Ok(step(rows.len(), rows.last().map(|p| p.sku.clone())))
    }

    async fn stock(&self, after: Option<&str>) -> Result<Step<String>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let skus = stock::store::share_stocked(&mut tx, after, BATCH).await?;
        let names: Vec<String> = skus.iter().map(|(sku, _)| sku.clone()).collect();
        let levels = stock::store::levels_of_many(&mut tx, &names).await?;
        for (sku, version) in &skus {
            let of_sku = levels.iter().filter(|level| &level.sku == sku);
            stock::publish_levels(&mut tx, sku, *version, of_sku).await?;
        }
        tx.commit().await?;
        Ok(step(skus.len(), names.last().cloned()))
    }

    async fn orders(&self, after: Option<Uuid>) -> Result<Step<Uuid>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let rows = orders::store::share_headers(&mut tx, after, BATCH).await?;
        tx.publish_all(SOURCE, rows.iter().map(|o| (o.version, o.status_event())))
            .await?;
        tx.commit().await?;
        Ok(step(rows.len(), rows.last().map(|o| o.id)))
    }

    async fn finance(&self, after: Option<Uuid>) -> Result<Step<Uuid>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let rows = finance::store::share_changed(&mut tx, after, BATCH).await?;
        tx.publish_all(SOURCE, rows.iter().map(|f| (f.version, f.changed_event())))
            .await?;
        tx.commit().await?;
        Ok(step(rows.len(), rows.last().map(|f| f.customer_id)))
    }
}
