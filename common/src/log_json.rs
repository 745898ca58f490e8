//! JSON log lines that join their trace: one object per line with `timestamp`, `level`,
//! `target`, the event's `fields`, the current `span` (its name and fields), and `trace_id` and
//! `span_id` of the OpenTelemetry span the event happened in (none outside a span). The trace
//! id is the request id of the whole path: a frontend's call, the owner's write, the outbox,
//! the bridge and the other service's apply all log the same one (a batch's call logs its
//! own, linked to each event's).

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_log::NormalizeEvent;
use tracing_opentelemetry::OtelData;
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{JsonFields, Writer},
    },
    registry::LookupSpan,
};

/// The event formatter of `telemetry.log_format = json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records from the `log` crate (librdkafka's, say) carry their real target and
        // location in `log.*` fields: use those, and leave the fields out.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        let mut fields = FieldsToJson(Map::new());
        event.record(&mut fields);
        line.insert("fields".into(), Value::Object(fields.0));
        if let Some(span) = ctx.lookup_current() {
            let extensions = span.extensions();
            let mut current = Map::new();
            current.insert("name".into(), span.name().into());
            // The span's fields as the JSON field formatter stored them.
            if let Some(stored) = extensions.get::<FormattedFields<JsonFields>>()
                && let Ok(Value::Object(recorded)) = serde_json::from_str::<Value>(stored)
            {
                current.extend(recorded);
            }
            line.insert("span".into(), Value::Object(current));
            // The nearest span that has OpenTelemetry ids (every span has, once entered).
            let ids = span.scope().find_map(|s| {
                let extensions = s.extensions();
                let otel = extensions.get::<OtelData>()?;
                Some((otel.trace_id()?, otel.span_id()?))
            });
            if let Some((trace_id, span_id)) = ids {
                line.insert("trace_id".into(), trace_id.to_string().into());
                line.insert("span_id".into(), span_id.to_string().into());
            }
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields as JSON values (numbers and booleans as such, the rest as text).
struct FieldsToJson(Map<String, Value>);

impl tracing::field::Visit for FieldsToJson {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !field.name().starts_with("log.") {
            self.0
                .insert(field.name().to_owned(), format!("{value:?}").into());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().to_owned(), value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().to_owned(), value.into());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn one_json_object_per_line_with_the_span_and_its_trace() {
        use opentelemetry::trace::TracerProvider as _;
        let buffer = Buffer::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        use tracing_subscriber::Layer as _;
        let filter = || tracing_subscriber::EnvFilter::new("info,tandem_common=debug");
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonWithTrace)
                    .with_writer(buffer.clone())
                    .with_filter(filter()),
            )
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(filter()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, "outside");
            let span = tracing::info_span!(
                "grpc.call",
                rpc.method = "/x.Y/Z",
                subject = tracing::field::Empty
            );
            span.in_scope(|| {
                tracing::Span::current().record("subject", "ada");
                tracing::warn!(ok = true, "inside");
            });
            span.in_scope(|| tracing::warn!(ok = true, "inside"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["fields"]["message"], "outside");
        assert_eq!(lines[0]["fields"]["answer"], 42);
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["fields"]["message"], "inside");
        assert_eq!(lines[1]["span"]["name"], "grpc.call");
        assert_eq!(lines[1]["span"]["rpc.method"], "/x.Y/Z");
        assert_eq!(
            lines[1]["trace_id"].as_str().map(str::len),
            Some(32),
            "{text}"
        );
        assert_eq!(
            lines[1]["span_id"].as_str().map(str::len),
            Some(16),
            "{text}"
        );
    }
}
