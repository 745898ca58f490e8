//! `ErpSync.Republish`: the current state of every product, every stocked sku, every sales
//! order and every customer finance that ever changed, enqueued again through the outbox at
//! the versions they have now (the snapshot for an initial load of a consumer).
//!
//! Each kind is walked in key order in transactions of at most [`BATCH`] rows. A batch
//! share-locks its rows, so a writer of one of them waits until the batch commits and its own
//! event (at the next version) follows the republished one: per-entity order holds. Nothing
//! changes state or versions; consumers that already have a version ignore it.

use sqlx::PgPool;
use tandem_common::outbox::OutboxWaker;
use uuid::Uuid;

use crate::{error::Result, finance, orders, products, retry::retrying, stock};

/// The most rows one republish transaction covers.
pub const BATCH: i64 = 500;

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
    pool: PgPool,
    outbox: OutboxWaker,
}

/// A batch's count and, when it was full, the key to continue after.
type Step<K> = (i64, Option<K>);

fn step<K>(count: usize, last: Option<K>) -> Step<K> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    (count, if count < BATCH { None } else { last })
}

impl Republisher {
    pub fn new(pool: PgPool, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    #[tracing::instrument(skip(self))]
    pub async fn run(&self) -> Result<Republished> {
        let mut done = Republished::default();

        let mut after: Option<String> = None;
        loop {
            let (count, next) =
                retrying("republish products", || self.products(after.as_deref())).await?;
            done.products += count;
            let Some(next) = next else { break };
            after = Some(next);
        }

        let mut after: Option<String> = None;
        loop {
            let (count, next) =
                retrying("republish stock", || self.stock(after.as_deref())).await?;
            done.stock_levels += count;
            let Some(next) = next else { break };
            after = Some(next);
        }

        let mut after: Option<Uuid> = None;
        loop {
            let (count, next) = retrying("republish orders", || self.orders(after)).await?;
            done.orders += count;
            let Some(next) = next else { break };
            after = Some(next);
        }

        let mut after: Option<Uuid> = None;
        loop {
            let (count, next) = retrying("republish finance", || self.finance(after)).await?;
            done.customers += count;
            let Some(next) = next else { break };
            after = Some(next);
        }

        tracing::info!(
            products = done.products,
            stock_levels = done.stock_levels,
            orders = done.orders,
            customers = done.customers,
            "republished"
        );
        Ok(done)
    }

    async fn products(&self, after: Option<&str>) -> Result<Step<String>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let rows = products::store::share_after(&mut tx, after, BATCH).await?;
        for product in &rows {
            products::publish_upserted(&mut tx, product).await?;
        }
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
        for order in &rows {
            orders::publish_status(&mut tx, order).await?;
        }
        tx.commit().await?;
        Ok(step(rows.len(), rows.last().map(|o| o.id)))
    }

    async fn finance(&self, after: Option<Uuid>) -> Result<Step<Uuid>> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let rows = finance::store::share_changed(&mut tx, after, BATCH).await?;
        for account in &rows {
            finance::publish_changed(&mut tx, account).await?;
        }
        tx.commit().await?;
        Ok(step(rows.len(), rows.last().map(|f| f.customer_id)))
    }
}
