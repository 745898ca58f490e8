//! PostgreSQL pools.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::settings::DatabaseSettings;

/// Builds a pool without connecting yet: the process starts even while the database is down,
/// and requests fail with UNAVAILABLE until it is back.
pub fn lazy_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_lazy_with(options))
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

/// Runs `migrator` against `pool`, retrying while the database is unreachable for at most
/// `patience` (a database that restarts together with the service must not crash-loop it).
pub async fn migrate(
    pool: &PgPool,
    migrator: &sqlx::migrate::Migrator,
    patience: Duration,
) -> Result<(), sqlx::migrate::MigrateError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = crate::backoff::Backoff::new(crate::backoff::BackoffSettings::default());
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(error))
                if is_unavailable(&error) && tokio::time::Instant::now() < deadline =>
            {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "database unreachable, retrying migrations");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}
