//! The admin HTTP server: Prometheus `/metrics`, liveness `/healthz`, readiness `/readyz`, and
//! the same readiness as plaintext gRPC health (`grpc.health.v1.Health`, HTTP/2 without TLS on
//! the same port), which is what Kubernetes' gRPC probes speak.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
#[cfg(feature = "database")]
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the recorder's upkeep runs: it drains histogram samples into their buckets, so
/// memory stays flat however long nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (once), describes every metric (units and
/// HELP text, [`crate::metrics_names::ALL`]), starts its upkeep, and returns its handle.
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
            if metrics::set_global_recorder(recorder).is_ok() {
                crate::metrics_names::describe_all();
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start the metrics upkeep; histograms grow until scraped");
            }
            handle
        })
        .clone()
}

/// Something a process needs to do its work, whose reachability a background task keeps
/// reporting (the bridge's targets and broker). Starts unreachable until the first report.
#[derive(Clone, Debug)]
pub struct Dependency {
    up: Arc<AtomicBool>,
    /// What readiness says while it is unreachable, e.g. `"crm unreachable"`.
    unmet: &'static str,
}

impl Dependency {
    pub fn new(unmet: &'static str) -> Self {
        Self {
            up: Arc::default(),
            unmet,
        }
    }

    /// Reports whether it is reachable now; returns whether that changed.
    pub fn report(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::SeqCst) != up
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub fn unmet(&self) -> &'static str {
        self.unmet
    }
}

/// What `/readyz` checks: a flag the application raises once it can serve, optionally that
/// its database answers, and that every [`Dependency`] it requires was last seen reachable.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    #[cfg(feature = "database")]
    database: Option<PgPool>,
    dependencies: Vec<Dependency>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also requires `database` to answer (a `SELECT 1` within a second, at every check).
    #[cfg(feature = "database")]
    pub fn with_database(mut self, database: PgPool) -> Self {
        self.database = Some(database);
        self
    }

    /// Also requires `dependency` to be reachable.
    pub fn requiring(mut self, dependency: Dependency) -> Self {
        self.dependencies.push(dependency);
        self
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// `"database unreachable"` unless the database answers `SELECT 1` within a second.
    #[cfg(feature = "database")]
    async fn database_unmet(&self) -> Option<&'static str> {
        let pool = self.database.as_ref()?;
        let ping = sqlx::query("SELECT 1").execute(pool);
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(1), ping).await,
            Ok(Ok(_))
        );
        metrics::gauge!(crate::metrics_names::DATABASE_UP).set(if up { 1.0 } else { 0.0 });
        (!up).then_some("database unreachable")
    }

    #[cfg(not(feature = "database"))]
    async fn database_unmet(&self) -> Option<&'static str> {
        None
    }

    /// Ready, or every reason why not, joined by `"; "` (the same answer `/readyz` and the gRPC
    /// health service give): an operator sees all that is down at once, not only the first.
    pub async fn check(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err("not ready".to_owned());
        }
        let unmet: Vec<&'static str> = self
            .dependencies
            .iter()
            .filter(|d| !d.is_up())
            .map(Dependency::unmet)
            .chain(self.database_unmet().await)
            .collect();
        if unmet.is_empty() {
            Ok(())
        } else {
            Err(unmet.join("; "))
        }
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
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(crate::grpc::follow_readiness(
        health,
        Vec::new(),
        readiness.clone(),
        shutdown.clone(),
    ));
    let state = AdminState {
        prometheus: prometheus(),
        readiness,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(tonic::service::Routes::new(health_service).into_axum_router());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(state): State<AdminState>) -> String {
    state.prometheus.render()
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reasons) => (StatusCode::SERVICE_UNAVAILABLE, reasons),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_every_unmet_dependency_not_only_the_first() {
        let erp = Dependency::new("erp unreachable");
        let broker = Dependency::new("broker unreachable");
        let readiness = Readiness::new()
            .requiring(erp.clone())
            .requiring(broker.clone());
        assert_eq!(readiness.check().await, Err("not ready".to_owned()));
        readiness.set_ready(true);
        assert_eq!(
            readiness.check().await,
            Err("erp unreachable; broker unreachable".to_owned())
        );
        erp.report(true);
        assert_eq!(
            readiness.check().await,
            Err("broker unreachable".to_owned())
        );
        broker.report(true);
        assert_eq!(readiness.check().await, Ok(()));
    }
}
