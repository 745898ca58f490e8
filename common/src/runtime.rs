//! The Tokio runtime every binary runs on, with a bounded exit.

use std::{future::Future, time::Duration};

/// After the main future returns, blocking work still running (e.g. a Kafka client closing
/// while the broker is unreachable) gets this long before the process exits anyway.
pub const EXIT_GRACE: Duration = Duration::from_secs(3);

/// Runs `main` on a multi-threaded runtime and returns its output; the process never hangs
/// on exit waiting for blocking tasks.
pub fn block_on<F: Future>(main: F) -> std::io::Result<F::Output> {
    crate::failpoint::init_from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let output = runtime.block_on(main);
    runtime.shutdown_timeout(EXIT_GRACE);
    Ok(output)
}
