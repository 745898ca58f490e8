//! ERP settings: defaults < file named by `ERP_CONFIG` < `ERP__*` environment variables.

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

use crate::finance::FinanceDefaults;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// The public API (frontends): `tandem.erp.v1.ErpService`.
    pub grpc: GrpcSettings,
    /// The internal sync API (the bridge and `tandemctl`): `tandem.erp.v1.ErpSync`, and the
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
    /// Credit terms of customers finance has not set terms for (`ERP__FINANCE__*`).
    pub finance: FinanceDefaults,
    /// Longest wait for in-flight calls and the outbox to drain at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc: GrpcSettings::public(50052),
            sync: GrpcSettings::internal(50062),
            auth: AuthSettings::default(),
            page_token_key_file: String::new(),
            http: ListenSettings::loopback(9102),
            database: DatabaseSettings {
                url: "postgres://postgres@127.0.0.1:55432/erp".to_owned(),
                ..DatabaseSettings::default()
            },
            kafka: KafkaSettings::default(),
            outbox: OutboxSettings::default(),
            idempotency: IdempotencySettings::default(),
            telemetry: TelemetrySettings::default(),
            finance: FinanceDefaults::default(),
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, SettingsError> {
        settings::load("ERP")
    }
}
