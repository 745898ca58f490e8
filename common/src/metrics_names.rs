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
/// Gauge: age in seconds of the oldest unpublished outbox row the leading relay last read (0
/// when none is waiting, and on a replica that is not the leader).
pub const OUTBOX_OLDEST_UNPUBLISHED_SECONDS: &str = "tandem_outbox_oldest_unpublished_seconds";
/// Counter: published outbox rows deleted after the retention period.
pub const OUTBOX_PRUNED: &str = "tandem_outbox_pruned_total";
/// Counter: request ids (idempotent requests) deleted after their retention period.
pub const IDEMPOTENCY_PRUNED: &str = "tandem_idempotency_pruned_total";

/// Gauge: 1 when the service's database answered its last readiness check (every 2 s),
/// 0 when it did not.
pub const DATABASE_UP: &str = "tandem_database_up";

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
/// Counter: times the broker no longer held a partition's next offset (retention deleted
/// events the bridge had not read), so the bridge skipped to the oldest record it holds.
/// Labels: `topic`, `partition`.
pub const BRIDGE_OFFSET_RESETS: &str = "tandem_bridge_offset_resets_total";
/// Gauge: 1 while the bridge rests (after a quiet spell it pauses its partitions and watches
/// their end offsets instead of fetching; `consumer.rest_after_ms`), 0 while it fetches.
pub const BRIDGE_RESTING: &str = "tandem_bridge_resting";

/// Counter: gRPC calls a server answered. Labels: `method` (`/pkg.Service/Method` of a service
/// the port serves, else `unknown`), `code` (`OK`, `NOT_FOUND`, ...).
pub const GRPC_SERVER_CALLS: &str = "tandem_grpc_server_calls_total";
/// Histogram: seconds from a call's arrival to the end of its response. Labels: `method`.
pub const GRPC_SERVER_CALL_SECONDS: &str = "tandem_grpc_server_call_duration_seconds";
/// Gauge: the database pool's connections. Labels: `state` (`idle`, `in_use`).
pub const DB_POOL_CONNECTIONS: &str = "tandem_db_pool_connections";
/// Gauge: seconds the last sampled acquire of a pool connection waited (every 5 s): what a
/// call waits for a connection now.
pub const DB_POOL_ACQUIRE_SECONDS: &str = "tandem_db_pool_acquire_seconds";
/// Gauge: the most connections the database pool may open (`database.max_connections`).
pub const DB_POOL_MAX_CONNECTIONS: &str = "tandem_db_pool_max_connections";

/// What a metric measures, for its `# HELP` and `# TYPE` lines.
#[derive(Debug, Clone, Copy)]
pub struct Described {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: metrics::Unit,
    pub help: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric above, described. `/metrics` prints each one's HELP line once it has a value.
pub const ALL: &[Described] = &[
    d(
        GRPC_CALLS_SHED,
        Kind::Counter,
        metrics::Unit::Count,
        "gRPC calls refused with RESOURCE_EXHAUSTED because too many were in flight",
    ),
    d(
        GRPC_SERVER_CALLS,
        Kind::Counter,
        metrics::Unit::Count,
        "gRPC calls answered, by method and status code",
    ),
    d(
        GRPC_SERVER_CALL_SECONDS,
        Kind::Histogram,
        metrics::Unit::Seconds,
        "time from a gRPC call's arrival to the end of its response, by method",
    ),
    d(
        OUTBOX_PUBLISHED,
        Kind::Counter,
        metrics::Unit::Count,
        "outbox rows published to Kafka, by topic",
    ),
    d(
        OUTBOX_PUBLISH_FAILED,
        Kind::Counter,
        metrics::Unit::Count,
        "outbox publish attempts that failed, by topic",
    ),
    d(
        OUTBOX_LAG_SECONDS,
        Kind::Histogram,
        metrics::Unit::Seconds,
        "time from an outbox row's insert, in the writer's transaction, until the broker acknowledged it and the relay marked it published",
    ),
    d(
        OUTBOX_LEADER,
        Kind::Gauge,
        metrics::Unit::Count,
        "1 while this replica's outbox relay holds the leader lock",
    ),
    d(
        OUTBOX_OLDEST_UNPUBLISHED_SECONDS,
        Kind::Gauge,
        metrics::Unit::Seconds,
        "age of the oldest unpublished outbox row the leading relay last read (0: none, or not the leader)",
    ),
    d(
        OUTBOX_PRUNED,
        Kind::Counter,
        metrics::Unit::Count,
        "published outbox rows deleted after the retention period",
    ),
    d(
        IDEMPOTENCY_PRUNED,
        Kind::Counter,
        metrics::Unit::Count,
        "request ids deleted after idempotency.retention_hours",
    ),
    d(
        DATABASE_UP,
        Kind::Gauge,
        metrics::Unit::Count,
        "1 when the service's database answered its last readiness check",
    ),
    d(
        DB_POOL_CONNECTIONS,
        Kind::Gauge,
        metrics::Unit::Count,
        "database pool connections, by state (idle, in_use)",
    ),
    d(
        DB_POOL_ACQUIRE_SECONDS,
        Kind::Gauge,
        metrics::Unit::Seconds,
        "seconds the last sampled acquire of a database pool connection waited",
    ),
    d(
        DB_POOL_MAX_CONNECTIONS,
        Kind::Gauge,
        metrics::Unit::Count,
        "the most connections the database pool may open",
    ),
    d(
        BRIDGE_EVENTS_APPLIED,
        Kind::Counter,
        metrics::Unit::Count,
        "events the bridge applied, by type and outcome (applied, unchanged)",
    ),
    d(
        BRIDGE_EVENTS_RETRIED,
        Kind::Counter,
        metrics::Unit::Count,
        "attempts the bridge retried after a transient failure, by type",
    ),
    d(
        BRIDGE_EVENTS_DEAD_LETTERED,
        Kind::Counter,
        metrics::Unit::Count,
        "events sent to the dead-letter topic, by type and reason",
    ),
    d(
        BRIDGE_CONSUMER_LAG,
        Kind::Gauge,
        metrics::Unit::Count,
        "messages between the bridge's position and the end of the partition, by topic and partition",
    ),
    d(
        BRIDGE_OLDEST_UNAPPLIED_SECONDS,
        Kind::Gauge,
        metrics::Unit::Seconds,
        "age of the oldest event received and not yet applied, by topic and partition (0: none)",
    ),
    d(
        BRIDGE_COMMIT_TO_APPLY_SECONDS,
        Kind::Histogram,
        metrics::Unit::Seconds,
        "time from an event's occurred_at to its effect applied in the other service, by flow",
    ),
    d(
        BRIDGE_TARGET_UP,
        Kind::Gauge,
        metrics::Unit::Count,
        "1 while the bridge reaches a target (crm, erp: SERVING; broker: metadata answered)",
    ),
    d(
        BRIDGE_REJOINS,
        Kind::Counter,
        metrics::Unit::Count,
        "times the bridge left its consumer group and joined again after holding no partition too long",
    ),
    d(
        BRIDGE_OFFSET_RESETS,
        Kind::Counter,
        metrics::Unit::Count,
        "times the broker no longer held a partition's next offset, so unread events were skipped",
    ),
    d(
        BRIDGE_RESTING,
        Kind::Gauge,
        metrics::Unit::Count,
        "1 while the bridge rests after a quiet spell (partitions paused, end offsets watched)",
    ),
];

const fn d(name: &'static str, kind: Kind, unit: metrics::Unit, help: &'static str) -> Described {
    Described {
        name,
        kind,
        unit,
        help,
    }
}

/// Registers every metric's unit and description with the installed recorder.
pub fn describe_all() {
    for metric in ALL {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.unit, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.unit, metric.help),
            Kind::Histogram => {
                metrics::describe_histogram!(metric.name, metric.unit, metric.help);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `pub const NAME: &str = "tandem_…"` of this file is described exactly once, with
    /// the conventions Prometheus expects (counters end in `_total`, seconds in `_seconds`).
    #[test]
    fn every_metric_is_described_once_and_named_by_convention() {
        let source = include_str!("metrics_names.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub const "))
            .filter_map(|rest| rest.split_once(": &str = \""))
            .filter_map(|(_, value)| value.split_once('"'))
            .map(|(name, _)| name)
            .collect();
        assert!(declared.len() >= 20, "{declared:?}");
        for name in &declared {
            let described: Vec<_> = ALL.iter().filter(|m| m.name == *name).collect();
            assert_eq!(
                described.len(),
                1,
                "{name} described {} times",
                described.len()
            );
            let metric = described[0];
            assert!(name.starts_with("tandem_"), "{name}");
            assert_eq!(
                metric.kind == Kind::Counter,
                name.ends_with("_total"),
                "{name}: counters, and only counters, end in _total"
            );
            if metric.unit == metrics::Unit::Seconds {
                assert!(
                    name.ends_with("_seconds"),
                    "{name}: in seconds, so ends in _seconds"
                );
            }
            assert!(!metric.help.is_empty(), "{name}");
        }
        assert_eq!(
            ALL.len(),
            declared.len(),
            "ALL describes a metric not declared here"
        );
    }

    /// The runbook's metrics table names every metric, so operators can look each one up.
    #[test]
    fn the_runbook_documents_every_metric() {
        let runbook = include_str!("../../docs/runbook.md");
        let table = runbook
            .split("## Metrics")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        for metric in ALL {
            assert!(
                table.contains(&format!("| `{}` |", metric.name)),
                "docs/runbook.md, Metrics: no row for {}",
                metric.name
            );
        }
    }
}
