//! Bridge settings: defaults < file named by `BRIDGE_CONFIG` < `BRIDGE__*` environment variables.

use serde::{Deserialize, Serialize};
use tandem_common::{
    backoff::BackoffSettings,
    host::GrpcSettings,
    kafka::KafkaSettings,
    settings::{self, ListenSettings, SettingsError},
    telemetry::TelemetrySettings,
    tls::ClientTlsSettings,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// gRPC listener (health and reflection).
    pub grpc: GrpcSettings,
    /// Admin HTTP listener (/metrics, /healthz, /readyz).
    pub http: ListenSettings,
    pub kafka: KafkaSettings,
    pub consumer: ConsumerSettings,
    /// The ERP's internal sync port (ErpSync, and ErpService for the bridge).
    pub erp: EndpointSettings,
    /// The CRM's internal sync port (CrmSync, and CrmService for the bridge).
    pub crm: EndpointSettings,
    pub telemetry: TelemetrySettings,
    /// Longest wait for the event in hand to finish at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConsumerSettings {
    /// Consumer group id; every bridge replica uses the same one.
    pub group_id: String,
    /// Static group membership (`group.instance.id`): a stable name per replica (e.g. the
    /// pod name of a StatefulSet). A restarted replica then takes its old place at once
    /// instead of waiting for the group to expire the dead member. Empty: dynamic membership.
    pub instance_id: String,
    /// How partitions are shared out: `group` (the broker's group coordinator balances them
    /// over the replicas) or `all` (this process assigns itself every partition of the
    /// source topics and resumes from the group's committed offsets). `all` is for a single
    /// replica only: two replicas in `all` mode would apply every event twice (harmlessly for
    /// version-gated flows, but twice the load). It needs no group coordination, so a
    /// replica killed with SIGKILL resumes at once even with a broker that never expires
    /// crashed members (the local one). Partitions added to a topic later are picked up at
    /// the next start.
    pub assignment: Assignment,
    /// In `group` mode, how long the bridge may hold no partition of its source topics
    /// before it leaves the group and joins again as a new member, in milliseconds. From
    /// the first moment it holds none it also reports not ready (`no partitions assigned`).
    /// A group whose broker never expires a crashed member (the local one) can keep the
    /// partitions with that member; a fresh join makes the coordinator rebalance. 0: never
    /// rejoin.
    pub rejoin_after_ms: u64,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch. Keep it low for the local
    /// broker, which always waits this long; Apache Kafka answers as soon as data arrives.
    pub fetch_wait_max_ms: u32,
    /// After this long with no event (and every partition drained), the bridge rests: it
    /// pauses its partitions and reads their end offsets every `rest_check_ms` instead of
    /// fetching, and fetches again once one moves. The local broker works through every
    /// partition on every fetch, so an idle bridge fetching kept it at a full core. 0: never
    /// rest (Apache Kafka holds an empty fetch until data arrives, so resting saves little).
    pub rest_after_ms: u64,
    /// How often a resting bridge reads the partitions' end offsets: the most the first
    /// event after a quiet spell waits before it is fetched. 0: never rest.
    pub rest_check_ms: u64,
    /// How often stored offsets are committed, in milliseconds (also on rebalance and
    /// shutdown).
    pub commit_interval_ms: u32,
    /// `session.timeout.ms` of the consumer group.
    pub session_timeout_ms: u32,
    /// The dead-letter topic.
    pub dead_letter_topic: String,
    /// Retry delays for transient failures (target down, broker errors).
    pub retry: BackoffSettings,
    /// Tries of an event whose dependency is missing (an order whose customer the ERP lacks
    /// even after healing, a status for an order the CRM does not know) before the last try,
    /// which records the failure (the ERP rejects the order) or dead-letters the event.
    pub dependency_attempts: u32,
    /// Most events of a batching flow (stock levels) applied in one call.
    pub batch_max: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Assignment {
    #[default]
    Group,
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EndpointSettings {
    /// e.g. `https://127.0.0.1:50062`.
    pub url: String,
    /// Deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// TLS to the service's internal port: its CA, and this process's client certificate
    /// (the identity the service lets in: `sync-bridge`, or `tandemctl` for the CLI).
    pub tls: ClientTlsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grpc: GrpcSettings::loopback(50053),
            http: ListenSettings::loopback(9103),
            kafka: KafkaSettings::default(),
            consumer: ConsumerSettings::default(),
            erp: EndpointSettings {
                url: "https://127.0.0.1:50062".to_owned(),
                timeout_ms: 5_000,
                tls: EndpointSettings::mutual_tls(),
            },
            crm: EndpointSettings {
                url: "https://127.0.0.1:50061".to_owned(),
                timeout_ms: 5_000,
                tls: EndpointSettings::mutual_tls(),
            },
            telemetry: TelemetrySettings::default(),
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "tandem-sync-bridge".to_owned(),
            instance_id: String::new(),
            assignment: Assignment::Group,
            rejoin_after_ms: 60_000,
            fetch_wait_max_ms: 10,
            rest_after_ms: 2_000,
            rest_check_ms: 500,
            commit_interval_ms: 1_000,
            session_timeout_ms: 10_000,
            dead_letter_topic: tandem_proto::events::topics::DEAD_LETTER.to_owned(),
            retry: BackoffSettings::default(),
            dependency_attempts: 5,
            batch_max: 500,
        }
    }
}

impl EndpointSettings {
    /// TLS on, files still to be named: the services' internal ports take nothing else.
    fn mutual_tls() -> ClientTlsSettings {
        ClientTlsSettings {
            enabled: true,
            ..ClientTlsSettings::default()
        }
    }
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 5_000,
            tls: ClientTlsSettings::default(),
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, SettingsError> {
        settings::load("BRIDGE")
    }
}
