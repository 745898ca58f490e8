//! gRPC server bootstrap and the mapping of shared failure kinds to `tonic::Status`.

use std::{collections::HashMap, fmt::Display, time::Duration};

use crate::validation::FieldViolation;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Server};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    admin_http::Readiness,
    call_metrics::KnownServices,
    host::{GrpcSettings, GrpcSurface},
    limits::LimitsLayer,
    telemetry::{GrpcTraceLayer, InFlight},
    tls::ReloadingServerConfig,
};

/// How often the health service re-reads readiness.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Errors starting or running the gRPC server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the surface's routes (which may be empty) plus `grpc.health.v1.Health` and, when
/// the port's settings ask for it, server reflection on `listener`, within the port's limits.
///
/// The surface's `services` are the fully-qualified names reported SERVING by the health
/// service. When `shutdown` is cancelled they flip to NOT_SERVING, new connections stop, and
/// in-flight calls drain before this returns.
pub async fn serve(
    listener: TcpListener,
    settings: &GrpcSettings,
    tls: Option<ReloadingServerConfig>,
    surface: GrpcSurface,
    readiness: Readiness,
    in_flight: InFlight,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let GrpcSurface {
        mut routes,
        services,
        descriptor_sets,
        guard,
    } = surface;
    let (health, health_service) = tonic_health::server::health_reporter();
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    // The services whose methods may name a metric label.
    let reflection_names = [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    let known = KnownServices::new(
        names
            .iter()
            .map(String::as_str)
            .chain(["grpc.health.v1.Health"])
            .chain(reflection_names.into_iter().filter(|_| settings.reflection)),
    );
    tokio::spawn(follow_readiness(
        health.clone(),
        names.clone(),
        readiness,
        shutdown.clone(),
    ));
    // Both reflection versions: grpcurl speaks v1, many older clients only v1alpha. Only the
    // services this port serves are advertised (a package's descriptors hold them all).
    let reflection = || {
        let builder = descriptor_sets.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection"),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        );
        services
            .iter()
            .fold(builder, |builder, name| builder.with_service_name(*name))
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let drained = async move {
        shutdown.cancelled().await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in names {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };
    routes.add_service(health_service);
    if settings.reflection {
        routes
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
    }
    let router = Server::builder()
        .layer(GrpcTraceLayer::new(in_flight, known))
        .layer(LimitsLayer::new(&settings.limits))
        .layer(guard)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_routes(routes.routes());
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), drained)
                .await?
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), drained)
                .await?
        }
    }
    Ok(())
}

/// Keeps `health` saying what `readiness` says, for `""` and each of `names`: checked every
/// `HEALTH_INTERVAL` (2 s), until `stop` (whoever stops the server then flips everything to
/// NOT_SERVING for good). Spawn it beside the server that serves `health`.
pub async fn follow_readiness(
    health: HealthReporter,
    names: Vec<String>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let mut last = None;
    loop {
        let serving = readiness.check().await.is_ok();
        if last != Some(serving) && !stop.is_cancelled() {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            for name in &names {
                health.set_service_status(name, status).await;
            }
            last = Some(serving);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

/// INVALID_ARGUMENT with a `google.rpc.BadRequest` detail listing every violation.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let message = format!("invalid request: {}", fields.join(", "));
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// FAILED_PRECONDITION: with a `reason`, carrying the `google.rpc.ErrorInfo` of
/// [`failed_precondition_info`]; without, the message alone.
pub fn failed_precondition<K: Into<String>>(
    message: impl Into<String>,
    domain: &str,
    reason: Option<&str>,
    metadata: impl IntoIterator<Item = (K, String)>,
) -> Status {
    match reason {
        Some(reason) => failed_precondition_info(message, domain, reason, metadata),
        None => Status::failed_precondition(message),
    }
}

/// FAILED_PRECONDITION with a `google.rpc.ErrorInfo` detail: a machine-readable `reason` (e.g.
/// `UNKNOWN_CUSTOMER`) in the service's error `domain` (e.g. `tandem.crm`), plus `metadata`,
/// so callers can act on the failure without parsing the message.
pub fn failed_precondition_info<K: Into<String>>(
    message: impl Into<String>,
    domain: &str,
    reason: &str,
    metadata: impl IntoIterator<Item = (K, String)>,
) -> Status {
    let metadata: HashMap<String, String> = metadata
        .into_iter()
        .map(|(key, value)| (key.into(), value))
        .collect();
    Status::with_error_details(
        Code::FailedPrecondition,
        message.into(),
        ErrorDetails::with_error_info(reason, domain, metadata),
    )
}

/// INTERNAL for a failure the caller cannot act on: `error` is logged under `context`, never
/// returned.
pub fn internal(context: &str, error: &dyn Display) -> Status {
    tracing::error!(%error, "{context}");
    Status::internal("internal error")
}

/// Maps a database failure: unreachable becomes UNAVAILABLE (clients retry), anything else
/// INTERNAL. Details are logged, never returned.
#[cfg(feature = "database")]
pub fn database_status(error: &sqlx::Error) -> Status {
    if crate::db::is_unavailable(error) {
        tracing::warn!(%error, "database unavailable");
        Status::unavailable("database unavailable, retry later")
    } else {
        tracing::error!(%error, "database error");
        Status::internal("internal error")
    }
}

/// A `google.protobuf.Timestamp` for `at`.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Is this status worth retrying (the callee or the network is temporarily unable)?
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown
            | Code::Cancelled
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_lists_every_field() {
        let status = invalid_argument(&[
            FieldViolation::new("customer.email", "not an e-mail address"),
            FieldViolation::new("customer.display_name", "required"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("customer.email"));
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request detail");
        assert_eq!(bad_request.field_violations.len(), 2);
        assert_eq!(bad_request.field_violations[0].field, "customer.email");
    }

    #[test]
    fn failed_precondition_info_carries_domain_reason_and_metadata() {
        let metadata = HashMap::from([("sku".to_owned(), "W-1".to_owned())]);
        let status = failed_precondition_info("no", "tandem.test", "UNKNOWN_SKU", metadata.clone());
        assert_eq!(
            (status.code(), status.message()),
            (Code::FailedPrecondition, "no")
        );
        let info = status.get_error_details().error_info().cloned();
        let (domain, reason, got) = info
            .map(|i| (i.domain, i.reason, i.metadata))
            .expect("ErrorInfo detail");
        assert_eq!(
            (domain.as_str(), reason.as_str()),
            ("tandem.test", "UNKNOWN_SKU")
        );
        assert_eq!(got, metadata);
    }

    #[test]
    fn internal_hides_the_detail() {
        let status = internal("event encoding failed", &"secret detail");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn transient_codes() {
        assert!(is_transient(&Status::unavailable("x")));
        assert!(is_transient(&Status::deadline_exceeded("x")));
        assert!(!is_transient(&Status::invalid_argument("x")));
        assert!(!is_transient(&Status::not_found("x")));
    }
}
