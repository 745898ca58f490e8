//! After the CRM's database was restored to an earlier point: the ERP's mirror may hold
//! customer versions the restored CRM never reached (changes the restore lost), and orders the
//! CRM no longer has. [`Restore::lift_customer`] makes the CRM's version rise above the
//! mirror's (keeping the CRM's state, or taking the mirror's back), and
//! [`Restore::recover_order`] re-creates a submitted order from the ERP's copy. Each writes
//! its change and its `crm.*` outbox event in one transaction, under the entity's row lock.
//! `tandemctl resync --after-restore crm` drives both (through `CrmSync`).

pub(crate) mod store;

use tandem_common::outbox::OutboxWaker;
use tandem_common::pool::Db;
use tandem_proto::events::crm::OrderStatus;
use uuid::Uuid;

use crate::{
    catalogue, customers,
    customers::Profile,
    error::{Error, Result},
    orders::{self, Line},
};

/// What a resync did to one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The CRM was ahead of the mirror already: nothing written.
    Current,
    /// The CRM's state kept, at a version above the mirror's.
    Lifted,
    /// The mirror's values taken back, at a version above the mirror's.
    Recovered,
    /// Only the mirror has the entity; nothing written.
    Missing,
    /// An order not recovered because its customer is not in the CRM.
    CustomerMissing,
}

/// A customer as the ERP's mirror holds it: the mirrored profile fields (no contacts: the
/// ERP does not mirror them) and the CRM version it last applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredCustomer {
    pub id: Uuid,
    pub profile: Profile,
    pub mirror_version: i64,
}

/// The result for one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifted {
    pub outcome: Outcome,
    /// The CRM's version before; 0 when it did not have the customer.
    pub previous_version: i64,
    /// The CRM's version after.
    pub version: i64,
}

/// One line of an order as the ERP holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// A submitted order as the ERP holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub currency: String,
    pub lines: Vec<MirroredLine>,
}

/// The version a lifted or recovered entity gets: one above what the mirror has seen.
fn above(mirror_version: i64) -> Result<i64> {
    mirror_version
        .checked_add(1)
        .ok_or_else(|| Error::invalid("mirror_version", "too large"))
}

/// Do two profiles agree on every field the ERP mirrors (all but the contacts)?
fn same_mirrored_fields(a: &Profile, b: &Profile) -> bool {
    Profile {
        contacts: Vec::new(),
        ..a.clone()
    } == Profile {
        contacts: Vec::new(),
        ..b.clone()
    }
}

/// Resync operations over the CRM's database.
#[derive(Clone)]
pub struct Restore {
    pool: Db,
    outbox: OutboxWaker,
}

impl Restore {
    pub fn new(pool: Db, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    /// Makes the customer's version rise above `mirrored.mirror_version` (see
    /// `CrmSync.LiftCustomerVersions`): the CRM's profile kept, or with `recover` the
    /// mirror's profile fields taken back (the contacts stay); a customer the CRM lacks is
    /// created from the mirror with `recover`, else reported missing.
    #[tracing::instrument(skip_all, fields(customer_id = %mirrored.id, recover))]
    pub async fn lift_customer(
        &self,
        mirrored: &MirroredCustomer,
        recover: bool,
    ) -> Result<Lifted> {
        let target = above(mirrored.mirror_version)?;
        let mut tx = self.outbox.begin(&self.pool).await?;
        let Some(current) = customers::store::get_for_update(&mut tx, mirrored.id).await? else {
            if !recover {
                return Ok(Lifted {
                    outcome: Outcome::Missing,
                    previous_version: 0,
                    version: 0,
                });
            }
            customers::store::insert(&mut tx, mirrored.id, &mirrored.profile, None)
                .await
                .map_err(|e| taken(mirrored.id, e))?;
            let customer = store::set_customer_version(&mut tx, mirrored.id, target).await?;
            customers::publish(&mut tx, &customer).await?;
            tx.commit().await?;
            tracing::info!(
                version = target,
                "customer re-created from the ERP's mirror"
            );
            return Ok(Lifted {
                outcome: Outcome::Recovered,
                previous_version: 0,
                version: target,
            });
        };
        let previous_version = current.version;
        if previous_version > mirrored.mirror_version
            || (previous_version == mirrored.mirror_version
                && same_mirrored_fields(&current.profile, &mirrored.profile))
        {
            return Ok(Lifted {
                outcome: Outcome::Current,
                previous_version,
                version: previous_version,
            });
        }
        let outcome = if recover {
            let profile = Profile {
                contacts: current.profile.contacts.clone(),
                ..mirrored.profile.clone()
            };
            customers::store::update(&mut tx, mirrored.id, &profile, previous_version + 1, None)
                .await
                .map_err(|e| taken(mirrored.id, e))?;
            Outcome::Recovered
        } else {
            Outcome::Lifted
        };
        let customer = store::set_customer_version(&mut tx, mirrored.id, target).await?;
        customers::publish(&mut tx, &customer).await?;
        tx.commit().await?;
        tracing::info!(
            previous_version,
            version = target,
            ?outcome,
            "customer version lifted"
        );
        Ok(Lifted {
            outcome,
            previous_version,
            version: target,
        })
    }

    /// Re-creates a submitted order from the ERP's copy (see `CrmSync.RecoverOrders`).
    /// Returns the outcome and the order's version (0 when the CRM has none).
    #[tracing::instrument(skip_all, fields(order_id = %mirrored.id))]
    pub async fn recover_order(&self, mirrored: &MirroredOrder) -> Result<(Outcome, i64)> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = orders::store::get_for_update(&mut tx, mirrored.id).await?;
        if let Some(order) = &current
            && order.status != OrderStatus::Draft
        {
            return Ok((Outcome::Current, order.version));
        }
        let customer = customers::store::status_for_share(&mut tx, mirrored.customer_id).await?;
        if customer.is_none() {
            return Ok((
                Outcome::CustomerMissing,
                current.map_or(0, |order| order.version),
            ));
        }
        let skus: Vec<String> = mirrored.lines.iter().map(|l| l.sku.clone()).collect();
        let catalogue = catalogue::store::get_many(&mut tx, &skus).await?;
        let lines: Vec<Line> = mirrored
            .lines
            .iter()
            .zip(1..)
            .map(|(line, line_number)| Line {
                line_number,
                sku: line.sku.clone(),
                // The name as the catalogue mirror has it now (the ERP keeps no names).
                product_name: catalogue
                    .get(&line.sku)
                    .map(|p| p.data.name.clone())
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| line.sku.clone()),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
            })
            .collect();
        let order = match current {
            None => {
                store::insert_submitted_order(
                    &mut tx,
                    mirrored.id,
                    mirrored.customer_id,
                    &mirrored.currency,
                    &lines,
                )
                .await?
            }
            Some(_draft) => {
                orders::store::replace_lines(
                    &mut tx,
                    mirrored.id,
                    Some(&mirrored.currency),
                    &lines,
                )
                .await?;
                orders::store::transition(&mut tx, mirrored.id, OrderStatus::Submitted, None)
                    .await?
            }
        };
        orders::publish(&mut tx, &order).await?;
        tx.commit().await?;
        tracing::info!(
            version = order.version,
            "order re-created from the ERP's copy"
        );
        Ok((Outcome::Recovered, order.version))
    }
}

/// A unique violation while writing a recovered customer: its external_ref belongs to
/// another customer of the restored CRM.
fn taken(id: Uuid, error: sqlx::Error) -> Error {
    if tandem_common::db::is_unique_violation(&error) {
        Error::precondition(format!(
            "customer {id}: its external_ref belongs to another customer of the CRM"
        ))
    } else {
        Error::Database(error)
    }
}
