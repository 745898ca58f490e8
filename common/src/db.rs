//! PostgreSQL pools, migrations and the runtime role's privileges.
//!
//! # Roles
//!
//! A service can run with one role that owns everything (`database.url` only: convenient for
//! development), or — in production — with two:
//!
//! - the **owner** (`database.migration_url`): owns the database, hence (PostgreSQL 15+) its
//!   schema `public` and every table the migrations create. The service uses it only at
//!   start-up, to migrate and to grant the runtime role its privileges, then closes it.
//! - the **runtime** role (`database.url`): `LOGIN`, no `CREATE` on the database nor on the
//!   schema, owns nothing. [`prepare`] grants it `USAGE` on schema `public`, `SELECT`,
//!   `INSERT`, `UPDATE`, `DELETE` on its tables and `USAGE`, `SELECT` on its sequences
//!   (after every migration run, so new tables are covered), and nothing on
//!   `_sqlx_migrations`. It cannot create, alter or drop tables.
//!
//! What an operator creates once, as a superuser (names are examples):
//!
//! ```sql
//! CREATE ROLE crm_owner LOGIN PASSWORD '…';          -- NOSUPERUSER NOCREATEDB NOCREATEROLE
//! CREATE ROLE crm_app LOGIN PASSWORD '…';            -- likewise; owns nothing
//! CREATE DATABASE crm OWNER crm_owner;
//! REVOKE ALL ON DATABASE crm FROM PUBLIC;            -- no CREATE (schemas) nor TEMP for all
//! GRANT CONNECT ON DATABASE crm TO crm_app;
//! -- PostgreSQL 15+ already: schema public belongs to pg_database_owner (crm_owner) and
//! -- PUBLIC has no CREATE on it. Before 15, in database crm:
//! --   ALTER SCHEMA public OWNER TO crm_owner; REVOKE CREATE ON SCHEMA public FROM PUBLIC;
//! ```
//!
//! then sets `CRM__DATABASE__MIGRATION_URL=postgres://crm_owner:…@db/crm?sslmode=verify-full
//! &sslrootcert=…` and `CRM__DATABASE__URL=postgres://crm_app:…@db/crm?sslmode=verify-full
//! &sslrootcert=…`. A database whose tables another role created earlier (the single-role
//! setup) needs `REASSIGN OWNED BY <old> TO crm_owner` first, or the grants fail.

use std::time::Duration;

use sqlx::{
    Connection, PgPool,
    migrate::{MigrateError, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::time::Instant;

use crate::settings::DatabaseSettings;

/// Why [`prepare`] could not give the service its database.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// A URL that does not parse (the URL itself is not printed: it may hold a password).
    #[error("invalid database.{key}: {source}")]
    Url {
        key: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrations failed (over database.{key}): {source}")]
    Migrate {
        key: &'static str,
        #[source]
        source: MigrateError,
    },
    #[error("cannot learn the runtime role (current_user over database.url): {0}")]
    RuntimeRole(#[source] sqlx::Error),
    #[error(
        "cannot grant the runtime role {role:?} its privileges over database.migration_url \
         (does that role own the tables?): {source}"
    )]
    Grant {
        role: String,
        #[source]
        source: sqlx::Error,
    },
}

/// The runtime pool's connect options: `settings.url` plus `statement_timeout`.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbSetupError> {
    let options: PgConnectOptions = settings
        .url
        .parse()
        .map_err(|source| DbSetupError::Url { key: "url", source })?;
    // Appended after any `options` of the URL, so it wins over them.
    Ok(if settings.statement_timeout_ms > 0 {
        options.options([("statement_timeout", settings.statement_timeout_ms)])
    } else {
        options
    })
}

/// Builds the runtime pool without connecting yet: the process starts even while the
/// database is down, and requests fail with UNAVAILABLE until it is back. Every connection
/// has the configured `statement_timeout`.
pub fn lazy_pool(settings: &DatabaseSettings) -> Result<PgPool, DbSetupError> {
    Ok(pool_options(settings, settings.max_connections)
        .connect_lazy_with(connect_options(settings)?))
}

fn pool_options(settings: &DatabaseSettings, max_connections: u32) -> PgPoolOptions {
    let check_after = Duration::from_millis(settings.check_idle_after_ms);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // sqlx's own check pings every connection at every acquire: a round trip per request.
        // Only a connection idle for a while is checked; a dead one among busy connections
        // fails its request like any lost connection (UNAVAILABLE) and is not reused.
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= check_after {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Gets the service's database ready and returns its runtime pool (lazy, with the
/// `statement_timeout`):
///
/// 1. runs `migrator` over `migration_url` (the owner), or over `url` when that is empty —
///    on a short-lived pool of its own without the statement timeout (a migration may take
///    long), retrying while the database is unreachable for at most `patience`;
/// 2. when `migration_url` is set and names another role than `url`: grants the runtime role
///    (`current_user` over `url`) what it needs on the tables and sequences of schema
///    `public` (idempotent; see the [module documentation](self)) and warns when the runtime
///    role could change the schema anyway (superuser, owner, `CREATE` privileges).
pub async fn prepare(
    settings: &DatabaseSettings,
    migrator: &Migrator,
    patience: Duration,
) -> Result<PgPool, DbSetupError> {
    let deadline = Instant::now() + patience;
    let runtime = lazy_pool(settings)?;
    let (key, url) = if settings.migration_url.is_empty() {
        ("url", &settings.url)
    } else {
        ("migration_url", &settings.migration_url)
    };
    let options: PgConnectOptions = url
        .parse()
        .map_err(|source| DbSetupError::Url { key, source })?;
    let owner = pool_options(settings, 2).connect_lazy_with(options);
    let outcome = async {
        migrate_until(&owner, migrator, deadline)
            .await
            .map_err(|source| DbSetupError::Migrate { key, source })?;
        if settings.migration_url.is_empty() {
            tracing::info!("migrations ran over database.url (no database.migration_url)");
            return Ok(());
        }
        let role: String = retry_until(deadline, "learning the runtime role", || {
            sqlx::query_scalar("SELECT current_user::text").fetch_one(&runtime)
        })
        .await
        .map_err(DbSetupError::RuntimeRole)?;
        retry_until(deadline, "granting the runtime role", || {
            grant_runtime_privileges(&owner, &role)
        })
        .await
        .map_err(|source| DbSetupError::Grant {
            role: role.clone(),
            source,
        })?;
        Ok(())
    }
    .await;
    owner.close().await;
    outcome.map(|()| runtime)
}

/// Runs `migrator` against `pool`, retrying while the database is unreachable for at most
/// `patience` (a database that restarts together with the service must not crash-loop it).
pub async fn migrate(
    pool: &PgPool,
    migrator: &Migrator,
    patience: Duration,
) -> Result<(), MigrateError> {
    migrate_until(pool, migrator, Instant::now() + patience).await
}

async fn migrate_until(
    pool: &PgPool,
    migrator: &Migrator,
    deadline: Instant,
) -> Result<(), MigrateError> {
    let mut backoff = crate::backoff::Backoff::new(crate::backoff::BackoffSettings::default());
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(MigrateError::Execute(error))
                if is_unavailable(&error) && Instant::now() < deadline =>
            {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "database unreachable, retrying migrations");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Runs `attempt` until it succeeds, fails otherwise than by the database being unreachable,
/// or `deadline` passes.
async fn retry_until<T, F, Fut>(
    deadline: Instant,
    what: &str,
    mut attempt: F,
) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut backoff = crate::backoff::Backoff::new(crate::backoff::BackoffSettings::default());
    loop {
        match attempt().await {
            Err(error) if is_unavailable(&error) && Instant::now() < deadline => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "database unreachable, retrying {what}");
                tokio::time::sleep(delay).await;
            }
            outcome => return outcome,
        }
    }
}

/// Serialises concurrent grants (two replicas starting together): concurrent `GRANT`s on one
/// object can fail with "tuple concurrently updated".
const GRANT_LOCK: i64 = 0x7461_6e64_656d_6701; // "tandemg\x01"

/// Grants `role` (the runtime role) what the service needs on schema `public`, as the owner.
async fn grant_runtime_privileges(owner: &PgPool, role: &str) -> Result<(), sqlx::Error> {
    let mut conn = owner.acquire().await?;
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await?;
    if me == role {
        tracing::warn!(
            role,
            "database.url and database.migration_url name the same role: the service runs as \
             the owner and can change the schema"
        );
        return Ok(());
    }
    let grantee = quote_ident(role);
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(GRANT_LOCK)
        .execute(&mut *tx)
        .await?;
    for statement in [
        format!("GRANT USAGE ON SCHEMA public TO {grantee}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {grantee}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {grantee}"),
    ] {
        sqlx::raw_sql(&statement).execute(&mut *tx).await?;
    }
    // The migrations' own bookkeeping is the owner's alone.
    let bookkeeping: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
            .fetch_one(&mut *tx)
            .await?;
    if bookkeeping.is_some() {
        sqlx::raw_sql(&format!(
            "REVOKE ALL ON TABLE public._sqlx_migrations FROM {grantee}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let (superuser, owner_member, create_db, create_schema): (bool, bool, bool, bool) =
        sqlx::query_as(
            "SELECT r.rolsuper, \
                    pg_has_role(r.oid, d.datdba, 'MEMBER'), \
                    has_database_privilege(r.oid, d.oid, 'CREATE'), \
                    has_schema_privilege(r.oid, 'public', 'CREATE') \
             FROM pg_roles r, pg_database d \
             WHERE r.rolname = $1 AND d.datname = current_database()",
        )
        .bind(role)
        .fetch_one(&mut *conn)
        .await?;
    if superuser || owner_member || create_db || create_schema {
        tracing::warn!(
            role,
            superuser,
            owner_member,
            create_db,
            create_schema,
            "the runtime role (database.url) can change the schema: see tandem_common::db for \
             the roles to create"
        );
    } else {
        tracing::info!(role, "granted the runtime role its privileges");
    }
    Ok(())
}

/// `name` as a PostgreSQL identifier in double quotes (inner quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Is this error the database being unreachable (as opposed to a bad query)?
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
    ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| {
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08*: connection.
        code.starts_with("57P") || code.starts_with("08")
    }))
}

/// Is this error a unique-constraint violation (SQLSTATE 23505)?
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// How often [`export_pool_metrics`] samples the pool.
const POOL_METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// Exports the pool's connections (idle, warm included, and in use), its maximum and the time
/// an acquire takes (sampled) every few seconds, and hands warm connections idle for a while
/// back to sqlx's pool ([`crate::pool::Db::sweep`]), until
/// `stop` ([`crate::metrics_names::DB_POOL_CONNECTIONS`]).
pub async fn export_pool_metrics(db: crate::pool::Db, stop: tokio_util::sync::CancellationToken) {
    use crate::metrics_names as m;
    let pool = db.pool().clone();
    let max = f64::from(pool.options().get_max_connections());
    loop {
        // Set every time: the recorder may be installed after this task starts.
        metrics::gauge!(m::DB_POOL_MAX_CONNECTIONS).set(max);
        // Warm connections wait for a request like idle ones, though sqlx counts them as in
        // use; those idle for a while go back to sqlx's pool here.
        db.sweep();
        let (size, idle) = (pool.size(), pool.num_idle().saturating_add(db.warm()));
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
        metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(size - idle));
        // The wait a call would have now: one acquire, timed (bounded by the pool's own
        // acquire timeout), the connection handed straight back.
        let started = std::time::Instant::now();
        if let Ok(connection) = pool.acquire().await {
            drop(connection);
            metrics::gauge!(m::DB_POOL_ACQUIRE_SECONDS).set(started.elapsed().as_secs_f64());
        }
        if crate::shutdown::sleep_or_cancel(POOL_METRICS_INTERVAL, &stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("crm_app"), "\"crm_app\"");
        assert_eq!(quote_ident("Weird\"; DROP"), "\"Weird\"\"; DROP\"");
    }

    #[test]
    fn the_statement_timeout_rides_on_the_connect_options() {
        let settings = DatabaseSettings {
            url: "postgres://app:pw@localhost/crm?sslmode=verify-full&sslrootcert=/ca.pem\
                  &options=-c%20search_path%3Dpublic"
                .into(),
            statement_timeout_ms: 1_500,
            ..DatabaseSettings::default()
        };
        let options = connect_options(&settings).unwrap();
        assert_eq!(
            options.get_options(),
            Some("-c search_path=public -c statement_timeout=1500")
        );
        assert!(matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::VerifyFull
        ));
        let off = DatabaseSettings {
            url: "postgres://app@localhost/crm".into(),
            statement_timeout_ms: 0,
            ..DatabaseSettings::default()
        };
        assert_eq!(connect_options(&off).unwrap().get_options(), None);
    }

    #[test]
    fn a_bad_url_names_its_key_but_not_its_text() {
        let settings = DatabaseSettings {
            url: "postgres://user:secret@h:notaport/db".into(),
            ..DatabaseSettings::default()
        };
        let error = connect_options(&settings).unwrap_err().to_string();
        assert!(error.contains("database.url"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}
