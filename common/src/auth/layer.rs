//! The gRPC server layer: authenticate the bearer token, authorise the method, hand the caller
//! to the service.
//!
//! For each request the layer looks the request path (`/<package>.<Service>/<Method>`) up in
//! the service's [`AccessTable`]:
//!
//! - not there: PERMISSION_DENIED "method not in the access table" (deny by default);
//! - [`Access::Anyone`]: passed through untouched;
//! - [`Access::Roles`]: the `authorization: Bearer <token>` header is verified. No token or a
//!   bad one: UNAUTHENTICATED naming the reason; a valid one without any of the roles:
//!   PERMISSION_DENIED naming the method and the caller's roles. Otherwise the [`Caller`] goes
//!   into the request extensions and the inner service runs inside a task-local scope, so
//!   [`current_caller`] and [`current_subject`] work anywhere below it.
//!
//! The subject is recorded on the current span's `subject` field (when the span has one) and
//! refusals are logged at info level with the method and the reason; the token never is.
//!
//! The task-local scope covers the future the inner service returns: all of a unary handler,
//! but not a streamed response body, which is polled after it. Streaming handlers read the
//! caller at their start (or from `request.extensions().get::<Caller>()`) and carry it along.
//!
//! ```text
//! Server::builder()
//!     .layer(GrpcTraceLayer::new(in_flight, known)) // outermost: its span sees the subject
//!     .layer(AuthLayer::new(verifier, CRM_ACCESS))
//!     .add_routes(routes)
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::HeaderMap;
use tonic::Status;

use super::{
    Access, AccessTable, AuthError, Caller, Role, Verifier,
    error::{printable, printable_up_to},
    role::lookup,
};

tokio::task_local! {
    static CALLER: Caller;
}

/// The caller of the request being served, inside a call let through by [`AuthLayer`] (or
/// inside [`with_caller`]); `None` elsewhere, e.g. for [`Access::Anyone`] methods.
pub fn current_caller() -> Option<Caller> {
    CALLER.try_with(Caller::clone).ok()
}

/// The subject (`sub`) of the request being served; see [`current_caller`].
pub fn current_subject() -> Option<String> {
    CALLER.try_with(|caller| caller.subject.clone()).ok()
}

/// Runs `future` as if [`AuthLayer`] had let `caller` through: for tests of services and for
/// work a call spawns that should keep acting for its caller.
pub async fn with_caller<F: Future>(caller: Caller, future: F) -> F::Output {
    CALLER.scope(caller, future).await
}

/// The `tower` layer adding authentication and authorisation to a tonic server.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Verifier,
    table: AccessTable,
}

impl AuthLayer {
    /// Checks tokens with `verifier` and methods against `table`.
    pub fn new(verifier: Verifier, table: AccessTable) -> Self {
        Self { verifier, table }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            table: self.table,
        }
    }
}

/// The service [`AuthLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    verifier: Verifier,
    table: AccessTable,
}

/// What happens to one request.
enum Decision {
    Pass,
    Allow(Caller),
    Refuse(Refusal),
}

enum Refusal {
    NotInTable,
    Unauthenticated(AuthError),
    Forbidden {
        caller: Caller,
        allowed: &'static [Role],
    },
}

impl<S, B> tower_service::Service<http::Request<B>> for Auth<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        match decide(&self.verifier, self.table, &method, request.headers()) {
            Decision::Pass => Box::pin(self.inner.call(request)),
            Decision::Allow(caller) => {
                request.extensions_mut().insert(caller.clone());
                let call = self.inner.call(request);
                Box::pin(async move {
                    // Inside the future, so the span is the one the call is instrumented with.
                    tracing::Span::current().record("subject", caller.subject.as_str());
                    CALLER.scope(caller, call).await
                })
            }
            Decision::Refuse(refusal) => Box::pin(async move {
                let method = printable_up_to(&method, 256);
                Ok(refusal.into_status(&method).into_http())
            }),
        }
    }
}

fn decide(verifier: &Verifier, table: AccessTable, method: &str, headers: &HeaderMap) -> Decision {
    let allowed = match lookup(table, method) {
        None => return Decision::Refuse(Refusal::NotInTable),
        Some(Access::Anyone) => return Decision::Pass,
        Some(Access::Roles(allowed)) => allowed,
    };
    let caller = match bearer_token(headers).and_then(|token| verifier.verify(token)) {
        Ok(caller) => caller,
        Err(error) => return Decision::Refuse(Refusal::Unauthenticated(error)),
    };
    if caller.has_any_role(allowed) {
        Decision::Allow(caller)
    } else {
        Decision::Refuse(Refusal::Forbidden { caller, allowed })
    }
}

/// The token of the single `authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed("more than one authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("the authorization header is not visible ASCII"))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed(
        "the authorization header is not `Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "the authorization scheme is not Bearer",
        ));
    }
    match token.trim() {
        "" => Err(AuthError::MissingToken),
        token => Ok(token),
    }
}

impl Refusal {
    /// The status to answer with, after logging the refusal (on the call's span).
    fn into_status(self, method: &str) -> Status {
        match self {
            Refusal::NotInTable => {
                tracing::info!(%method, reason = "not in the access table", "call refused");
                Status::permission_denied(format!("method not in the access table: {method}"))
            }
            Refusal::Unauthenticated(error) => {
                tracing::info!(%method, reason = %error, "call refused: unauthenticated");
                Status::unauthenticated(error.to_string())
            }
            Refusal::Forbidden { caller, allowed } => {
                tracing::Span::current().record("subject", caller.subject.as_str());
                let roles = caller.roles_text();
                tracing::info!(
                    %method,
                    subject = %printable(&caller.subject),
                    %roles,
                    "call refused: permission denied"
                );
                let needed = if allowed.is_empty() {
                    "no role may call it".to_owned()
                } else {
                    let names: Vec<&str> = allowed.iter().map(|role| role.as_str()).collect();
                    format!("it needs one of: {}", names.join(", "))
                };
                Status::permission_denied(format!(
                    "permission denied for {method}: the caller has {}{roles}; {needed}",
                    if caller.roles.is_empty() {
                        ""
                    } else {
                        "roles "
                    }
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower_layer::Layer;
    use tower_service::Service;

    use super::*;
    use crate::auth::test_support::{TestKey, verifier};

    const SALES: &[Role] = &[Role::Sales];
    const TABLE: AccessTable = &[
        ("/grpc.health.v1.Health/Check", Access::Anyone),
        (
            "/tandem.crm.v1.CrmService/CreateCustomer",
            Access::Roles(SALES),
        ),
        (
            "/tandem.crm.v1.CrmService/GetCustomer",
            Access::Roles(&[Role::Sales, Role::ReadOnly]),
        ),
        ("/tandem.crm.v1.CrmService/Nobody", Access::Roles(&[])),
    ];

    /// What the inner service saw, per call.
    #[derive(Debug, Clone, Default, PartialEq)]
    struct Seen {
        subject: Option<String>,
        caller: Option<Caller>,
        extension: Option<Caller>,
    }

    /// An inner service answering OK and recording what it could see of the caller.
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Service<http::Request<()>> for Recorder {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            let seen = Arc::clone(&self.seen);
            let extension = request.extensions().get::<Caller>().cloned();
            Box::pin(async move {
                // Deeper in the call, across an await, as a handler would be.
                tokio::task::yield_now().await;
                seen.lock().unwrap().push(Seen {
                    subject: current_subject(),
                    caller: current_caller(),
                    extension,
                });
                Ok(Status::ok("").into_http())
            })
        }
    }

    struct Harness {
        service: Auth<Recorder>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Harness {
        fn new(key: &TestKey) -> Self {
            let recorder = Recorder::default();
            let seen = Arc::clone(&recorder.seen);
            let service = AuthLayer::new(verifier(&[key]), TABLE).layer(recorder);
            Self { service, seen }
        }

        /// Calls `method` with these `authorization` headers; returns grpc-status, message.
        async fn call(&mut self, method: &str, authorization: &[&str]) -> (String, String) {
            let mut request = http::Request::builder().uri(method);
            for value in authorization {
                request = request.header(http::header::AUTHORIZATION, *value);
            }
            std::future::poll_fn(|cx| self.service.poll_ready(cx))
                .await
                .unwrap();
            let response = self.service.call(request.body(()).unwrap()).await.unwrap();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            // `into_http` keeps the status in the extensions: its message, not percent-encoded.
            let message = response
                .extensions()
                .get::<Status>()
                .map(|status| status.message().to_owned())
                .unwrap_or_default();
            (header("grpc-status"), message)
        }

        fn seen(&self) -> Vec<Seen> {
            std::mem::take(&mut *self.seen.lock().unwrap())
        }
    }

    const OK: &str = "0";
    const PERMISSION_DENIED: &str = "7";
    const UNAUTHENTICATED: &str = "16";

    #[tokio::test]
    async fn anyone_methods_pass_without_a_token() {
        let key = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let (status, _) = harness.call("/grpc.health.v1.Health/Check", &[]).await;
        assert_eq!(status, OK);
        // Even with a broken token: it is not looked at.
        let (status, _) = harness
            .call("/grpc.health.v1.Health/Check", &["Bearer junk"])
            .await;
        assert_eq!(status, OK);
        assert_eq!(harness.seen(), vec![Seen::default(), Seen::default()]);
    }

    #[tokio::test]
    async fn no_token_is_unauthenticated() {
        let key = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let method = "/tandem.crm.v1.CrmService/CreateCustomer";
        for headers in [&[][..], &["Bearer "], &["Bearer"]] {
            let (status, message) = harness.call(method, headers).await;
            assert_eq!(status, UNAUTHENTICATED, "{headers:?}");
            assert!(
                message.contains("no bearer token") || message.contains("not `Bearer"),
                "{message}"
            );
        }
        assert!(harness.seen().is_empty());
    }

    #[tokio::test]
    async fn bad_tokens_are_unauthenticated_without_echo() {
        let key = TestKey::es256("k1");
        let impostor = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let method = "/tandem.crm.v1.CrmService/CreateCustomer";
        let forged = impostor.token("mallory", &["sales"]);
        let expired = {
            let mut claims = crate::auth::test_support::claims("alice", &["sales"]);
            claims["exp"] = serde_json::json!(1);
            key.sign(&claims)
        };
        let good = key.token("alice", &["sales"]);
        let cases = [
            (format!("Bearer {forged}"), "bad signature"),
            (format!("Bearer {expired}"), "expired"),
            ("Bearer not.a.jwt".to_owned(), "malformed"),
            (format!("Basic {good}"), "not Bearer"),
        ];
        for (header, reason) in cases {
            let (status, message) = harness.call(method, &[&header]).await;
            assert_eq!(status, UNAUTHENTICATED, "{header:.30}");
            assert!(message.contains(reason), "{message}");
            let token = header.split_once(' ').unwrap().1;
            assert!(!message.contains(token), "{message}");
        }
        let bearer = format!("Bearer {good}");
        let (status, message) = harness.call(method, &[&bearer, &bearer]).await;
        assert_eq!(status, UNAUTHENTICATED);
        assert!(message.contains("more than one"), "{message}");
        assert!(harness.seen().is_empty());
    }

    #[tokio::test]
    async fn a_valid_token_without_an_allowed_role_is_permission_denied() {
        let key = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let admin = format!("Bearer {}", key.token("root", &["admin", "finance"]));
        let method = "/tandem.crm.v1.CrmService/CreateCustomer";
        let (status, message) = harness.call(method, &[&admin]).await;
        assert_eq!(status, PERMISSION_DENIED);
        assert!(message.contains(method), "{message}");
        assert_eq!(
            message,
            format!(
                "permission denied for {method}: the caller has roles admin, finance; \
                 it needs one of: sales"
            )
        );
        let (status, message) = harness
            .call("/tandem.crm.v1.CrmService/Nobody", &[&admin])
            .await;
        assert_eq!(status, PERMISSION_DENIED);
        assert!(message.ends_with("no role may call it"), "{message}");
        let nobody = format!("Bearer {}", key.token("guest", &["wizard"]));
        let (status, message) = harness.call(method, &[&nobody]).await;
        assert_eq!(status, PERMISSION_DENIED);
        assert!(message.contains("the caller has no roles"), "{message}");
        assert!(harness.seen().is_empty());
    }

    #[tokio::test]
    async fn methods_not_in_the_table_are_denied() {
        let key = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let sales = format!("Bearer {}", key.token("alice", &["sales"]));
        for headers in [&[][..], &[sales.as_str()]] {
            let (status, message) = harness
                .call("/tandem.crm.v1.CrmService/DropEverything", headers)
                .await;
            assert_eq!(status, PERMISSION_DENIED);
            assert!(
                message.contains("method not in the access table"),
                "{message}"
            );
        }
        assert!(harness.seen().is_empty());
    }

    #[tokio::test]
    async fn an_allowed_role_reaches_the_service_with_the_caller() {
        let key = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let token = key.token("alice", &["read-only"]);
        let (status, _) = harness
            .call(
                "/tandem.crm.v1.CrmService/GetCustomer",
                &[&format!("bearer  {token} ")],
            )
            .await;
        assert_eq!(status, OK);
        let alice = Caller {
            subject: "alice".into(),
            roles: vec![Role::ReadOnly],
        };
        assert_eq!(
            harness.seen(),
            vec![Seen {
                subject: Some("alice".into()),
                caller: Some(alice.clone()),
                extension: Some(alice),
            }]
        );
        // Outside a call there is no caller.
        assert_eq!(current_subject(), None);
    }

    #[tokio::test]
    async fn the_subject_is_recorded_on_the_span() {
        use tracing::Instrument;

        let key = TestKey::es256("k1");
        let mut harness = Harness::new(&key);
        let bearer = format!("Bearer {}", key.token("alice", &["sales"]));
        let recorded = Arc::new(Mutex::new(Vec::<String>::new()));
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            SubjectRecorder(Arc::clone(&recorded)),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let span = tracing::info_span!("grpc.call", subject = tracing::field::Empty);
        let (status, _) = harness
            .call("/tandem.crm.v1.CrmService/CreateCustomer", &[&bearer])
            .instrument(span)
            .await;
        assert_eq!(status, OK);
        assert_eq!(*recorded.lock().unwrap(), vec!["alice".to_owned()]);
    }

    /// The layer as a real server uses it: tonic transport, the trace layer outside, a real
    /// client over loopback TCP.
    #[tokio::test]
    async fn a_tonic_server_enforces_the_table() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

        const HEALTH_TABLE: AccessTable = &[(
            "/grpc.health.v1.Health/Check",
            Access::Roles(&[Role::Admin]),
        )];
        let key = TestKey::es256("k1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let shutdown = crate::CancellationToken::new();
        let stop = shutdown.clone();
        let server = tonic::transport::Server::builder()
            .layer(crate::telemetry::GrpcTraceLayer::new(
                crate::telemetry::InFlight::default(),
                crate::call_metrics::KnownServices::default(),
            ))
            .layer(AuthLayer::new(verifier(&[&key]), HEALTH_TABLE))
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { stop.cancelled().await },
            );
        let server = tokio::spawn(server);

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let check = |token: Option<String>| {
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            if let Some(token) = token {
                let value = format!("Bearer {token}").parse().unwrap();
                request.metadata_mut().insert("authorization", value);
            }
            request
        };

        let status = client.check(check(None)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("no bearer token"), "{status:?}");

        let sales = key.token("alice", &["sales"]);
        let status = client.check(check(Some(sales))).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);

        let admin = key.token("root", &["admin"]);
        let response = client.check(check(Some(admin.clone()))).await.unwrap();
        assert_eq!(
            response.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        let mut watch = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        let value = format!("Bearer {admin}").parse().unwrap();
        watch.metadata_mut().insert("authorization", value);
        let status = client.watch(watch).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("method not in the access table"));

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    /// A layer remembering the values recorded into `subject` fields.
    struct SubjectRecorder(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SubjectRecorder {
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(&mut SubjectVisitor(&self.0));
        }
    }

    struct SubjectVisitor<'a>(&'a Mutex<Vec<String>>);

    impl tracing::field::Visit for SubjectVisitor<'_> {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "subject" {
                self.0.lock().unwrap().push(value.to_owned());
            }
        }

        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }
}
