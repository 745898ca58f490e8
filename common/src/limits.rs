//! Server-side limits on every gRPC call: a deadline (the client's `grpc-timeout`, capped by
//! the server's own), and a cap on calls in flight that sheds the excess at once with
//! `RESOURCE_EXHAUSTED` instead of queueing it until the database pool starves and every call
//! fails slowly.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// Limits of one gRPC port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LimitSettings {
    /// Longest a call may run, in milliseconds, whatever deadline the client sent; a call past
    /// it is answered DEADLINE_EXCEEDED (and its transaction rolled back).
    pub request_timeout_ms: u64,
    /// Calls served at once; more are refused with RESOURCE_EXHAUSTED (clients back off and
    /// retry). Keep it a small multiple of `database.max_connections`: calls beyond the pool
    /// only wait for a connection.
    pub max_concurrent_calls: usize,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            max_concurrent_calls: 64,
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The layer applying [`LimitSettings`] (the message size is applied per service, by
/// `max_decoding_message_size`).
#[derive(Clone)]
pub struct LimitsLayer {
    timeout: Duration,
    permits: Arc<Semaphore>,
    max: usize,
}

impl LimitsLayer {
    pub fn new(settings: &LimitSettings) -> Self {
        let max = settings.max_concurrent_calls.max(1);
        Self {
            timeout: Duration::from_millis(settings.request_timeout_ms.max(1)),
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limits {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limits<S> {
    inner: S,
    layer: LimitsLayer,
}

/// A client's `grpc-timeout` header (`<digits><unit>`, unit one of H M S m u n).
fn client_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

tokio::task_local! {
    /// Raised while a call's future is dropped before it finished.
    static GIVEN_UP: Arc<AtomicBool>;
}

/// Whether what is being dropped now belongs to a call given up: its deadline passed or its
/// client went away, and its future is dropped unfinished. A database lease dropped then may
/// still have a statement in flight (see `tandem_common::pool`). False outside a call.
pub fn call_given_up() -> bool {
    GIVEN_UP
        .try_with(|given_up| given_up.load(Ordering::SeqCst))
        .unwrap_or(false)
}

/// Runs `call` so that, dropped before it finishes, what it drops sees [`call_given_up`].
pub fn as_call<F: Future>(call: F) -> impl Future<Output = F::Output> {
    let given_up = Arc::new(AtomicBool::new(false));
    GIVEN_UP.scope(
        given_up.clone(),
        Call {
            inner: Some(Box::pin(call)),
            given_up,
        },
    )
}

struct Call<F> {
    inner: Option<Pin<Box<F>>>,
    given_up: Arc<AtomicBool>,
}

impl<F: Future> Future for Call<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Pending; // polled after it finished: never again ready
        };
        let output = ready!(inner.as_mut().poll(cx));
        self.inner = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for Call<F> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // Inside GIVEN_UP's scope (tokio drops a scoped future within its scope).
            self.given_up.store(true, Ordering::SeqCst);
            drop(inner);
        }
    }
}

impl<S, B> Service<http::Request<B>> for Limits<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            let max = self.layer.max;
            metrics::counter!(crate::metrics_names::GRPC_CALLS_SHED).increment(1);
            tracing::warn!(
                path = request.uri().path(),
                max,
                "shedding a call: too many in flight"
            );
            let status = Status::resource_exhausted(format!(
                "server busy ({max} calls in flight); retry with backoff"
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        // Our deadline fires a little before the client's, so the client hears
        // DEADLINE_EXCEEDED from us rather than a bare cancellation.
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(client_timeout)
            .map_or(self.layer.timeout, |client| {
                client
                    .saturating_sub(Duration::from_millis(2))
                    .min(self.layer.timeout)
            });
        // The clone is the one `poll_ready` readied (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, as_call(inner.call(request))).await {
                Ok(result) => result,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call did not finish within {} ms",
                    timeout.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// Answers OK after `delay`.
    #[derive(Clone)]
    struct Slow(Duration);

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    fn grpc_status(response: &http::Response<tonic::body::Body>) -> Option<String> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri("/tandem.test.v1.T/Call");
        if let Some(timeout) = timeout {
            builder = builder.header("grpc-timeout", timeout);
        }
        builder.body(()).unwrap()
    }

    fn limits(timeout_ms: u64, max: usize, delay: Duration) -> Limits<Slow> {
        LimitsLayer::new(&LimitSettings {
            request_timeout_ms: timeout_ms,
            max_concurrent_calls: max,
            ..LimitSettings::default()
        })
        .layer(Slow(delay))
    }

    #[test]
    fn client_timeouts_parse() {
        assert_eq!(client_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(client_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(client_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(client_timeout("S"), None);
        assert_eq!(client_timeout("12x"), None);
        assert_eq!(client_timeout("1234567890S"), None);
    }

    #[tokio::test]
    async fn a_call_past_the_servers_deadline_is_deadline_exceeded() {
        let mut service = limits(50, 4, Duration::from_secs(5));
        let response = service.call(request(None)).await.unwrap();
        assert_eq!(grpc_status(&response).as_deref(), Some("4"));
        let mut quick = limits(1_000, 4, Duration::from_millis(1));
        let response = quick.call(request(None)).await.unwrap();
        assert_eq!(grpc_status(&response), None, "a quick call passes");
    }

    #[tokio::test]
    async fn the_clients_shorter_deadline_wins() {
        let mut service = limits(60_000, 4, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let response = service.call(request(Some("100m"))).await.unwrap();
        assert_eq!(grpc_status(&response).as_deref(), Some("4"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn calls_beyond_the_cap_are_shed_at_once() {
        let mut service = limits(10_000, 2, Duration::from_millis(300));
        let first = service.call(request(None));
        let second = service.call(request(None));
        let third = service.call(request(None)).await.unwrap();
        assert_eq!(
            grpc_status(&third).as_deref(),
            Some("8"),
            "RESOURCE_EXHAUSTED"
        );
        let (first, second) = tokio::join!(first, second);
        assert_eq!(grpc_status(&first.unwrap()), None);
        assert_eq!(grpc_status(&second.unwrap()), None);
        let after = service.call(request(None)).await.unwrap();
        assert_eq!(grpc_status(&after), None, "permits come back");
    }

    /// Records, when dropped, whether it was dropped with a call given up.
    struct Witness(std::sync::Arc<std::sync::Mutex<Option<bool>>>);

    impl Drop for Witness {
        fn drop(&mut self) {
            if let Ok(mut seen) = self.0.lock() {
                *seen = Some(call_given_up());
            }
        }
    }

    #[tokio::test]
    async fn only_what_an_unfinished_call_drops_sees_it_given_up() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        // Finished: what it dropped on the way was not given up.
        let witness = Witness(seen.clone());
        as_call(async move { drop(witness) }).await;
        assert_eq!(*seen.lock().unwrap(), Some(false));
        // Dropped while it waits: what it holds is dropped given up.
        let witness = Witness(seen.clone());
        let call = as_call(async move {
            let _held = witness;
            std::future::pending::<()>().await;
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(10), call)
                .await
                .is_err()
        );
        assert_eq!(*seen.lock().unwrap(), Some(true));
        // Outside any call.
        assert!(!call_given_up());
    }
}
