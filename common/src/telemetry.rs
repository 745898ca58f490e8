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
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    call_metrics::{CallRecord, KnownServices, MeteredBody},
    otlp::{self, OtlpHeaders},
    tls::ClientTlsSettings,
};

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
    /// TLS to the collector (`telemetry.otlp_tls.enabled`, `ca_file`, and `cert_file` /
    /// `key_file` for a collector that asks for a client certificate; reloaded when changed).
    pub otlp_tls: ClientTlsSettings,
    /// Headers on every export, `name=value,name=value` (a vendor's token, say). Never
    /// printed.
    pub otlp_headers: OtlpHeaders,
    /// Share of the traces that start in this process to sample, 0 to 1 (default 1). A trace
    /// that arrives with a decision (a frontend's or producer's `traceparent`) keeps it.
    pub sampler_ratio: f64,
    /// `deployment.environment.name` of the exported spans, e.g. `production`. Empty: none.
    pub environment: String,
    /// More resource attributes, `name=value,name=value`.
    pub resource_attributes: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info,sqlx=warn,h2=warn,tower=warn,rdkafka=warn".to_owned(),
            otlp_endpoint: String::new(),
            otlp_tls: ClientTlsSettings::default(),
            otlp_headers: OtlpHeaders::default(),
            sampler_ratio: 1.0,
            environment: String::new(),
            resource_attributes: String::new(),
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
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpError),
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
    let parse = |directives: &str| {
        EnvFilter::try_new(directives).map_err(|source| TelemetryError::Filter {
            filter: directives.to_owned(),
            source,
        })
    };
    // The same directives select the spans that become OpenTelemetry spans: without them the
    // layer would build a span (and span events) for every TRACE and DEBUG callsite of sqlx,
    // h2 and hyper, which costs a request more than its own work.
    //
    // One filter for the whole subscriber, not one per layer: two EnvFilters as per-layer
    // filters interfere (a target directive such as `tandem_common=debug` made events vanish
    // and spans go missing from the log lines), and both layers want the same selection.
    let filter = parse(&filter)?;

    let mut provider = SdkTracerProvider::builder()
        .with_resource(otlp::resource(
            service,
            &settings.environment,
            &settings.resource_attributes,
        )?)
        .with_sampler(otlp::sampler(settings.sampler_ratio)?);
    if !settings.otlp_endpoint.is_empty() {
        provider = provider.with_batch_exporter(otlp::exporter(
            &settings.otlp_endpoint,
            &settings.otlp_tls,
            &settings.otlp_headers,
        )?);
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
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::log_json::JsonWithTrace)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
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

/// Makes `traceparent` (when valid) the parent of `span`, so a trace started by a frontend or
/// an upstream service goes on here. Call it before `span` is first entered: OpenTelemetry
/// fixes a span's parent when the span starts.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid()
        && let Err(error) = span.set_parent(parent)
    {
        tracing::debug!(%error, "cannot continue the incoming trace");
    }
}

/// Links `span` to `to` (OpenTelemetry span links: how a span that works for several traces
/// at once, a batch, points at each of them). Call it before `span` closes.
pub fn add_link(span: &tracing::Span, to: &tracing::Span) {
    let context = to.context().span().span_context().clone();
    if context.is_valid() {
        span.add_link(context);
    }
}

/// Puts the current span's `traceparent` on an outgoing gRPC request.
pub fn inject_grpc_trace<T>(request: &mut tonic::Request<T>) {
    if let Some(traceparent) = current_traceparent()
        && let Ok(value) = traceparent.parse()
    {
        request.metadata_mut().insert(TRACEPARENT, value);
    }
}

/// A tower layer for gRPC servers: one span per call, named after the method and continuing
/// the caller's `traceparent`; the call's RED metrics ([`crate::call_metrics`]); and a count
/// of calls in flight, so shutdown can wait for them (and not for idle client connections).
#[derive(Debug, Clone, Default)]
pub struct GrpcTraceLayer {
    in_flight: InFlight,
    known: KnownServices,
}

impl GrpcTraceLayer {
    /// `known`: the services the port serves, the only ones whose methods name a metric label.
    pub fn new(in_flight: InFlight, known: KnownServices) -> Self {
        Self { in_flight, known }
    }
}

/// How many calls are being served right now.
#[derive(Debug, Clone, Default)]
pub struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self.clone())
    }
}

struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<S> tower_layer::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace {
            inner,
            in_flight: self.in_flight.clone(),
            known: self.known.clone(),
        }
    }
}

/// The service [`GrpcTraceLayer`] wraps around a server.
#[derive(Debug, Clone)]
pub struct GrpcTrace<S> {
    inner: S,
    in_flight: InFlight,
    known: KnownServices,
}

impl<S, B, ResBody> tower_service::Service<http::Request<B>> for GrpcTrace<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use tracing::Instrument;
        let method = request.uri().path();
        let record = CallRecord::start(self.known.label(method));
        let span = tracing::info_span!(
            "grpc.call",
            otel.name = method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = method,
            // Filled in by the port's guard: the token's `sub` or the client certificate's name.
            subject = tracing::field::Empty,
        );
        set_parent(
            &span,
            request
                .headers()
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        );
        let guard = self.in_flight.enter();
        // Inner layers (the guard among them) run inside the span, so they can record on it.
        let call = span
            .in_scope(|| self.inner.call(request))
            .instrument(span.clone());
        Box::pin(async move {
            let response = call.await;
            drop(guard);
            span.in_scope(|| tracing::debug!("call answered"));
            response.map(|response| {
                let mut record = record;
                record.code_from(response.headers());
                response.map(|body| MeteredBody::new(body, record))
            })
        })
    }
}
