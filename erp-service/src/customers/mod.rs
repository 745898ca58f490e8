//! The mirror of the CRM's customer profiles. It changes only through [`Customers::apply`],
//! which is idempotent and version-gated, and never emits an event (no echo back to the CRM).

pub mod store;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tandem_proto::events::CustomerStatus;
use uuid::Uuid;

use crate::error::{Error, Result};

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

    /// Stores `profile` at `version` unless the stored version is already as new.
    #[tracing::instrument(skip(self, profile), fields(customer_id = %profile.id))]
    pub async fn apply(&self, profile: &Profile, version: i64) -> Result<Applied> {
        if version <= 0 {
            return Err(Error::invalid("source_version", "must be positive"));
        }
        let mut conn = self.pool.acquire().await?;
        store::apply(&mut conn, profile, version)
            .await
            .map_err(Error::from)
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
