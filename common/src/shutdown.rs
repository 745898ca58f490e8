//! Graceful shutdown: SIGINT or SIGTERM cancels one token that every task watches.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Sleeps for `delay`; returns true when `shutdown` fired first.
pub async fn sleep_or_cancel(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// The least a stop's last phase (the outbox flush, the final offset commit) gets, even when
/// the phases before it used the whole grace.
pub const LAST_PHASE_FLOOR: Duration = Duration::from_secs(1);

/// One budget for every phase of a stop: draining calls, flushing the outbox, committing
/// offsets. Each phase waits at most for what is [`left`](Self::left), so together they never
/// outlast the grace (the last one gets at least [`LAST_PHASE_FLOOR`]). A process therefore
/// exits within `grace + LAST_PHASE_FLOOR` of the signal, plus the runtime's own bounded exit
/// (`runtime::EXIT_GRACE`): what an orchestrator's termination grace period must cover.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// A budget of `grace` from now.
    pub fn after(grace: Duration) -> Self {
        Self(Instant::now() + grace)
    }

    /// What is left of the budget (zero once spent).
    pub fn left(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// What the last phase gets: what is left, but at least [`LAST_PHASE_FLOOR`].
    pub fn left_for_last_phase(&self) -> Duration {
        self.left().max(LAST_PHASE_FLOOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_share_one_budget_and_the_last_gets_a_floor() {
        let deadline = Deadline::after(Duration::from_millis(300));
        assert!(deadline.left() <= Duration::from_millis(300));
        assert!(deadline.left() > Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(deadline.left(), Duration::ZERO);
        assert_eq!(deadline.left_for_last_phase(), LAST_PHASE_FLOOR);
        let roomy = Deadline::after(Duration::from_secs(10));
        assert!(roomy.left_for_last_phase() > Duration::from_secs(9));
    }
}
