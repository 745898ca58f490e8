//! A change's journey, for newcomers and for incidents without a tracing backend:
//!
//! - `tandemctl trace-collector --listen ADDR --out FILE` is an OTLP/gRPC trace receiver that
//!   appends every span it gets to FILE, one JSON object per line (`make run` starts one and
//!   points the three processes at it);
//! - `tandemctl trace ID` reads that file and prints every trace that ID names (a trace id, or
//!   an entity id: a customer, order or sku id any span carries as `aggregate_id`), as trees of
//!   spans with their service, method and duration, following batches through their links.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tandem_common::{CancellationToken, otlp::CollectedSpan};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a span ({source})")]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Appends received spans to a file.
#[derive(Clone)]
struct Writer {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

#[tonic::async_trait]
impl TraceService for Writer {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut text = String::new();
        for span in CollectedSpan::from_request(request.into_inner()) {
            let line = serde_json::to_string(&span)
                .map_err(|e| tonic::Status::internal(format!("cannot encode a span: {e}")))?;
            text.push_str(&line);
            text.push('\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(text.as_bytes()).map_err(|e| {
            tonic::Status::unavailable(format!("cannot write {}: {e}", self.path.display()))
        })?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Receives spans on `listen` (plaintext OTLP/gRPC) and appends them to `out` until `stop`.
pub async fn collect(
    listen: SocketAddr,
    out: &Path,
    stop: CancellationToken,
) -> Result<(), TraceError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|source| TraceError::File {
            path: out.to_owned(),
            source,
        })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| TraceError::Listen {
            addr: listen,
            source,
        })?;
    let writer = Writer {
        path: out.to_owned(),
        file: Arc::new(Mutex::new(file)),
    };
    eprintln!("collecting spans on {listen} into {}", out.display());
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(writer))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop.cancelled_owned(),
        )
        .await
        .map_err(|source| TraceError::Serve {
            addr: listen,
            source,
        })
}

/// Every span in `path` (a file `collect` wrote).
pub fn load(path: &Path) -> Result<Vec<CollectedSpan>, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::File {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|source| TraceError::Line {
                path: path.to_owned(),
                line: n + 1,
                source,
            })
        })
        .collect()
}

/// The traces `id` names, printed as trees: the traces with that id, or whose spans carry it
/// as `aggregate_id`, plus every batch trace linked to one of their spans. Empty when none.
pub fn show(spans: &[CollectedSpan], id: &str) -> String {
    let mut traces: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.trace_id == id || s.attribute("aggregate_id") == Some(id))
        .map(|s| s.trace_id.as_str())
        .collect();
    // Batches: a span linked to any span of these traces brings its own trace in.
    let linked: BTreeSet<&str> = spans
        .iter()
        .filter(|s| {
            s.links
                .iter()
                .any(|(trace, _)| traces.contains(trace.as_str()))
        })
        .map(|s| s.trace_id.as_str())
        .collect();
    traces.extend(linked);
    let mut out = String::new();
    for trace in traces {
        let members: Vec<&CollectedSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
        let ids: BTreeSet<&str> = members.iter().map(|s| s.span_id.as_str()).collect();
        let mut children: BTreeMap<&str, Vec<&CollectedSpan>> = BTreeMap::new();
        for span in &members {
            // A span whose parent is not in the file (the frontend's) starts a tree.
            let parent = if ids.contains(span.parent_span_id.as_str()) {
                span.parent_span_id.as_str()
            } else {
                ""
            };
            children.entry(parent).or_default().push(span);
        }
        for list in children.values_mut() {
            list.sort_by_key(|s| s.start_unix_nano);
        }
        let _ = writeln!(out, "trace {trace}");
        render(&children, "", 1, &mut out);
    }
    out
}

fn render(
    children: &BTreeMap<&str, Vec<&CollectedSpan>>,
    parent: &str,
    depth: usize,
    out: &mut String,
) {
    for span in children.get(parent).map(Vec::as_slice).unwrap_or_default() {
        let detail = [
            span.attribute("aggregate_id")
                .map(|id| format!("aggregate {id}")),
            (!span.links.is_empty()).then(|| {
                let linked: Vec<String> = span
                    .links
                    .iter()
                    .map(|(trace, _)| trace.chars().take(8).collect())
                    .collect();
                format!(
                    "links {} event(s) of traces {}",
                    span.links.len(),
                    linked.join(",")
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let millis = span.end_unix_nano.saturating_sub(span.start_unix_nano) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{:indent$}[{}] {} {:.1} ms{}",
            "",
            span.service,
            span.name,
            millis,
            if detail.is_empty() {
                String::new()
            } else {
                format!("  ({detail})")
            },
            indent = depth * 2
        );
        render(children, &span.span_id, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, parent: &str, name: &str) -> CollectedSpan {
        CollectedSpan {
            service: "svc".into(),
            name: name.into(),
            trace_id: trace.into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            links: Vec::new(),
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            start_unix_nano: 1,
            end_unix_nano: 2_000_001,
        }
    }

    #[test]
    fn an_entity_id_finds_its_trace_and_the_batch_linked_to_it() {
        let call = span("t1", "a", "frontend", "/x.Crm/CreateCustomer");
        let mut event = span("t1", "b", "a", "bridge.event");
        event
            .attributes
            .insert("aggregate_id".into(), "c-42".into());
        let mut batch = span("t2", "c", "", "bridge.batch");
        batch.links.push(("t1".into(), "b".into()));
        let apply = span("t2", "d", "c", "/x.Erp/ApplyCustomers");
        let other = span("t3", "e", "", "unrelated");
        let printed = show(&[call, event, batch, apply, other], "c-42");
        assert!(
            printed.contains("trace t1") && printed.contains("trace t2"),
            "{printed}"
        );
        assert!(!printed.contains("unrelated"), "{printed}");
        assert!(
            printed.contains("    [svc] bridge.event 2.0 ms  (aggregate c-42)"),
            "{printed}"
        );
        assert!(
            printed.contains("    [svc] /x.Erp/ApplyCustomers"),
            "{printed}"
        );
        assert_eq!(show(&[], "nothing"), "");
    }
}
