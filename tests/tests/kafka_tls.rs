//! Kafka security against the real broker: tansu behind stunnel (TLS), with and without SASL
//! SCRAM-SHA-512, reached by clients built from Tandem's own [`KafkaSettings`].
//!
//! - a client that trusts the broker's CA produces and consumes over TLS, also after the
//!   broker restarts behind the same TLS front; the kit's helpers reach it too;
//! - a client that trusts another CA, a client reaching a broker whose certificate names
//!   another host, and a plaintext client, are refused: the delivery fails in bounded time,
//!   librdkafka says why, and nothing reached the topic;
//! - SCRAM over TLS: the right password (from a password file) works; a wrong password and
//!   no SASL at all are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext, Message,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord},
};
use tandem_common::{
    kafka::{KafkaSettings, SecurityProtocol},
    pki,
};
use tandem_tests::{BrokerOptions, TestBroker, read_topic, topic_records};

/// How long a refused client keeps retrying one message (`message.timeout.ms`).
const REFUSED_AFTER: Duration = Duration::from_secs(5);
/// The bound on any one delivery, refused or not.
const DELIVERY_BOUND: Duration = Duration::from_secs(20);

/// Collects what librdkafka reports (errors and warning-or-worse logs) about a client.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<String>>>);

impl Reports {
    fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Info as i32) {
            self.0
                .lock()
                .unwrap()
                .push(format!("log {fac}: {log_message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("error {error}: {reason}"));
    }
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tandem-kafka-tls-{label}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn tls_broker(scram_user: Option<(&str, &str)>) -> TestBroker {
    TestBroker::start_with(BrokerOptions {
        tls: true,
        scram_user: scram_user.map(|(name, password)| (name.to_owned(), password.to_owned())),
        tls_cert_names: None,
        ..BrokerOptions::default()
    })
    .await
    .unwrap()
}

/// What a Tandem service behind TLS is configured with.
fn tls_settings(broker: &TestBroker) -> KafkaSettings {
    KafkaSettings {
        brokers: broker.brokers.clone(),
        security_protocol: SecurityProtocol::Ssl,
        ssl_ca_file: broker.ca_file(),
        ..KafkaSettings::default()
    }
}

/// Publishes one record with a producer built from `settings` (message timeout
/// [`REFUSED_AFTER`]); returns the delivery and what librdkafka reported meanwhile.
async fn produce_with(
    settings: &KafkaSettings,
    topic: &str,
    payload: &str,
) -> (Result<(i32, i64), KafkaError>, String) {
    let settings = KafkaSettings {
        message_timeout_ms: REFUSED_AFTER.as_millis() as u32,
        ..settings.clone()
    };
    let reports = Reports::default();
    let producer: FutureProducer<Reports> = settings
        .producer_config()
        .unwrap()
        .set_log_level(RDKafkaLogLevel::Info)
        .create_with_context(reports.clone())
        .unwrap();
    let record: FutureRecord<'_, str, str> = FutureRecord::to(topic).key("k").payload(payload);
    let started = Instant::now();
    let Ok(sent) = tokio::time::timeout(DELIVERY_BOUND, producer.send(record, REFUSED_AFTER)).await
    else {
        panic!("no delivery report within {DELIVERY_BOUND:?}");
    };
    let delivery = sent
        .map(|delivery| (delivery.partition, delivery.offset))
        .map_err(|(error, _)| error);
    eprintln!(
        "delivery to {} after {:?}: {delivery:?}",
        settings.brokers,
        started.elapsed()
    );
    (delivery, reports.all())
}

/// Asserts a refused delivery: it timed out and librdkafka reported `expected` (one of them).
fn assert_refused(
    delivery: Result<(i32, i64), KafkaError>,
    reports: &str,
    expected: &[&str],
    broker: &TestBroker,
) {
    assert!(
        matches!(
            delivery,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            ))
        ),
        "expected a timed-out delivery, got {delivery:?}\nreports:\n{reports}"
    );
    assert!(
        expected.iter().any(|text| reports.contains(text)),
        "librdkafka did not report any of {expected:?}:\n{reports}\n---- stunnel ----\n{}\n---- tansu ----\n{}",
        broker.tls_log(),
        broker.log()
    );
    let why: Vec<&str> = reports
        .lines()
        .filter(|line| expected.iter().any(|text| line.contains(text)))
        .take(2)
        .collect();
    eprintln!("refused as expected: {why:#?}");
}

/// Reads `topic` with a consumer built from `settings`; returns the first payload.
async fn consume_one(settings: &KafkaSettings, topic: &str) -> String {
    let consumer: StreamConsumer = settings
        .client_config()
        .unwrap()
        .set(
            "group.id",
            format!("tls-test-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("nothing consumed within 30 s")
        .unwrap();
    String::from_utf8(message.payload().unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_test_ca_produces_and_consumes_over_tls() {
    let started = Instant::now();
    let mut broker = tls_broker(None).await;
    let tls_port = broker.tls_port().unwrap();
    assert_ne!(tls_port, broker.port);
    assert_eq!(broker.brokers, format!("127.0.0.1:{tls_port}"));
    let settings = tls_settings(&broker);
    assert_eq!(settings, broker.kafka_settings());
    let topic = "tls.orders";
    // Admin (topic creation), producer and consumer, all through TLS.
    settings.ensure_topics(&[topic]).await.unwrap();
    let (delivery, reports) = produce_with(&settings, topic, "{\"n\":1}").await;
    delivery.unwrap_or_else(|error| panic!("{error}\n{reports}\n{}", broker.tls_log()));
    assert_eq!(consume_one(&settings, topic).await, "{\"n\":1}");
    // The kit's helpers, given only `brokers`, find the TLS properties themselves.
    let records = read_topic(&broker.brokers, topic, 1, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(topic_records(&broker.brokers, &[topic]).await.unwrap(), 1);

    // tansu restarts behind the same stunnel; clients keep working.
    let stunnel = broker.tls_pid();
    assert!(stunnel.is_some());
    broker.restart().unwrap();
    assert_eq!(broker.tls_pid(), stunnel);
    let (delivery, reports) = produce_with(&settings, topic, "{\"n\":2}").await;
    delivery.unwrap_or_else(|error| panic!("after restart: {error}\n{reports}"));
    let records = read_topic(&broker.brokers, topic, 2, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    eprintln!("TLS round trip and restart: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_and_produces_nothing() {
    let started = Instant::now();
    let broker = tls_broker(None).await;
    let topic = "tls.refused";
    broker
        .kafka_settings()
        .ensure_topics(&[topic])
        .await
        .unwrap();
    let other = temp_dir("other-ca");
    pki::Ca::generate("Some other CA")
        .unwrap()
        .write(&other)
        .unwrap();
    let settings = KafkaSettings {
        ssl_ca_file: Some(other.join("ca.pem")),
        ..tls_settings(&broker)
    };
    let (delivery, reports) = produce_with(&settings, topic, "{\"n\":1}").await;
    assert_refused(delivery, &reports, &["certificate verify failed"], &broker);
    assert_eq!(topic_records(&broker.brokers, &[topic]).await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(other);
    eprintln!("foreign CA refused: {:?}", started.elapsed());
}

/// How many records `topic` holds, read by a client built from `settings`.
async fn records_in(settings: &KafkaSettings, topic: &str) -> i64 {
    let config = settings.client_config().unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().unwrap();
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout).unwrap();
        metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| {
                let (low, high) = consumer.fetch_watermarks(&topic, p.id(), timeout).unwrap();
                high - low
            })
            .sum()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_certificate_that_does_not_name_the_broker_is_refused() {
    let started = Instant::now();
    let broker = TestBroker::start_with(BrokerOptions {
        tls: true,
        scram_user: None,
        tls_cert_names: Some(vec!["kafka.elsewhere.test".to_owned()]),
        ..BrokerOptions::default()
    })
    .await
    .unwrap();
    let topic = "tls.misnamed";
    let verified = tls_settings(&broker);
    // The same CA without host name verification: what the refusal below is not about.
    let unverified = KafkaSettings {
        client: [(
            "ssl.endpoint.identification.algorithm".to_owned(),
            "none".to_owned(),
        )]
        .into(),
        ..verified.clone()
    };
    unverified.ensure_topics(&[topic]).await.unwrap();
    let (delivery, reports) = produce_with(&verified, topic, "{\"n\":1}").await;
    assert_refused(delivery, &reports, &["certificate verify failed"], &broker);
    assert_eq!(records_in(&unverified, topic).await, 0);
    let (delivery, reports) = produce_with(&unverified, topic, "{\"n\":2}").await;
    delivery.unwrap_or_else(|error| panic!("{error}\n{reports}"));
    assert_eq!(records_in(&unverified, topic).await, 1);
    eprintln!("misnamed certificate refused: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_plaintext_client_to_the_tls_port_is_refused() {
    let started = Instant::now();
    let broker = tls_broker(None).await;
    let topic = "tls.plaintext";
    broker
        .kafka_settings()
        .ensure_topics(&[topic])
        .await
        .unwrap();
    let settings = KafkaSettings {
        brokers: broker.brokers.clone(),
        ..KafkaSettings::default()
    };
    let (delivery, reports) = produce_with(&settings, topic, "{\"n\":1}").await;
    assert_refused(delivery, &reports, &["Disconnected"], &broker);
    // stunnel saw a Kafka request where a TLS hello belonged.
    assert!(
        broker.tls_log().contains("wrong version number"),
        "{}",
        broker.tls_log()
    );
    assert_eq!(topic_records(&broker.brokers, &[topic]).await.unwrap(), 0);
    eprintln!("plaintext refused: {:?}", started.elapsed());
}

#[tokio::test]
async fn scram_over_tls_takes_the_right_password_only() {
    let started = Instant::now();
    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
    let broker = tls_broker(Some(("tandem-test", &password))).await;
    let topic = "tls.scram";
    let dir = temp_dir("scram");
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let good = KafkaSettings {
        security_protocol: SecurityProtocol::SaslSsl,
        sasl_mechanism: Some("SCRAM-SHA-512".to_owned()),
        sasl_username: Some("tandem-test".to_owned()),
        sasl_password_file: Some(password_file),
        ..tls_settings(&broker)
    };
    good.ensure_topics(&[topic]).await.unwrap();
    let (delivery, reports) = produce_with(&good, topic, "{\"n\":1}").await;
    delivery.unwrap_or_else(|error| {
        panic!(
            "{error}\n{reports}\n---- tansu ----\n{}\n---- stunnel ----\n{}",
            broker.log(),
            broker.tls_log()
        )
    });
    assert_eq!(consume_one(&good, topic).await, "{\"n\":1}");

    let wrong = KafkaSettings {
        sasl_password_file: None,
        sasl_password: Some("not-the-password".to_owned().into()),
        ..good.clone()
    };
    let without_sasl = tls_settings(&broker);
    // Both refusals at once: each takes the whole message timeout.
    let ((wrong_delivery, wrong_reports), (bare_delivery, bare_reports)) = tokio::join!(
        produce_with(&wrong, topic, "{\"n\":2}"),
        produce_with(&without_sasl, topic, "{\"n\":3}"),
    );
    assert_refused(
        wrong_delivery,
        &wrong_reports,
        &["SCRAM authentication failed"],
        &broker,
    );
    assert_refused(bare_delivery, &bare_reports, &["Disconnected"], &broker);
    assert!(
        broker.log().contains("NotAuthenticated"),
        "{}",
        broker.log()
    );

    // Only the authenticated record is there (read through the kit, which authenticates).
    assert_eq!(topic_records(&broker.brokers, &[topic]).await.unwrap(), 1);
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("SCRAM over TLS: {:?}", started.elapsed());
}
