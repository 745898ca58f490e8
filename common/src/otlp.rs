//! Where and how spans are exported: OTLP/gRPC to a collector, over TLS when configured
//! (the same client TLS as the bridge's, certificates reloaded), with headers (a vendor's
//! token), a parent-based ratio sampler and resource attributes (`telemetry.*` keys).

use std::{collections::BTreeMap, fmt};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{Resource, trace::Sampler};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use crate::tls::{self, ClientTlsSettings};

/// Headers sent with every export, `name=value` pairs separated by commas (e.g.
/// `authorization=Bearer …,x-tenant=acme`): they often hold a token, so `Debug` and
/// serialisation print `<redacted>`, and the values never reach a log.
#[derive(Clone, Default)]
pub struct OtlpHeaders(Option<SecretString>);

impl OtlpHeaders {
    pub fn new(pairs: &str) -> Self {
        Self((!pairs.is_empty()).then(|| SecretString::from(pairs.to_owned())))
    }

    /// The headers as gRPC metadata; an error names the header at fault, never its value.
    pub fn metadata(&self) -> Result<MetadataMap, OtlpError> {
        let mut metadata = MetadataMap::new();
        let Some(pairs) = &self.0 else {
            return Ok(metadata);
        };
        for pair in pairs
            .expose_secret()
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                OtlpError::Header("an entry without `=` (expected name=value)".to_owned())
            })?;
            let name = name.trim().to_ascii_lowercase();
            let key = MetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| OtlpError::Header(format!("{name:?} is not a header name")))?;
            let value: MetadataValue<_> = value
                .trim()
                .parse()
                .map_err(|_| OtlpError::Header(format!("the value of {name:?} is not valid")))?;
            metadata.insert(key, value);
        }
        Ok(metadata)
    }
}

impl fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(_) => f.write_str("<redacted>"),
            None => f.write_str("<none>"),
        }
    }
}

impl PartialEq for OtlpHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().map(ExposeSecret::expose_secret)
            == other.0.as_ref().map(ExposeSecret::expose_secret)
    }
}

impl Serialize for OtlpHeaders {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(_) => serializer.serialize_str("<redacted>"),
            None => serializer.serialize_str(""),
        }
    }
}

impl<'de> Deserialize<'de> for OtlpHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::new(&String::deserialize(deserializer)?))
    }
}

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("invalid telemetry.otlp_headers: {0}")]
    Header(String),
    #[error("invalid telemetry.resource_attributes: {0:?} is not name=value")]
    Attribute(String),
    #[error("invalid telemetry.sampler_ratio {0}: between 0 and 1")]
    Ratio(f64),
    #[error("telemetry.otlp_tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The span exporter for `endpoint`: a lazily connected channel (TLS per `tls`), `headers`
/// on every export. Must be called within a Tokio runtime.
pub fn exporter(
    endpoint: &str,
    tls: &ClientTlsSettings,
    headers: &OtlpHeaders,
) -> Result<impl opentelemetry_sdk::trace::SpanExporter + 'static, OtlpError> {
    let channel = tls::lazy_channel(endpoint, tls)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(channel)
        .with_endpoint(endpoint.to_owned())
        .with_metadata(headers.metadata()?)
        .build()
        .map_err(|source| OtlpError::Exporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    Ok(exporter)
}

/// Keeps a trace's decision where its parent made one (a frontend's `sampled` flag, the
/// producer's for an event); samples `ratio` of the traces that start here.
pub fn sampler(ratio: f64) -> Result<Sampler, OtlpError> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(OtlpError::Ratio(ratio));
    }
    Ok(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        ratio,
    ))))
}

/// `service.name`, `service.version`, `deployment.environment.name` (when set) and the
/// `name=value` pairs of `extra` (comma-separated).
pub fn resource(
    service: &'static str,
    environment: &str,
    extra: &str,
) -> Result<Resource, OtlpError> {
    let mut attributes = BTreeMap::new();
    for pair in extra.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| OtlpError::Attribute(pair.to_owned()))?;
        attributes.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    if !environment.is_empty() {
        attributes.insert(
            "deployment.environment.name".to_owned(),
            environment.to_owned(),
        );
    }
    attributes.insert(
        "service.version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    Ok(Resource::builder()
        .with_service_name(service)
        .with_attributes(attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build())
}

/// One span as a collector received it, ids in lower-case hex; what `tandemctl
/// trace-collector` writes (one JSON object per line) and `tandemctl trace` reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectedSpan {
    /// The exporting process's `service.name`.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// (trace id, span id) of every linked span (a batch links its events).
    pub links: Vec<(String, String)>,
    pub attributes: BTreeMap<String, String>,
    /// The process's resource attributes (`service.version`, ...).
    pub resource: BTreeMap<String, String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl CollectedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Every span of an OTLP export request.
    pub fn from_request(
        request: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    ) -> Vec<Self> {
        use opentelemetry_proto::tonic::common::v1::{
            AnyValue, KeyValue as Pair, any_value::Value,
        };
        fn hex(bytes: &[u8]) -> String {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        fn text(value: Option<&AnyValue>) -> String {
            match value.and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            }
        }
        fn pairs(list: &[Pair]) -> BTreeMap<String, String> {
            list.iter()
                .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                .collect()
        }
        let mut spans = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| pairs(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Self {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                        attributes: pairs(&span.attributes),
                        resource: resource.clone(),
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano,
                    });
                }
            }
        }
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_metadata_and_never_print() {
        let headers = OtlpHeaders::new("Authorization=Bearer sekret, x-tenant=acme");
        let metadata = headers.metadata().unwrap();
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer sekret");
        assert_eq!(metadata.get("x-tenant").unwrap(), "acme");
        assert_eq!(format!("{headers:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&headers).unwrap(), "\"<redacted>\"");
        let bad = OtlpHeaders::new("authorization Bearer sekret")
            .metadata()
            .unwrap_err();
        assert!(!bad.to_string().contains("sekret"), "{bad}");
    }

    #[test]
    fn the_sampler_is_parent_based_and_the_ratio_bounded() {
        assert!(matches!(sampler(0.25), Ok(Sampler::ParentBased(_))));
        assert!(sampler(1.5).is_err());
        assert!(sampler(-0.1).is_err());
    }

    #[test]
    fn the_resource_names_the_service_its_version_and_environment() {
        let built = resource("crm-service", "staging", "team=sales, region = eu").unwrap();
        let get = |key: &str| {
            built
                .get(&opentelemetry::Key::from(key.to_owned()))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("crm-service"));
        assert_eq!(
            get("deployment.environment.name").as_deref(),
            Some("staging")
        );
        assert_eq!(get("region").as_deref(), Some("eu"));
        assert_eq!(
            get("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(resource("x", "", "no-equals").is_err());
    }
}
