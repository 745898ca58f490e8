//! RED metrics of every gRPC call a server answers: calls by method and status code
//! ([`GRPC_SERVER_CALLS`](crate::metrics_names::GRPC_SERVER_CALLS)) and their duration
//! ([`GRPC_SERVER_CALL_SECONDS`](crate::metrics_names::GRPC_SERVER_CALL_SECONDS)), recorded
//! when the response ends. The status comes from the response headers (errors answered at
//! once) or from its trailers (everything else); a response dropped before it ended (the
//! client went away) counts as `CANCELLED`.
//!
//! The `method` label takes only the methods of the services the port serves: any other path
//! counts as `unknown`, so callers cannot grow the label set.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;

use crate::metrics_names as m;

/// The services a port serves (`tandem.crm.v1.CrmService`, `grpc.health.v1.Health`, ...).
#[derive(Debug, Clone, Default)]
pub struct KnownServices(Arc<HashSet<String>>);

impl KnownServices {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(services: I) -> Self {
        Self(Arc::new(services.into_iter().map(Into::into).collect()))
    }

    /// The `method` label for a request path: the path itself (`/pkg.Service/Method`) when
    /// its service is known, else `unknown`.
    pub fn label(&self, path: &str) -> String {
        let service = path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .map(|(service, _)| service);
        match service {
            Some(service) if self.0.contains(service) => path.to_owned(),
            _ => "unknown".to_owned(),
        }
    }
}

/// One call being answered; records itself once, when finished.
#[derive(Debug)]
pub struct CallRecord {
    method: String,
    started: Instant,
    code: Option<Code>,
}

impl CallRecord {
    pub fn start(method: String) -> Self {
        Self {
            method,
            started: Instant::now(),
            code: None,
        }
    }

    /// The status of a response whose headers carry it (a trailers-only answer: an error).
    pub fn code_from(&mut self, headers: &http::HeaderMap) {
        if let Some(code) = grpc_status(headers) {
            self.code = Some(code);
        }
    }

    fn finish(self, fallback: Code) {
        let code = self.code.unwrap_or(fallback);
        metrics::counter!(m::GRPC_SERVER_CALLS,
            "method" => self.method.clone(), "code" => code_name(code))
        .increment(1);
        metrics::histogram!(m::GRPC_SERVER_CALL_SECONDS, "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// The code's name as gRPC writes it (`OK`, `NOT_FOUND`, ...): 17 values at most.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

pin_project! {
    /// A response body that records its call when it ends (or is dropped).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(record) = this.project().record.take() {
                // Ended without trailers: a trailers-only answer (its code is known), or a
                // response the client abandoned.
                record.finish(Code::Cancelled);
            }
        }
    }
}

impl<B> MeteredBody<B> {
    pub fn new(inner: B, record: CallRecord) -> Self {
        Self {
            inner,
            record: Some(record),
        }
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(record)) = (frame.trailers_ref(), this.record.as_mut())
                {
                    record.code_from(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(record) = this.record.take() {
                    record.finish(Code::Unknown);
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.take() {
                    record.finish(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_services_name_their_method() {
        let known = KnownServices::new(["tandem.crm.v1.CrmService"]);
        assert_eq!(
            known.label("/tandem.crm.v1.CrmService/GetCustomer"),
            "/tandem.crm.v1.CrmService/GetCustomer"
        );
        for path in [
            "/evil.Service/X",
            "/",
            "",
            "/tandem.crm.v1.CrmService",
            "nope",
        ] {
            assert_eq!(known.label(path), "unknown", "{path:?}");
        }
    }

    #[test]
    fn every_code_has_its_grpc_name() {
        for (n, name) in [(0, "OK"), (5, "NOT_FOUND"), (16, "UNAUTHENTICATED")] {
            assert_eq!(code_name(Code::from_i32(n)), name);
        }
    }
}
