//! After the ERP's database was restored to an earlier point: the CRM's mirrors may hold
//! versions of products, stock, order statuses and customer finance that the restored ERP
//! never reached, so its next changes would be ignored as stale. [`Restore::lift`] makes each
//! entity's version rise above the mirror's and writes its current state to the outbox in the
//! same transaction (under the entity's row lock), so the CRM takes the ERP's state;
//! [`Restore::recover_product`] takes a product back from the CRM's catalogue mirror.
//! `tandemctl resync --after-restore erp` drives both (through `ErpSync`).
//!
//! One transaction per entity: each takes one row lock, so the ERP's lock order holds.

pub(crate) mod store;

use tandem_common::outbox::OutboxWaker;
use tandem_common::pool::Db;
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    finance::{self, FinanceDefaults},
    orders,
    products::{self, ProductFields},
    stock,
};

/// What a resync did to one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The ERP was at or above the mirror's version: nothing written.
    Current,
    /// The ERP's state kept, at a version above the mirror's.
    Lifted,
    /// The mirror's values taken back, at a version above the mirror's.
    Recovered,
    /// The ERP does not have the entity; nothing written.
    Missing,
}

/// The result for one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifted {
    pub outcome: Outcome,
    /// The ERP's version before (0 when missing or never changed).
    pub previous_version: i64,
    /// The ERP's version after.
    pub version: i64,
}

impl Lifted {
    fn missing() -> Self {
        Self {
            outcome: Outcome::Missing,
            previous_version: 0,
            version: 0,
        }
    }

    fn current(version: i64) -> Self {
        Self {
            outcome: Outcome::Current,
            previous_version: version,
            version,
        }
    }
}

/// Which entity a version floor is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Key: sku; version of `erp.product.upserted`.
    Product,
    /// Key: sku; version of `erp.stock.changed`.
    Stock,
    /// Key: the CRM order id; version of `erp.order.status_changed`.
    Order,
    /// Key: customer id; version of `erp.customer.finance_changed`.
    Finance,
}

/// A product as the CRM's catalogue mirror holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredProduct {
    pub sku: String,
    pub display_name: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub active: bool,
    pub mirror_version: i64,
}

/// The version a lifted or recovered entity gets: one above what the mirror has seen.
fn above(mirror_version: i64) -> Result<i64> {
    mirror_version
        .checked_add(1)
        .ok_or_else(|| Error::invalid("mirror_version", "too large"))
}

/// Resync operations over the ERP's database.
#[derive(Clone)]
pub struct Restore {
    pool: Db,
    outbox: OutboxWaker,
    defaults: FinanceDefaults,
}

impl Restore {
    pub fn new(pool: Db, outbox: OutboxWaker, defaults: FinanceDefaults) -> Self {
        Self {
            pool,
            outbox,
            defaults,
        }
    }

    /// Lifts the version of one entity above `mirror_version` (see `ErpSync.LiftVersions`).
    #[tracing::instrument(skip(self))]
    pub async fn lift(&self, kind: Kind, key: &str, mirror_version: i64) -> Result<Lifted> {
        let target = above(mirror_version)?;
        let mut tx = self.outbox.begin(&self.pool).await?;
        let lifted = match kind {
            Kind::Product => {
                let Some(previous) = store::lock_product_version(&mut tx, key).await? else {
                    return Ok(Lifted::missing());
                };
                if previous >= mirror_version {
                    return Ok(Lifted::current(previous));
                }
                let product = store::set_product_version(&mut tx, key, target).await?;
                products::publish_upserted(&mut tx, &product).await?;
                previous
            }
            Kind::Stock => {
                let Some(previous) = store::lock_stock_version(&mut tx, key).await? else {
                    return Ok(Lifted::missing());
                };
                if previous >= mirror_version {
                    return Ok(Lifted::current(previous));
                }
                store::set_stock_version(&mut tx, key, target).await?;
                // Stock writers hold this sku's product row (locked above) while they move
                // stock, so these levels stay current until the commit.
                let levels = stock::store::levels_of(&mut tx, key).await?;
                stock::publish_levels(&mut tx, key, target, &levels).await?;
                previous
            }
            Kind::Order => {
                let Some((id, previous)) = store::lock_order_version(&mut tx, key).await? else {
                    return Ok(Lifted::missing());
                };
                if previous >= mirror_version {
                    return Ok(Lifted::current(previous));
                }
                store::set_order_version(&mut tx, id, target).await?;
                let order = orders::store::load(&mut tx, id, false)
                    .await?
                    .ok_or_else(|| Error::Internal(format!("order {id} vanished")))?;
                orders::publish_status(&mut tx, &order).await?;
                previous
            }
            Kind::Finance => {
                let Ok(customer_id) = Uuid::parse_str(key) else {
                    return Ok(Lifted::missing());
                };
                if !finance::store::customer_exists(&mut tx, customer_id).await? {
                    return Ok(Lifted::missing());
                }
                let account =
                    finance::store::lock_or_create(&mut tx, customer_id, &self.defaults).await?;
                if account.version >= mirror_version {
                    tx.commit().await?;
                    return Ok(Lifted::current(account.version));
                }
                let previous = account.version;
                let account = store::set_finance_version(&mut tx, customer_id, target).await?;
                finance::publish_changed(&mut tx, &account).await?;
                previous
            }
        };
        tx.commit().await?;
        tracing::info!(
            previous_version = lifted,
            version = target,
            "version lifted"
        );
        Ok(Lifted {
            outcome: Outcome::Lifted,
            previous_version: lifted,
            version: target,
        })
    }

    /// Moves the invoice numbering above `floor`, the highest number the CRM has seen: a
    /// number issued before the restore (and lost with it) is never issued again. `true`
    /// when it had to move.
    #[tracing::instrument(skip(self))]
    pub async fn advance_invoice_numbers(&self, floor: i64) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let advanced = store::advance_invoice_numbers(&mut conn, floor).await?;
        if advanced {
            tracing::info!(floor, "invoice numbering advanced");
        }
        Ok(advanced)
    }

    /// Takes a product back from the CRM's catalogue mirror when the mirror's version is above
    /// the ERP's, or the ERP lost it (see `ErpSync.RecoverProducts`).
    #[tracing::instrument(skip_all, fields(sku = %mirrored.sku))]
    pub async fn recover_product(&self, mirrored: &MirroredProduct) -> Result<Lifted> {
        let target = above(mirrored.mirror_version)?;
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = products::store::get(&mut tx, &mirrored.sku, true).await?;
        let previous = current.as_ref().map_or(0, |p| p.version);
        if previous >= mirrored.mirror_version {
            return Ok(Lifted::current(previous));
        }
        let fields = ProductFields {
            display_name: mirrored.display_name.clone(),
            // The CRM does not mirror descriptions: a lost product comes back without one.
            description: current
                .as_ref()
                .map(|p| p.fields.description.clone())
                .unwrap_or_default(),
            unit_price_minor: mirrored.unit_price_minor,
            currency: mirrored.currency.clone(),
            active: mirrored.active,
        };
        match current {
            Some(product) => {
                products::store::update(&mut tx, product.id, &fields).await?;
            }
            None => {
                products::store::insert(&mut tx, Uuid::now_v7(), &mirrored.sku, &fields).await?;
            }
        }
        let product = store::set_product_version(&mut tx, &mirrored.sku, target).await?;
        products::publish_upserted(&mut tx, &product).await?;
        tx.commit().await?;
        tracing::info!(
            previous_version = previous,
            version = target,
            "product recovered"
        );
        Ok(Lifted {
            outcome: Outcome::Recovered,
            previous_version: previous,
            version: target,
        })
    }
}
