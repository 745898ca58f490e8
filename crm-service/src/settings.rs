//! CRM settings: defaults < file named by `CRM_CONFIG` < `CRM__*` environment variables.

use serde::{Deserialize, Serialize};
use tandem_common::{
    auth::AuthSettings,
    host::GrpcSettings,
    idempotency::IdempotencySettings,
    kafka::KafkaSettings,
    outbox::OutboxSettings,
    settings::{self, DatabaseSettings, ListenSettings, SettingsError},
    telemetry::TelemetrySettings,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// The public API (frontends): `tandem.crm.v1.CrmService`.
    pub grpc: GrpcSettings,
    /// The internal sync API (the bridge and `tandemctl`): `tandem.crm.v1.CrmSync`, and the
    /// public API for those callers, on a port of its own.
    pub sync: GrpcSettings,
    /// Admin HTTP listener (/metrics, /healthz, /readyz).
    pub http: ListenSettings,
    /// Bearer tokens on the public API: issuer, audience and the keys that sign them.
    pub auth: AuthSettings,
    /// File holding the secret that signs page tokens (at least 16 bytes; every replica must
    /// share it, or a token from one is refused by another). Empty: a random key per process,
    /// so page tokens do not survive a restart.
    pub page_token_key_file: String,
    pub database: DatabaseSettings,
    pub kafka: KafkaSettings,
    pub outbox: OutboxSettings,
    /// How long request ids of idempotent calls are honoured, and their pruning.
    pub idempotency: IdempotencySettings,
    pub telemetry: TelemetrySettings,
    /// Longest wait for in-flight calls and the outbox to drain at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc: GrpcSettings::public(50051),
            sync: GrpcSettings::internal(50061),
            auth: AuthSettings::default(),
            page_token_key_file: String::new(),
            http: ListenSettings::loopback(9101),
            database: DatabaseSettings {
                url: "postgres://postgres@127.0.0.1:55432/crm".to_owned(),
                ..DatabaseSettings::default()
            },
            kafka: KafkaSettings::default(),
            outbox: OutboxSettings::default(),
            idempotency: IdempotencySettings::default(),
            telemetry: TelemetrySettings::default(),
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, SettingsError> {
        settings::load("CRM")
    }
}
