//! The mirror of the CRM's customer profiles. It changes only through [`Customers::apply`],
//! which is idempotent and version-gated, and never emits an event (no echo back to the CRM).

pub(crate) mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tandem_proto::events::CustomerStatus;
use uuid::Uuid;

use tandem_common::paging::Page;

use crate::{
    PAGE_SIZES,
    error::{Error, Result},
};

/// The most addresses a mirrored profile may carry.
pub const MAX_ADDRESSES: usize = 100;

/// What an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AddressKind {
    Billing,
    Shipping,
}

/// A postal address of a customer, as the CRM holds it (validated there; stored as sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub kind: AddressKind,
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub region: String,
    pub country_code: String,
}

/// The CRM-owned profile fields, as mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: Uuid,
    pub display_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub tax_id: Option<String>,
    pub status: CustomerStatus,
    pub external_ref: Option<String>,
    /// Replaced as a whole by every applied version.
    pub addresses: Vec<Address>,
}

/// A mirrored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub profile: Profile,
    pub profile_version: i64,
    pub profile_update_time: DateTime<Utc>,
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// False for a duplicate or an older version.
    pub changed: bool,
    /// The version stored afterwards.
    pub current_version: i64,
}

#[derive(Clone)]
pub struct Customers {
    pool: PgPool,
}

impl Customers {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Stores `profile` at `version` unless the stored version is already as new. With
    /// `repair` (reconcile), an equal version applies too when the stored profile differs.
    #[tracing::instrument(skip(self, profile), fields(customer_id = %profile.id))]
    pub async fn apply(&self, profile: &Profile, version: i64, repair: bool) -> Result<Applied> {
        if version <= 0 {
            return Err(Error::invalid("source_version", "must be positive"));
        }
        let mut conn = self.pool.acquire().await?;
        store::apply(&mut conn, profile, version, repair)
            .await
            .map_err(Error::from)
    }

    /// Applies several profiles in one transaction, each gated by its own version, in the
    /// order given; one outcome per profile. Rows are locked in the order given: the bridge
    /// sends one partition's customers, and a customer is always in the same partition.
    #[tracing::instrument(skip_all, fields(customers = batch.len()))]
    pub async fn apply_many(&self, batch: &[(Profile, i64, bool)]) -> Result<Vec<Applied>> {
        if let Some(i) = batch.iter().position(|(_, version, _)| *version <= 0) {
            return Err(Error::invalid(
                &format!("customers[{i}].source_version"),
                "must be positive",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (profile, version, repair) in batch {
            outcomes.push(store::apply(&mut tx, profile, *version, *repair).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Customers ordered by id, a page at a time.
    #[tracing::instrument(skip(self))]
    pub async fn list(&self, page_size: i32, page_token: &str) -> Result<(Vec<Customer>, String)> {
        let page = Page::parse(page_size, page_token, "customers", PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::list(&mut conn, page.after, page.fetch_limit()).await?;
        let next = page.finish(&mut rows, |c| c.profile.id)?;
        Ok((rows, next))
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Customer> {
        let mut conn = self.pool.acquire().await?;
        store::get(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound {
                resource: "customer",
                id: id.to_string(),
            })
    }
}
