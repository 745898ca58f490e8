//! Who may call a gRPC port: the one layer every port puts in front of its services.
//!
//! - [`Guard::Open`]: anyone (the bridge's own port, which serves only health).
//! - [`Guard::Peers`]: callers with a client certificate naming an allowed identity (the
//!   internal sync ports; mutual TLS).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use crate::tls::{ClientIdentity, ClientIdentityLayer};

/// The layer: see the module documentation.
#[derive(Clone)]
pub enum Guard {
    Open,
    Peers(ClientIdentityLayer),
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        match self {
            Self::Open => Guarded::Open(inner),
            Self::Peers(layer) => Guarded::Peers(layer.layer(inner)),
        }
    }
}

/// The service a [`Guard`] wraps around another.
#[derive(Clone)]
pub enum Guarded<S> {
    Open(S),
    Peers(ClientIdentity<S>),
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
            Self::Peers(inner) => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self {
            Self::Open(inner) => Box::pin(inner.call(request)),
            Self::Peers(inner) => Box::pin(inner.call(request)),
        }
    }
}
