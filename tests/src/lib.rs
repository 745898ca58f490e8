//! The test kit: real parts for integration and end-to-end tests.
//!
//! - [`TestDatabase`]: a throw-away database on the PostgreSQL server that `make test`
//!   provisions (`TANDEM_TEST_DATABASE_URL`, an admin URL).
//! - [`TestBroker`]: a private tansu broker on a free loopback port with its own sqlite file
//!   (`TANSU_BIN`), killed when dropped; optionally behind TLS (stunnel) and requiring SASL
//!   SCRAM ([`BrokerOptions`]). Every Kafka client of this kit starts from
//!   [`kafka_client_config`], which adds what such a broker needs.
//! - [`ServiceProcess`]: one of the real binaries, killed when dropped.
//! - [`Stack`]: the three binaries wired to a private broker and two fresh databases.
//! - helpers to wait for readiness, to publish raw records and to read what reached a topic.
//!
//! Modules: `database` (databases, free ports), `broker` (the broker, the Kafka client
//! configuration), `process` (the binaries, waiting for ports and readiness), `kafka`
//! (reading and publishing records, event schemas), `stack` (the whole system, [`InProcess`],
//! [`eventually`]); what they hold is re-exported here. The public modules (`bad_requests`,
//! `evidence`, `netns`, `otlp`, `outcomes`, `pitr`, `postgres`, `security`) are used by path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bad_requests;
mod broker;
mod database;
pub mod evidence;
mod kafka;
pub mod netns;
pub mod otlp;
pub mod outcomes;
pub mod pitr;
pub mod postgres;
mod process;
pub mod security;
mod stack;
mod tls_broker;

pub use broker::{BROKER_TLS_BY_DEFAULT, BrokerOptions, TestBroker, kafka_client_config};
pub use database::{TestDatabase, admin_database_url, free_port};
pub use kafka::{Record, TestProducer, assert_valid_event, produce, read_topic, topic_records};
pub use process::{ServiceProcess, binary, http_get, wait_for_tcp, wait_ready};
pub use stack::{InProcess, Stack, StackHosts, StackOptions, eventually};
