//! The customer domain: every change writes the rows and its `crm.customer.*` outbox event in
//! one transaction, then wakes the relay.

pub mod model;
pub(crate) mod store;

use std::time::Instant;

use sqlx::PgConnection;
use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    outbox::{EventRow, OutboxTx, OutboxWaker},
    paging::Page,
};
use tandem_proto::events::CustomerStatus;
use uuid::Uuid;

pub use model::{
    Address, Contact, Customer, CustomerFilter, IntegrationUpsert, Profile, ProfilePatch,
};

use crate::{
    PAGE_SIZES, REPUBLISH_BATCH, SOURCE,
    error::{Error, Result, check},
};

/// How often an upsert retries after losing the race to create its customer.
const UPSERT_ATTEMPTS: usize = 3;

/// Customer operations over one database.
#[derive(Clone)]
pub struct Customers {
    pool: Db,
    outbox: OutboxWaker,
}

impl Customers {
    pub fn new(pool: Db, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    /// Creates a customer; with `once`, at most once per request id (a retry replays).
    #[tracing::instrument(skip_all, fields(customer_id))]
    pub async fn create(
        &self,
        profile: Profile,
        once: Option<&Once<Customer>>,
    ) -> Result<Answer<Customer>> {
        let Some(once) = once else {
            // Nothing to replay or remember: the customer, its lists and its event are one
            // statement, which commits by itself (one round trip, no BEGIN and no COMMIT).
            let (id, profile) = (Uuid::now_v7(), checked(profile)?);
            tracing::Span::current().record("customer_id", tracing::field::display(id));
            let event = EventRow::new(SOURCE, 1, &profile.upserted_event(id))?;
            let mut conn = self.pool.acquire().await?;
            let customer = store::insert(&mut conn, id, &profile, Some(event))
                .await
                .map_err(duplicate_external_ref)?;
            self.outbox.written();
            return Ok(Answer::Fresh(customer));
        };
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, Some(once)).await? {
            return Ok(Answer::Replayed(replay));
        }
        let customer = insert_with_event(&mut tx, profile).await?;
        tracing::Span::current().record("customer_id", tracing::field::display(customer.id));
        idempotency::remember(&mut tx, Some(once), &customer).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(customer))
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Customer> {
        let mut conn = self.pool.acquire().await?;
        store::get(&mut conn, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// One page of customers matching `filter`, and the next page's token.
    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        filter: &CustomerFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Customer>, String)> {
        let page: Page<Uuid> =
            Page::parse(page_size, page_token, &filter.fingerprint(), PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut customers = store::list(&mut conn, filter, &page).await?;
        let next = page.finish(&mut customers, |c| c.id)?;
        Ok((customers, next))
    }

    /// Applies `patch`. With `expected_version`, fails with `Aborted` unless it is current.
    /// A patch that changes nothing writes nothing and publishes nothing.
    #[tracing::instrument(skip(self, patch))]
    pub async fn update(
        &self,
        id: Uuid,
        patch: ProfilePatch,
        expected_version: Option<i64>,
    ) -> Result<Customer> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = locked(&mut tx, id, expected_version).await?;
        let profile = current.profile.patched(patch);
        check(profile.violations())?;
        if profile == current.profile {
            return Ok(current);
        }
        let customer = rewrite(&mut tx, &current, &profile).await?;
        tx.commit().await?;
        Ok(customer)
    }

    /// Upserts the customer whose external_ref matches, from an integrator's event: creates it
    /// when none has that ref, else replaces its profile. Gated on `source_version` per
    /// customer: an equal or older one changes nothing (`false`). A change publishes
    /// `crm.customer.upserted` (the CRM owns profiles, so the ERP must hear of it); a newer
    /// version with the same profile only records the version.
    #[tracing::instrument(
        skip_all,
        fields(source = ?upsert.source, source_version = upsert.source_version, customer_id)
    )]
    pub async fn upsert_by_external_ref(
        &self,
        upsert: IntegrationUpsert,
    ) -> Result<(Customer, bool)> {
        let upsert = upsert.normalised();
        check(upsert.violations())?;
        let mut attempt = 1;
        loop {
            match self.try_upsert(&upsert).await {
                // Another call created the customer between our read and our insert: read
                // it again, now it exists.
                Err(Error::AlreadyExists(_)) if attempt < UPSERT_ATTEMPTS => attempt += 1,
                Ok((customer, applied)) => {
                    tracing::Span::current()
                        .record("customer_id", tracing::field::display(customer.id));
                    return Ok((customer, applied));
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn try_upsert(&self, upsert: &IntegrationUpsert) -> Result<(Customer, bool)> {
        let external_ref = upsert.profile.external_ref.as_deref().unwrap_or_default();
        let source = upsert.source.as_deref();
        let mut tx = self.outbox.begin(&self.pool).await?;
        let Some((id, stored_version)) = store::lock_by_external_ref(&mut tx, external_ref).await?
        else {
            let profile = Profile {
                status: upsert.status.unwrap_or(CustomerStatus::Active),
                ..upsert.profile.clone()
            };
            let customer = insert_with_event(&mut tx, profile).await?;
            store::set_integration_version(&mut tx, customer.id, source, upsert.source_version)
                .await?;
            tx.commit().await?;
            return Ok((customer, true));
        };
        let current = store::get(&mut tx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if upsert.source_version <= stored_version {
            return Ok((current, false));
        }
        store::set_integration_version(&mut tx, id, source, upsert.source_version).await?;
        let profile = Profile {
            status: upsert.status.unwrap_or(current.profile.status),
            ..upsert.profile.clone()
        };
        if profile == current.profile {
            tx.commit().await?;
            return Ok((current, true));
        }
        let customer = rewrite(&mut tx, &current, &profile).await?;
        tx.commit().await?;
        Ok((customer, true))
    }

    /// Publishes the current state of the customers after `after` again
    /// (`crm.customer.archived` for archived ones, else `crm.customer.upserted`) at their
    /// current versions, in batches of at most [`REPUBLISH_BATCH`] per transaction, until all
    /// are done or `until` has passed. Returns how many, and the last one when more remain.
    #[tracing::instrument(skip(self))]
    pub async fn republish(
        &self,
        mut after: Option<Uuid>,
        until: Instant,
    ) -> Result<(i64, Option<Uuid>)> {
        let mut count = 0;
        loop {
            let mut tx = self.outbox.begin(&self.pool).await?;
            let batch = store::batch_for_share(&mut tx, after, REPUBLISH_BATCH).await?;
            tx.publish_all(
                SOURCE,
                batch.iter().map(|c| (c.version, c.upserted_event())),
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

    /// Sets the status to ARCHIVED and publishes `crm.customer.archived`. Archiving an
    /// archived customer changes nothing and publishes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn archive(&self, id: Uuid, expected_version: Option<i64>) -> Result<Customer> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = locked(&mut tx, id, expected_version).await?;
        if current.profile.status == CustomerStatus::Archived {
            return Ok(current);
        }
        let profile = Profile {
            status: CustomerStatus::Archived,
            ..current.profile.clone()
        };
        let customer = rewrite(&mut tx, &current, &profile).await?;
        tx.commit().await?;
        Ok(customer)
    }
}

/// Reads and locks the customer; with `expected_version`, fails with `Aborted` unless it is
/// the stored version.
async fn locked(
    conn: &mut PgConnection,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<Customer> {
    let current = store::get_for_update(conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(expected) = expected_version
        && expected != current.version
    {
        return Err(Error::Aborted(format!(
            "customer {id} is at version {}, not {expected}; read it again and retry",
            current.version
        )));
    }
    Ok(current)
}

/// Validates `profile`, then writes the new customer and its event on `conn`, inside the
/// caller's transaction: both commit or neither does.
pub async fn insert_with_event(tx: &mut OutboxTx, profile: Profile) -> Result<Customer> {
    let (id, profile) = (Uuid::now_v7(), checked(profile)?);
    let event = tx.event_row(SOURCE, 1, &profile.upserted_event(id))?;
    store::insert(tx, id, &profile, Some(event))
        .await
        .map_err(duplicate_external_ref)
}

/// Writes `profile` over `current`, whose row this transaction has locked, at the next
/// version, with its `crm.customer.upserted` (or `.archived`) event: one statement.
async fn rewrite(tx: &mut OutboxTx, current: &Customer, profile: &Profile) -> Result<Customer> {
    let version = current.version + 1;
    let event = tx.event_row(SOURCE, version, &profile.upserted_event(current.id))?;
    let mut customer = store::update(tx, current.id, profile, version, Some(event))
        .await
        .map_err(duplicate_external_ref)?;
    customer.finance = current.finance.clone();
    Ok(customer)
}

/// `profile` normalised, if valid.
fn checked(profile: Profile) -> Result<Profile> {
    let profile = profile.normalised();
    check(profile.violations())?;
    Ok(profile)
}

/// Writes the outbox row of a customer event: `crm.customer.archived` once archived, else
/// `crm.customer.upserted` (both carry the full profile).
pub(crate) async fn publish(tx: &mut OutboxTx, customer: &Customer) -> Result<()> {
    Ok(tx
        .publish(SOURCE, customer.version, &customer.upserted_event())
        .await?)
}

fn not_found(id: Uuid) -> Error {
    Error::not_found("customer", id)
}

fn duplicate_external_ref(error: sqlx::Error) -> Error {
    let is_external_ref = matches!(&error, sqlx::Error::Database(db)
        if db.constraint() == Some("customers_external_ref_key"));
    if tandem_common::db::is_unique_violation(&error) && is_external_ref {
        Error::AlreadyExists("a customer with this external_ref already exists".to_owned())
    } else {
        Error::Database(error)
    }
}
