//! The admin HTTP server: Prometheus `/metrics`, liveness `/healthz`, readiness `/readyz`.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&crate::metrics_names::LATENCY_BUCKETS_SECONDS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Only fails when another recorder is installed; then ours simply stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What `/readyz` checks: a flag the application raises once it can serve, and optionally
/// that its database answers.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    database: Option<PgPool>,
}

impl Readiness {
    pub fn new(database: Option<PgPool>) -> Self {
        Self {
            ready: Arc::default(),
            database,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Ready, or why not (the same answer `/readyz` and the gRPC health service give).
    pub async fn check(&self) -> Result<(), &'static str> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err("not ready");
        }
        if let Some(pool) = &self.database {
            let ping = sqlx::query("SELECT 1").execute(pool);
            let up = matches!(
                tokio::time::timeout(Duration::from_secs(1), ping).await,
                Ok(Ok(_))
            );
            metrics::gauge!(crate::metrics_names::DATABASE_UP).set(if up { 1.0 } else { 0.0 });
            if !up {
                return Err("database unreachable");
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AdminState {
    prometheus: PrometheusHandle,
    readiness: Readiness,
}

/// Serves the admin endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AdminState {
        prometheus: prometheus(),
        readiness,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(state): State<AdminState>) -> String {
    state.prometheus.render()
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
