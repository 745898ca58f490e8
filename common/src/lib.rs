//! Plumbing that every Tandem process needs, and nothing else: domain rules live in the
//! services. Each module is one concern:
//!
//! - [`settings`]: layered configuration (defaults < optional file < environment).
//! - [`telemetry`]: tracing logs, OpenTelemetry export, W3C trace context helpers.
//! - [`admin_http`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`grpc`]: the gRPC server bootstrap (health, reflection, graceful shutdown) and the
//!   mapping of common failures to `tonic::Status`.
//! - [`guard`]: who may call a gRPC port (bearer tokens, client certificates).
//! - [`host`]: binds the gRPC and admin listeners and runs both until shutdown.
//! - [`db`]: PostgreSQL pool creation.
//! - [`idempotency`]: request ids (AIP-155) stored with the effect, and their pruner.
//! - [`outbox`]: writing outbox rows and relaying them to Kafka.
//! - [`paging`]: AIP-158 page sizes and page tokens for List RPCs.
//! - [`kafka`]: client configuration, topic creation and header helpers.
//! - [`producer`]: the Kafka producer whose sends are awaited ([`producer::AckProducer`]).
//! - [`limits`]: per-call deadline and the cap on calls in flight.
//! - [`runtime`]: the Tokio runtime with a bounded exit.
//! - [`shutdown`]: turning SIGINT/SIGTERM into a cancellation token.
//! - [`backoff`]: capped exponential backoff with jitter.
//! - [`failpoint`]: crash points for the fault-injection tests (feature `failpoints`).

pub mod admin_http;
pub mod auth;
pub mod backoff;
pub mod call_metrics;
#[cfg(feature = "database")]
pub mod db;
pub mod failpoint;
pub mod grpc;
pub mod guard;
pub mod host;
#[cfg(feature = "database")]
pub mod idempotency;
pub mod kafka;
pub mod limits;
pub mod log_json;
pub mod metrics_names;
pub mod otlp;
#[cfg(feature = "database")]
pub mod outbox;
pub mod paging;
pub mod pki;
#[cfg(feature = "database")]
pub mod pool;
pub mod producer;
pub mod runtime;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod validation;

pub use tokio_util::sync::CancellationToken;
