//! The mirror of the CRM's customer profiles. It changes only through [`Customers::apply`],
//! which is idempotent and version-gated, and never emits an event (no echo back to the CRM).

pub(crate) mod store;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tandem_common::pool::Db;
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
    pool: Db,
}

impl Customers {
    pub fn new(pool: Db) -> Self {
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
        let applied = store::apply_set(&mut conn, &[(profile, version)], repair).await?;
        outcome(&applied, profile.id)
    }

    /// Applies several profiles in one transaction, each gated by its own version, in the
    /// order given; one outcome per profile. It takes one set-based upsert per [`rounds`]
    /// (one for a batch of distinct customers without repairs), each locking its rows in id
    /// order.
    #[tracing::instrument(skip_all, fields(customers = batch.len()))]
    pub async fn apply_many(&self, batch: &[(Profile, i64, bool)]) -> Result<Vec<Applied>> {
        if let Some(i) = batch.iter().position(|(_, version, _)| *version <= 0) {
            return Err(Error::invalid(
                &format!("customers[{i}].source_version"),
                "must be positive",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let mut outcomes = vec![None; batch.len()];
        for round in rounds(batch) {
            let set: Vec<(&Profile, i64)> = round
                .members
                .iter()
                .map(|&i| (&batch[i].0, batch[i].1))
                .collect();
            let applied = store::apply_set(&mut tx, &set, round.repair).await?;
            for &i in &round.members {
                outcomes[i] = Some(outcome(&applied, batch[i].0.id)?);
            }
        }
        tx.commit().await?;
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, applied)| {
                applied.ok_or_else(|| Error::Internal(format!("customers[{i}] was in no round")))
            })
            .collect()
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

/// The outcome of customer `id` in the answer of [`store::apply_set`].
fn outcome(applied: &HashMap<Uuid, Applied>, id: Uuid) -> Result<Applied> {
    applied
        .get(&id)
        .copied()
        .ok_or_else(|| Error::Internal(format!("customer {id} neither written nor stored")))
}

/// Profiles of a batch that one set-based upsert can apply together.
#[derive(Debug, PartialEq, Eq)]
struct Round {
    repair: bool,
    /// Indexes into the batch, in batch order.
    members: Vec<usize>,
}

/// Splits a batch into rounds of distinct customers sharing one `repair` flag (a statement
/// writes a row once and takes one gate). A customer's k-th appearance is in a later round
/// than its (k-1)-th, so each customer's versions apply in the order given; different
/// customers are different rows, so their order does not matter.
fn rounds(batch: &[(Profile, i64, bool)]) -> Vec<Round> {
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(batch.len());
    let mut rounds: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
    for (i, (profile, _, repair)) in batch.iter().enumerate() {
        let appearance = seen.entry(profile.id).or_default();
        rounds.entry((*appearance, *repair)).or_default().push(i);
        *appearance += 1;
    }
    rounds
        .into_iter()
        .map(|((_, repair), members)| Round { repair, members })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u128, repair: bool) -> (Profile, i64, bool) {
        let profile = Profile {
            id: Uuid::from_u128(id),
            display_name: "Ada".into(),
            email: "ada@example.com".into(),
            phone: None,
            tax_id: None,
            status: CustomerStatus::Active,
            external_ref: None,
            addresses: Vec::new(),
        };
        (profile, 1, repair)
    }

    fn round(repair: bool, members: &[usize]) -> Round {
        Round {
            repair,
            members: members.to_vec(),
        }
    }

    #[test]
    fn distinct_customers_without_repairs_are_one_round() {
        let batch: Vec<_> = (1..=4).map(|id| entry(id, false)).collect();
        assert_eq!(rounds(&batch), [round(false, &[0, 1, 2, 3])]);
        assert!(rounds(&[]).is_empty());
    }

    #[test]
    fn a_customer_seen_again_waits_for_a_later_round() {
        // 1, 2, 1, 3, 1, 2: the second 1 and 2 in round two, the third 1 in round three.
        let ids = [1, 2, 1, 3, 1, 2];
        let batch: Vec<_> = ids.iter().map(|&id| entry(id, false)).collect();
        assert_eq!(
            rounds(&batch),
            [
                round(false, &[0, 1, 3]),
                round(false, &[2, 5]),
                round(false, &[4])
            ]
        );
    }

    #[test]
    fn repairs_take_rounds_of_their_own_after_their_appearance() {
        // 1 plain, 2 repair, 1 repair, 3 plain, 2 plain.
        let batch = [
            entry(1, false),
            entry(2, true),
            entry(1, true),
            entry(3, false),
            entry(2, false),
        ];
        assert_eq!(
            rounds(&batch),
            [
                round(false, &[0, 3]),
                round(true, &[1]),
                round(false, &[4]),
                round(true, &[2]),
            ]
        );
    }
}
