//! Retrying a whole transaction after a deadlock or serialisation failure.
//!
//! Transactions take their locks in one global order (see migrations/0002), so deadlocks
//! should not happen; one narrow case remains (a backordered order committed between reading
//! the candidates and locking their skus needs skus out of order). PostgreSQL detects it and
//! aborts one side; this retries that side from the start.

use std::{future::Future, time::Duration};

use crate::error::Result;

const MAX_TRIES: u32 = 5;

/// Runs `attempt` (one whole transaction) again while it fails with a retryable error.
pub(crate) async fn retrying<T, F, Fut>(what: &'static str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if error.is_retryable() && tries < MAX_TRIES => {
                tracing::info!(%error, tries, what, "transaction conflict, retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(tries))).await;
                tries += 1;
            }
            other => return other,
        }
    }
}
