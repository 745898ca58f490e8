//! Every metric name Tandem exports, in one place.

/// Histogram buckets for latencies, in seconds (1 ms .. 10 s).
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Counter: gRPC calls refused with RESOURCE_EXHAUSTED because too many were in flight.
pub const GRPC_CALLS_SHED: &str = "tandem_grpc_calls_shed_total";

/// Counter: outbox rows published to Kafka. Labels: `topic`.
pub const OUTBOX_PUBLISHED: &str = "tandem_outbox_published_total";
/// Counter: outbox publish attempts that failed. Labels: `topic`.
pub const OUTBOX_PUBLISH_FAILED: &str = "tandem_outbox_publish_failed_total";
/// Histogram: seconds from the outbox row's commit to the broker's ack.
pub const OUTBOX_LAG_SECONDS: &str = "tandem_outbox_publish_lag_seconds";
/// Gauge: 1 while this replica's relay holds the leader lock.
pub const OUTBOX_LEADER: &str = "tandem_outbox_relay_leader";
/// Counter: published outbox rows deleted after the retention period.
pub const OUTBOX_PRUNED: &str = "tandem_outbox_pruned_total";
/// Counter: request ids (idempotent requests) deleted after their retention period.
pub const IDEMPOTENCY_PRUNED: &str = "tandem_idempotency_pruned_total";

/// Counter: events the bridge applied. Labels: `type`, `outcome` (`applied`, `unchanged`).
pub const BRIDGE_EVENTS_APPLIED: &str = "tandem_bridge_events_applied_total";
/// Counter: attempts the bridge retried after a transient failure. Labels: `type`.
pub const BRIDGE_EVENTS_RETRIED: &str = "tandem_bridge_events_retried_total";
/// Counter: events sent to the dead-letter topic. Labels: `type`, `reason`.
pub const BRIDGE_EVENTS_DEAD_LETTERED: &str = "tandem_bridge_events_dead_lettered_total";
/// Gauge: messages between the bridge's position and the partition's end. Labels: `topic`,
/// `partition`.
pub const BRIDGE_CONSUMER_LAG: &str = "tandem_bridge_consumer_lag";
/// Gauge: age in seconds of the oldest event the bridge has received but not yet applied.
pub const BRIDGE_OLDEST_UNAPPLIED_SECONDS: &str = "tandem_bridge_oldest_unapplied_seconds";
/// Histogram: seconds from the event's `occurred_at` to its effect being applied. Labels: `flow`.
pub const BRIDGE_COMMIT_TO_APPLY_SECONDS: &str = "tandem_bridge_commit_to_apply_seconds";
/// Gauge: 1 while the bridge last found a target reachable (the service's internal port
/// answering SERVING, or the broker answering metadata), 0 otherwise. Labels: `target`
/// (`crm`, `erp`, `broker`).
pub const BRIDGE_TARGET_UP: &str = "tandem_bridge_target_up";
/// Counter: times the bridge left its consumer group and joined again after holding no
/// partition for `consumer.rejoin_after_ms`.
pub const BRIDGE_REJOINS: &str = "tandem_bridge_rejoins_total";
