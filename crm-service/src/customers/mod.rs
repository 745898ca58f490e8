//! The customer domain: every change writes the row and its `crm.customer.upserted` outbox
//! event in one transaction, then wakes the relay.

pub mod model;
pub mod store;

use sqlx::{PgConnection, PgPool};
use tandem_common::{
    event::Envelope,
    outbox::{self, OutboxWaker},
};
use tandem_proto::events::{aggregates, topics, types};
use uuid::Uuid;

pub use model::{Customer, Profile, ProfilePatch};

use crate::error::{Error, Result};

const SOURCE: &str = "crm";

/// Customer operations over one database.
#[derive(Clone)]
pub struct Customers {
    pool: PgPool,
    waker: OutboxWaker,
}

impl Customers {
    pub fn new(pool: PgPool, waker: OutboxWaker) -> Self {
        Self { pool, waker }
    }

    #[tracing::instrument(skip_all, fields(customer_id))]
    pub async fn create(&self, profile: Profile) -> Result<Customer> {
        let mut tx = self.pool.begin().await?;
        let customer = insert_with_event(&mut tx, profile).await?;
        tracing::Span::current().record("customer_id", tracing::field::display(customer.id));
        tx.commit().await?;
        self.waker.wake();
        Ok(customer)
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Customer> {
        let mut conn = self.pool.acquire().await?;
        store::get(&mut conn, id)
            .await?
            .ok_or_else(|| not_found(id))
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
        let mut tx = self.pool.begin().await?;
        let current = store::get_for_update(&mut tx, id)
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
        let profile = current.profile.patched(patch);
        let violations = profile.violations();
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        if profile == current.profile {
            return Ok(current);
        }
        let customer = store::update(&mut tx, id, &profile)
            .await
            .map_err(duplicate_external_ref)?;
        publish_upserted(&mut tx, &customer).await?;
        tx.commit().await?;
        self.waker.wake();
        Ok(customer)
    }
}

/// Validates `profile`, then writes the new customer and its event on `conn`, inside the
/// caller's transaction: both commit or neither does.
pub async fn insert_with_event(conn: &mut PgConnection, profile: Profile) -> Result<Customer> {
    let profile = profile.normalised();
    let violations = profile.violations();
    if !violations.is_empty() {
        return Err(Error::Invalid(violations));
    }
    let customer = store::insert(conn, Uuid::now_v7(), &profile)
        .await
        .map_err(duplicate_external_ref)?;
    publish_upserted(conn, &customer).await?;
    Ok(customer)
}

async fn publish_upserted(conn: &mut PgConnection, customer: &Customer) -> Result<()> {
    let event = Envelope::new(
        types::CRM_CUSTOMER_UPSERTED,
        1,
        SOURCE,
        aggregates::CUSTOMER,
        customer.id.to_string(),
        customer.version,
        &customer.upserted_event(),
    )?;
    outbox::enqueue(conn, topics::CRM_CUSTOMERS, &event).await?;
    Ok(())
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound {
        resource: "customer",
        id: id.to_string(),
    }
}

fn duplicate_external_ref(error: sqlx::Error) -> Error {
    if tandem_common::db::is_unique_violation(&error) {
        Error::AlreadyExists("a customer with this external_ref already exists".to_owned())
    } else {
        Error::Database(error)
    }
}
