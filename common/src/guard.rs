//! Who may call a gRPC port: the one layer every port puts in front of its services.
//!
//! - [`Guard::Open`]: anyone (the bridge's own port, which serves only health).
//! - [`Guard::Bearer`]: callers with a bearer token whose roles the service's access table
//!   allows for the method (the public APIs).
//! - [`Guard::Peers`]: callers with a client certificate naming an allowed identity (the
//!   internal sync ports; mutual TLS). The identity is the call's subject, as a token's `sub`
//!   is on the public port, so logs and events name the bridge or tandemctl.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use crate::{
    auth::{self, Auth, AuthLayer, Caller},
    tls::{ClientIdentity, ClientIdentityLayer, PeerIdentity},
};

/// The layer: see the module documentation.
#[derive(Clone)]
pub enum Guard {
    Open,
    Bearer(AuthLayer),
    Peers(ClientIdentityLayer),
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        match self {
            Self::Open => Guarded::Open(inner),
            Self::Bearer(layer) => Guarded::Bearer(layer.layer(inner)),
            Self::Peers(layer) => Guarded::Peers(layer.layer(PeerScope(inner))),
        }
    }
}

/// The service a [`Guard`] wraps around another.
#[derive(Clone)]
pub enum Guarded<S> {
    Open(S),
    Bearer(Auth<S>),
    Peers(ClientIdentity<PeerScope<S>>),
}

/// Runs the call as its client certificate's identity (see [`auth::current_subject`]).
#[derive(Clone)]
pub struct PeerScope<S>(S);

impl<S, B> Service<http::Request<B>> for PeerScope<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let caller = request
            .extensions()
            .get::<PeerIdentity>()
            .map(|PeerIdentity(name)| Caller {
                subject: name.clone(),
                roles: Vec::new(),
            });
        if let Some(name) = caller.as_ref().map(|c| c.subject.clone()) {
            tracing::Span::current().record("subject", name);
        }
        let future = self.0.call(request);
        match caller {
            Some(caller) => Box::pin(auth::with_caller(caller, future)),
            None => Box::pin(future),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Open(inner) => inner.poll_ready(cx),
            Self::Bearer(inner) => inner.poll_ready(cx),
            Self::Peers(inner) => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self {
            Self::Open(inner) => Box::pin(inner.call(request)),
            Self::Bearer(inner) => inner.call(request),
            Self::Peers(inner) => Box::pin(inner.call(request)),
        }
    }
}
