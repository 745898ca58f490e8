//! Dead letters with a lifecycle, on a real broker: `tandemctl dlq` replays a dead letter once
//! (twice only when asked), never replays a resolved or purged one, says how far it read and
//! never stops reading silently, and a replay interrupted by a crash (before or after its
//! publish) is neither lost nor published twice.
//!
//! Only the broker runs here (the dlq commands are Kafka-only). The dead letters are written
//! as the bridge writes them (the documented `dlq.*` headers, the original key, payload and
//! headers), of events first published to their source topic, so that their source positions
//! are real; the bridge's own dead letters go through the same commands in
//! `bridge_delivery.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use serde_json::json;
use tandem_proto::events::topics;
use tandem_tests::{Record, TestBroker, evidence::read_until_markers, produce};

/// A broker with the source and dead-letter topics (the state topic is left for tandemctl to
/// create, as it does where `kafka.create_topics` is on).
async fn broker() -> TestBroker {
    let broker = TestBroker::start().await.unwrap();
    broker
        .kafka_settings()
        .ensure_topics(&[topics::CRM_CUSTOMERS, topics::DEAD_LETTER])
        .await
        .unwrap();
    broker
}

/// Publishes a customer event to `crm.customers`, then its dead letter as the bridge would
/// (reason schema_invalid). Returns the dead letter's id: the event's source position.
async fn dead_letter(broker: &TestBroker, key: &str) -> String {
    let event = json!({
        "id": uuid::Uuid::now_v7(),
        "type": "crm.customer.upserted",
        "schema_version": 1,
        "source": "crm",
        "aggregate_type": "customer",
        "aggregate_id": key,
        "aggregate_version": 1,
        "occurred_at": "2026-11-26T10:00:00.000000Z",
        "data": {"customer_id": key, "status": "SLEEPING"}
    })
    .to_string();
    let traceparent = (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    let (partition, offset) = produce(
        &broker.brokers,
        topics::CRM_CUSTOMERS,
        Some(key),
        event.as_bytes(),
        &[traceparent],
    )
    .await
    .unwrap();
    let (partition_text, offset_text) = (partition.to_string(), offset.to_string());
    let failed_at = chrono_now();
    produce(
        &broker.brokers,
        topics::DEAD_LETTER,
        Some(key),
        event.as_bytes(),
        &[
            traceparent,
            ("dlq.reason", "schema_invalid"),
            ("dlq.error_code", "SCHEMA_INVALID"),
            ("dlq.detail", "data invalid: status"),
            ("dlq.source_topic", topics::CRM_CUSTOMERS),
            ("dlq.source_partition", &partition_text),
            ("dlq.source_offset", &offset_text),
            ("dlq.failed_at", &failed_at),
        ],
    )
    .await
    .unwrap();
    format!("{}/{partition}/{offset}", topics::CRM_CUSTOMERS)
}

fn chrono_now() -> String {
    // RFC 3339 without pulling chrono into the test kit.
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Runs tandemctl against `broker`, with `failpoints` armed (`FAILPOINTS`) when given.
fn ctl_with(broker: &TestBroker, failpoints: Option<&str>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(tandem_tests::binary("tandemctl"));
    command
        .envs(broker.service_env("BRIDGE"))
        .env("USER", "test-operator")
        .env_remove("FAILPOINTS")
        .args(args);
    if let Some(failpoints) = failpoints {
        command.env("FAILPOINTS", failpoints);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs tandemctl; fails the test unless it exits 0. Returns standard output.
fn ctl(broker: &TestBroker, args: &[&str]) -> String {
    let output = ctl_with(broker, None, args);
    assert!(
        output.status.success(),
        "tandemctl {args:?} failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `N dead letter(s) shown` count of a `dlq list` output.
fn shown(listing: &str) -> usize {
    listing
        .lines()
        .find_map(|line| line.split_once(" dead letter(s) shown")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no count in:\n{listing}"))
}

/// The replays published to `crm.customers` (records with a `tandem.replays` header; the
/// originals have none).
async fn replays(broker: &TestBroker) -> Vec<Record> {
    read_until_markers(&broker.brokers, topics::CRM_CUSTOMERS)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.header("tandem.replays").is_some())
        .collect()
}

#[tokio::test]
async fn a_replayed_dead_letter_is_replayed_once_unless_asked_again() {
    let broker = broker().await;
    let key = uuid::Uuid::now_v7().to_string();
    let id = dead_letter(&broker, &key).await;

    let first = ctl(&broker, &["dlq", "replay"]);
    let second = ctl(&broker, &["dlq", "replay"]);
    let published = replays(&broker).await;
    assert_eq!(
        published.len(),
        1,
        "two replays published the dead letter {} times:\n{first}\n{second}",
        published.len()
    );
    assert!(first.starts_with("1 replayed, 0 refused"), "{first}");
    assert!(
        second.starts_with("0 replayed, 0 refused") && second.contains("1 already replayed"),
        "{second}"
    );
    // The replay went back where the event came from, with its key, payload and headers
    // (the dlq.* ones removed), counted and named.
    let replay = &published[0];
    assert_eq!(replay.key.as_deref(), Some(key.as_str()));
    assert_eq!(format!("{}/{}", topics::CRM_CUSTOMERS, replay.partition), {
        let (topic_partition, _) = id.rsplit_once('/').unwrap();
        topic_partition.to_owned()
    });
    assert_eq!(replay.header("tandem.replays"), Some("1"));
    assert!(replay.header("traceparent").is_some());
    assert!(replay.headers.iter().all(|(k, _)| !k.starts_with("dlq.")));

    // No longer open; --all and --state show it, with who replayed it and where to.
    let open = ctl(&broker, &["dlq", "list"]);
    assert_eq!(shown(&open), 0, "{open}");
    assert!(open.contains("open 0, replaying 0, replayed 1"), "{open}");
    let all = ctl(&broker, &["dlq", "list", "--all"]);
    assert_eq!(shown(&all), 1, "{all}");
    let line = all.lines().find(|l| l.starts_with(&id)).expect(&all);
    assert!(line.contains("replayed"), "{line}");
    assert!(line.contains("by test-operator, replayed 1x"), "{line}");
    assert!(
        line.contains(&format!(
            "last replay at {}/{}/{}",
            topics::CRM_CUSTOMERS,
            replay.partition,
            replay.offset
        )),
        "{line}"
    );
    assert_eq!(
        shown(&ctl(&broker, &["dlq", "list", "--state", "replayed"])),
        1
    );

    // Asked again: one more publish, counted as the event's second replay.
    let again = ctl(&broker, &["dlq", "replay", "--again"]);
    assert!(again.starts_with("1 replayed"), "{again}");
    let published = replays(&broker).await;
    assert_eq!(published.len(), 2);
    assert_eq!(published[1].header("tandem.replays"), Some("2"));
    assert_ne!(
        published[0].header("tandem.replay_id"),
        published[1].header("tandem.replay_id")
    );
    // The loop guard counts both: a third is refused at --max-replays 2.
    let guarded = ctl(&broker, &["dlq", "replay", "--again", "--max-replays", "2"]);
    assert!(guarded.starts_with("0 replayed, 1 refused"), "{guarded}");
    assert_eq!(replays(&broker).await.len(), 2);
}

#[tokio::test]
async fn resolved_and_purged_dead_letters_are_not_open_and_never_replayed() {
    let broker = broker().await;
    let resolved = dead_letter(&broker, "customer-resolved").await;
    let purged = dead_letter(&broker, "customer-purged").await;
    let open = dead_letter(&broker, "customer-open").await;

    let resolve = ctl(
        &broker,
        &[
            "dlq",
            "resolve",
            "--id",
            &resolved,
            "--note",
            "fixed in the CRM by hand",
        ],
    );
    let purge = ctl(&broker, &["dlq", "purge", "--key", "customer-purged"]);
    let replay = ctl(&broker, &["dlq", "replay"]);
    let published = replays(&broker).await;
    assert_eq!(
        published
            .iter()
            .map(|r| r.key.as_deref().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["customer-open"],
        "only the open dead letter may be replayed:\n{resolve}\n{purge}\n{replay}"
    );
    assert!(
        resolve.starts_with("1 resolved, 0 resolved already"),
        "{resolve}"
    );
    assert!(purge.starts_with("1 purged, 0 purged already"), "{purge}");
    assert!(
        replay.starts_with("1 replayed") && replay.contains("2 resolved or purged"),
        "{replay}"
    );

    // Listings: the default shows open ones (none left), --state and --all the others.
    assert_eq!(shown(&ctl(&broker, &["dlq", "list"])), 0);
    let resolved_list = ctl(&broker, &["dlq", "list", "--state", "resolved"]);
    assert_eq!(shown(&resolved_list), 1, "{resolved_list}");
    assert!(
        resolved_list.contains("by test-operator: fixed in the CRM by hand"),
        "{resolved_list}"
    );
    assert!(resolved_list.contains(&resolved), "{resolved_list}");
    let all = ctl(&broker, &["dlq", "list", "--all"]);
    assert_eq!(shown(&all), 3, "{all}");
    assert!(
        all.contains("open 0, replaying 0, replayed 1, resolved 1, purged 1"),
        "{all}"
    );
    assert!(all.contains(&purged) && all.contains(&open), "{all}");

    // Idempotent: again changes nothing; a purged one is not resolved; a note is required.
    let twice = ctl(
        &broker,
        &["dlq", "resolve", "--id", &resolved, "--note", "again"],
    );
    assert!(
        twice.starts_with("0 resolved, 1 resolved already"),
        "{twice}"
    );
    let on_purged = ctl(&broker, &["dlq", "resolve", "--id", &purged, "--note", "x"]);
    assert!(
        on_purged.starts_with("0 resolved") && on_purged.contains("1 purged (left alone)"),
        "{on_purged}"
    );
    let no_note = ctl_with(&broker, None, &["dlq", "resolve", "--id", &open]);
    assert!(!no_note.status.success(), "{}", text(&no_note));
    let blank = ctl_with(
        &broker,
        None,
        &["dlq", "resolve", "--id", &open, "--note", " "],
    );
    assert!(!blank.status.success(), "{}", text(&blank));
    assert!(text(&blank).contains("--note"), "{}", text(&blank));
    let everything = ctl_with(&broker, None, &["dlq", "resolve", "--note", "all of them"]);
    assert!(!everything.status.success(), "{}", text(&everything));
    assert!(
        ctl(&broker, &["dlq", "list", "--all"]).contains("resolved 1, purged 1"),
        "refused commands changed states"
    );
}

#[tokio::test]
async fn list_reports_how_far_it_read_and_never_stops_silently() {
    let broker = broker().await;
    for key in ["customer-a", "customer-b", "customer-c"] {
        dead_letter(&broker, key).await;
    }

    let full = ctl(&broker, &["dlq", "list"]);
    assert_eq!(shown(&full), 3, "{full}");
    assert!(
        full.contains("read tandem.dead-letter: 3 records, offsets 3 of 3, to the end offsets"),
        "{full}"
    );

    let limited = ctl_with(&broker, None, &["dlq", "list", "--limit", "1"]);
    let limited_text = text(&limited);
    assert!(!limited.status.success(), "{limited_text}");
    assert!(
        limited_text.contains(
            "read tandem.dead-letter: 1 records, offsets 1 of 3, INCOMPLETE: stopped at the limit of 1 records"
        ),
        "{limited_text}"
    );
    assert!(limited_text.contains("incomplete read"), "{limited_text}");

    let timed_out = ctl_with(&broker, None, &["dlq", "list", "--timeout-s", "0"]);
    let timed_out_text = text(&timed_out);
    assert!(!timed_out.status.success(), "{timed_out_text}");
    assert!(
        timed_out_text.contains("offsets 0 of 3, INCOMPLETE: stopped at the time limit of 0 s"),
        "{timed_out_text}"
    );

    // A command that changes states refuses to act on a partial read of the states.
    ctl(
        &broker,
        &["dlq", "resolve", "--key", "customer-a", "--note", "done"],
    );
    let blind = ctl_with(&broker, None, &["dlq", "replay", "--timeout-s", "0"]);
    assert!(!blind.status.success(), "{}", text(&blind));
    assert!(
        text(&blind).contains("state topic was not read to its end"),
        "{}",
        text(&blind)
    );
    assert!(replays(&broker).await.is_empty());
}

#[tokio::test]
async fn a_replay_interrupted_after_its_publish_is_recorded_not_published_again() {
    let broker = broker().await;
    let id = dead_letter(&broker, "customer-crash").await;

    let crashed = ctl_with(
        &broker,
        Some("tandemctl-replay-after-publish=return"),
        &["dlq", "replay"],
    );
    let next = ctl_with(&broker, None, &["dlq", "replay"]);
    let published = replays(&broker).await;
    assert_eq!(
        published.len(),
        1,
        "a crash between the publish and its record led to {} publishes:\n{}\n{}",
        published.len(),
        text(&crashed),
        text(&next)
    );
    assert!(!crashed.status.success(), "{}", text(&crashed));
    let next = text(&next);
    assert!(
        next.starts_with("0 replayed, 0 refused") && next.contains("1 recovered"),
        "{next}"
    );
    let all = ctl(&broker, &["dlq", "list", "--all"]);
    let line = all.lines().find(|l| l.starts_with(&id)).expect(&all);
    assert!(line.contains("replayed 1x"), "{line}");
    assert!(
        line.contains(&format!("last replay at {}/", topics::CRM_CUSTOMERS)),
        "{line}"
    );
    assert!(ctl(&broker, &["dlq", "replay"]).contains("1 already replayed"));
    assert_eq!(replays(&broker).await.len(), 1);
}

#[tokio::test]
async fn a_replay_interrupted_before_its_publish_is_published_by_the_next_run() {
    let broker = broker().await;
    let id = dead_letter(&broker, "customer-early-crash").await;

    let crashed = ctl_with(
        &broker,
        Some("tandemctl-replay-after-intent=return"),
        &["dlq", "replay"],
    );
    assert!(!crashed.status.success(), "{}", text(&crashed));
    assert!(
        replays(&broker).await.is_empty(),
        "published before the crash"
    );
    // Not settled: listed by default, as an interrupted replay.
    let open = ctl(&broker, &["dlq", "list"]);
    let line = open.lines().find(|l| l.starts_with(&id)).expect(&open);
    assert!(line.contains("replaying"), "{line}");
    // A dry run does not settle it.
    let dry = ctl(&broker, &["dlq", "replay", "--dry-run"]);
    assert!(dry.contains("1 interrupted replays not settled"), "{dry}");

    let next = ctl(&broker, &["dlq", "replay"]);
    assert!(
        next.starts_with("1 replayed") && next.contains("0 recovered"),
        "{next}"
    );
    assert_eq!(replays(&broker).await.len(), 1);
    assert!(ctl(&broker, &["dlq", "replay"]).contains("1 already replayed"));
    assert_eq!(replays(&broker).await.len(), 1);
}
