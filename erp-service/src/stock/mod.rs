//! Stock: levels per sku per warehouse and the immutable ledger behind them, the primitive
//! that orders (reservations, shipping) and inventory (receipts, adjustments, transfers,
//! counts) both build on, and that depends on neither.
//!
//! Every write goes through a [`StockSession`] inside one transaction: it takes the sku locks
//! (product rows, in sku order) and then the level rows (FOR UPDATE, in sku and warehouse
//! order), applies movements (level + ledger entry together), and at the end publishes one
//! `erp.stock.changed` per sku it changed.

pub mod model;
pub mod plan;
pub(crate) mod store;

use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};

use sqlx::PgConnection;
use tandem_common::outbox::OutboxTx;
use tandem_proto::events::erp::{StockChangedV1, WarehouseStockV1};

pub use model::{AdjustmentReason, Count, Level, Movement, MovementReason, NewMovement};
pub use plan::Availability;

use crate::{
    error::{Error, Reason, Result},
    products::SOURCE,
};

/// The stock locks and levels one transaction holds, and the skus it changed.
#[derive(Debug, Default)]
pub struct StockSession {
    /// Locked skus that exist, with their `active` flag.
    products: BTreeMap<String, bool>,
    /// Every level row of the locked skus, locked.
    levels: BTreeMap<(String, String), Level>,
    changed: BTreeSet<String>,
}

impl StockSession {
    /// Locks `skus` (unknown ones are skipped: see [`StockSession::knows`]).
    pub async fn lock(
        conn: &mut PgConnection,
        skus: impl IntoIterator<Item = String>,
    ) -> Result<Self> {
        let mut session = Self::default();
        session.extend(conn, skus).await?;
        Ok(session)
    }

    /// Locks the skus not held yet. The first call of a transaction should name every sku
    /// it will need, so locks follow the global order; a later call adds skus after the
    /// ones held (a deadlock that may cause is detected by PostgreSQL and retried).
    pub async fn extend(
        &mut self,
        conn: &mut PgConnection,
        skus: impl IntoIterator<Item = String>,
    ) -> Result<()> {
        let new: BTreeSet<String> = skus
            .into_iter()
            .filter(|sku| !self.products.contains_key(sku))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let new: Vec<String> = new.into_iter().collect();
        for (sku, active) in store::lock_products(conn, &new).await? {
            self.products.insert(sku, active);
        }
        for level in store::lock_levels(conn, &new).await? {
            self.levels
                .insert((level.sku.clone(), level.warehouse.clone()), level);
        }
        Ok(())
    }

    /// Whether the locked `sku` exists, and if so whether it is active.
    pub fn product_active(&self, sku: &str) -> Option<bool> {
        self.products.get(sku).copied()
    }

    /// Creates the level of a locked sku in `warehouse` if it has none yet.
    pub async fn ensure_level(
        &mut self,
        conn: &mut PgConnection,
        sku: &str,
        warehouse: &str,
    ) -> Result<()> {
        if !self.products.contains_key(sku) {
            return Err(Error::Internal(format!("sku {sku} used without its lock")));
        }
        let key = (sku.to_owned(), warehouse.to_owned());
        if let Entry::Vacant(slot) = self.levels.entry(key) {
            slot.insert(store::ensure_level(conn, sku, warehouse).await?);
        }
        Ok(())
    }

    pub fn level(&self, sku: &str, warehouse: &str) -> Option<&Level> {
        self.levels.get(&(sku.to_owned(), warehouse.to_owned()))
    }

    /// What is available now, per locked (sku, warehouse).
    pub fn availability(&self) -> Availability {
        self.levels
            .iter()
            .map(|(key, level)| (key.clone(), level.available()))
            .collect()
    }

    /// Applies `movement` to a locked level and appends it to the ledger.
    pub async fn apply(
        &mut self,
        conn: &mut PgConnection,
        movement: NewMovement,
    ) -> Result<Movement> {
        let key = (movement.sku.clone(), movement.warehouse.clone());
        let level = self.levels.get(&key).ok_or_else(|| {
            Error::Internal(format!(
                "level {}/{} used without its lock",
                movement.sku, movement.warehouse
            ))
        })?;
        let on_hand = level.on_hand + movement.on_hand_delta;
        let reserved = level.reserved + movement.reserved_delta;
        if on_hand < 0 || reserved < 0 || reserved > on_hand {
            return Err(Error::precondition_info(
                format!(
                    "not enough stock of {} in {}: {} on hand, {} reserved, {} available",
                    movement.sku,
                    movement.warehouse,
                    level.on_hand,
                    level.reserved,
                    level.available()
                ),
                Reason::InsufficientStock,
                [
                    ("sku", movement.sku.clone()),
                    ("warehouse", movement.warehouse.clone()),
                    ("available", level.available().to_string()),
                ],
            ));
        }
        let (level, applied) = store::apply(conn, &movement).await?;
        self.changed.insert(movement.sku);
        self.levels.insert(key, level);
        Ok(applied)
    }

    /// The current levels of the skus this session changed.
    pub fn changed_levels(&self) -> Vec<Level> {
        self.levels
            .values()
            .filter(|level| self.changed.contains(&level.sku))
            .cloned()
            .collect()
    }

    /// Enqueues one `erp.stock.changed` per changed sku, with the sku's next stock version.
    pub async fn publish(&self, tx: &mut OutboxTx) -> Result<()> {
        for sku in &self.changed {
            let version = store::next_stock_version(tx, sku).await?;
            let levels = self
                .levels
                .range((sku.clone(), String::new())..)
                .take_while(|((s, _), _)| s == sku)
                .map(|(_, level)| level);
            publish_levels(tx, sku, version, levels).await?;
        }
        Ok(())
    }
}

/// Enqueues `erp.stock.changed` of `sku` at `version` with `levels` (all of the sku's).
pub(crate) async fn publish_levels<'a>(
    tx: &mut OutboxTx,
    sku: &str,
    version: i64,
    levels: impl IntoIterator<Item = &'a Level>,
) -> Result<()> {
    let warehouses: Vec<WarehouseStockV1> = levels
        .into_iter()
        .map(|level| WarehouseStockV1 {
            warehouse: level.warehouse.clone(),
            on_hand: level.on_hand,
            reserved: level.reserved,
            available: level.available(),
        })
        .collect();
    let data = StockChangedV1 {
        sku: sku.to_owned(),
        on_hand: warehouses.iter().map(|w| w.on_hand).sum(),
        reserved: warehouses.iter().map(|w| w.reserved).sum(),
        available: warehouses.iter().map(|w| w.available).sum(),
        warehouses,
    };
    Ok(tx.publish(SOURCE, version, &data).await?)
}
