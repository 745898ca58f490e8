//! Logs and traces.
//!
//! Logs go to stderr through `tracing-subscriber`, human-readable by default or one JSON object
//! per line. Spans are always given OpenTelemetry ids, so a W3C `traceparent` can travel from a
//! gRPC call into the outbox row, the Kafka headers, the bridge and the other service; they are
//! exported over OTLP only when an endpoint is configured.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// The W3C trace context header name, in HTTP/2 metadata and Kafka headers alike.
pub const TRACEPARENT: &str = "traceparent";

/// How logs look and where traces go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `text` (human-readable) or `json` (one object per line).
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,sqlx=warn`. `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`. Empty: no export.
    pub otlp_endpoint: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info,sqlx=warn,h2=warn,tower=warn,rdkafka=warn".to_owned(),
            otlp_endpoint: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {error}");
        }
    }
}

/// Installs the global subscriber for `service`. Call once, from `main`.
pub fn init(
    service: &'static str,
    settings: &TelemetrySettings,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => settings.log_filter.clone(),
    };
    let filter = EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter {
        filter: filter.clone(),
        source,
    })?;

    let mut provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build());
    if !settings.otlp_endpoint.is_empty() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: settings.otlp_endpoint.clone(),
                source,
            })?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));

    let fmt = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// The `traceparent` of the current span, if it has a valid trace context.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `traceparent` (when present and valid) the parent of the current span, so the trace
/// started by a frontend or an upstream service goes on here.
pub fn continue_trace(traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = tracing::Span::current().set_parent(parent);
    }
}

/// Continues the trace named by a gRPC request's `traceparent` metadata.
pub fn continue_grpc_trace(metadata: &tonic::metadata::MetadataMap) {
    continue_trace(metadata.get(TRACEPARENT).and_then(|v| v.to_str().ok()));
}

/// Puts the current span's `traceparent` on an outgoing gRPC request.
pub fn inject_grpc_trace<T>(request: &mut tonic::Request<T>) {
    if let Some(traceparent) = current_traceparent()
        && let Ok(value) = traceparent.parse()
    {
        request.metadata_mut().insert(TRACEPARENT, value);
    }
}
