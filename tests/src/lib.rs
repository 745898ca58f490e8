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
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bad_requests;
pub mod evidence;
pub mod netns;
pub mod otlp;
pub mod outcomes;
pub mod pitr;
pub mod postgres;
pub mod security;
mod tls_broker;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use sqlx::{Connection, PgConnection};
use tandem_common::kafka::{KafkaSettings, SecurityProtocol};
use tandem_proto::{
    crm::v1::{crm_service_client::CrmServiceClient, crm_sync_client::CrmSyncClient},
    erp::v1::{erp_service_client::ErpServiceClient, erp_sync_client::ErpSyncClient},
};

/// The admin URL of the test PostgreSQL server.
pub fn admin_database_url() -> String {
    std::env::var("TANDEM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".to_owned())
}

/// A database of its own for one test, created empty.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(label: &str) -> Result<Self> {
        let admin = admin_database_url();
        let name = format!("test_{label}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to the test PostgreSQL at {admin}; run `make test` or scripts/postgres.sh start"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        // The query (e.g. `sslmode=verify-full&sslrootcert=/path`) is kept as it is.
        let (path, query) = match admin.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (admin.as_str(), String::new()),
        };
        let base = path
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .context("admin URL has no database part")?;
        Ok(Self {
            url: format!("{base}/{name}{query}"),
            name,
        })
    }

    pub async fn connect(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
///
/// Ports come from 20000..32000, below Linux's ephemeral range (32768..60999): a port taken
/// from the ephemeral range could be handed to some outgoing connection before the process
/// it was meant for binds it. Within one test binary no port is handed out twice (the tests
/// of a binary run in parallel).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = (std::process::id().wrapping_mul(7_919)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = u16::try_from(BASE + n).unwrap_or(0);
        if port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Whether [`TestBroker::start`] puts its broker behind TLS: the switch of the whole suite.
/// `TANDEM_TEST_BROKER_TLS=1` (or `0`) overrides it for one run.
pub const BROKER_TLS_BY_DEFAULT: bool = true;

/// How a [`TestBroker`] is reached.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Reachable only over TLS: stunnel terminates TLS on [`TestBroker::brokers`] and
    /// forwards to tansu on the loopback; tansu advertises the TLS port in its metadata.
    pub tls: bool,
    /// A SCRAM-SHA-512 user (name, password) the broker is started with; then it requires
    /// SASL authentication from every client (tansu `--authentication`).
    pub scram_user: Option<(String, String)>,
    /// The names (DNS names, IP addresses) of the TLS server certificate; `None`: `localhost`
    /// and `127.0.0.1`, which clients connect to. Others make a broker that no client with
    /// host name verification accepts.
    pub tls_cert_names: Option<Vec<String>>,
    /// Where clients reach it, if not 127.0.0.1: a test network's gateway
    /// ([`netns::Lab::gateway`]), so processes in other namespaces reach it too. Its TLS
    /// certificate then names that address as well.
    pub host: Option<Ipv4Addr>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        let tls = match std::env::var("TANDEM_TEST_BROKER_TLS").as_deref() {
            Ok("1" | "true" | "yes") => true,
            Ok("0" | "false" | "no") => false,
            _ => BROKER_TLS_BY_DEFAULT,
        };
        Self {
            tls,
            scram_user: None,
            tls_cert_names: None,
            host: None,
        }
    }
}

/// The client properties of every running [`TestBroker`] that needs some, by its `brokers`
/// string: how the kit's helpers that take only `brokers` ([`read_topic`], [`TestProducer`],
/// [`evidence`]) reach a TLS broker.
static CLIENT_PROPERTIES: Mutex<BTreeMap<String, Vec<(String, String)>>> =
    Mutex::new(BTreeMap::new());

fn registered_properties() -> std::sync::MutexGuard<'static, BTreeMap<String, Vec<(String, String)>>>
{
    CLIENT_PROPERTIES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A librdkafka client configuration for `brokers`: `bootstrap.servers` plus the security
/// properties of the [`TestBroker`] whose [`TestBroker::brokers`] this is (none for another
/// broker). Every Kafka client of this kit starts from it.
pub fn kafka_client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    if let Some(properties) = registered_properties().get(brokers) {
        for (key, value) in properties {
            config.set(key, value);
        }
    }
    config
}

/// A private tansu broker for one test, plaintext by default; with [`BrokerOptions::tls`]
/// behind stunnel, with [`BrokerOptions::scram_user`] requiring SASL SCRAM.
///
/// Clients get what they need from [`TestBroker::client_properties`] (librdkafka),
/// [`TestBroker::kafka_settings`] (Tandem's settings) or [`TestBroker::service_env`] (the
/// binaries' environment); the kit's own helpers find them by `brokers`
/// ([`kafka_client_config`]).
pub struct TestBroker {
    /// What clients bootstrap from: tansu's port, or the TLS port.
    pub brokers: String,
    /// Where tansu itself listens (plaintext; behind TLS only stunnel connects there).
    pub port: u16,
    /// The address tansu listens on.
    listen: IpAddr,
    dir: PathBuf,
    child: Option<Child>,
    /// tansu's `--advertised-listener-url`.
    advertised: String,
    /// tansu runs with `--authentication`.
    authentication: bool,
    tls: Option<tls_broker::TlsFront>,
    scram_user: Option<(String, String)>,
}

impl TestBroker {
    /// A broker as [`BrokerOptions::default`] says (plaintext unless the suite's switch is on).
    pub async fn start() -> Result<Self> {
        Self::start_with(BrokerOptions::default()).await
    }

    /// A broker reached as `options` say.
    pub async fn start_with(options: BrokerOptions) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("tandem-broker-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let port = free_port();
        let host = IpAddr::V4(options.host.unwrap_or(Ipv4Addr::LOCALHOST));
        // Plaintext, tansu itself listens where clients reach it; behind TLS, on the loopback.
        let listen = if options.tls {
            Ipv4Addr::LOCALHOST.into()
        } else {
            host
        };
        let mut broker = Self {
            brokers: format!("{host}:{port}"),
            port,
            listen,
            advertised: format!("tcp://{host}:{port}"),
            dir,
            child: None,
            authentication: false,
            tls: None,
            scram_user: None,
        };
        if let Some((name, password)) = &options.scram_user {
            // Users live in the broker's storage; tansu only takes them through its admin
            // API, which it refuses to unauthenticated clients once `--authentication` is on.
            broker.launch()?;
            broker.create_scram_user(name, password)?;
            broker.kill();
            broker.authentication = true;
            broker.scram_user = Some((name.clone(), password.clone()));
        }
        if options.tls {
            let tls_port = free_port();
            // Metadata must send clients back to the TLS port, on the address its certificate
            // names (librdkafka verifies the host name it connects to).
            broker.advertised = format!("tcp://{host}:{tls_port}");
            broker.brokers = format!("{host}:{tls_port}");
            broker.launch()?;
            let host_name = host.to_string();
            let names: Vec<&str> = match &options.tls_cert_names {
                Some(names) => names.iter().map(String::as_str).collect(),
                None => vec!["localhost", "127.0.0.1", &host_name],
            };
            broker.tls = Some(tls_broker::TlsFront::start(
                &broker.dir,
                host,
                tls_port,
                broker.port,
                &names,
            )?);
        } else {
            broker.launch()?;
        }
        let properties = broker.client_properties();
        if !properties.is_empty() {
            registered_properties().insert(broker.brokers.clone(), properties);
        }
        Ok(broker)
    }

    fn tansu_bin() -> String {
        std::env::var("TANSU_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cache/tandem/tansu-0.6.0/bin/tansu")
        })
    }

    fn launch(&mut self) -> Result<()> {
        let bin = Self::tansu_bin();
        let url = format!("tcp://{}:{}", self.listen, self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))?;
        let mut command = Command::new(&bin);
        command
            .current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &self.advertised,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting the broker {bin}; run `make test` or scripts/broker.sh install")
            })?;
        self.child = Some(child);
        wait_for_tcp(
            SocketAddr::new(self.listen, self.port),
            Duration::from_secs(20),
        )
    }

    /// Stores a SCRAM-SHA-512 credential through `tansu user create` (the broker runs without
    /// `--authentication` then).
    fn create_scram_user(&self, name: &str, password: &str) -> Result<()> {
        let bin = Self::tansu_bin();
        let mut child = Command::new(&bin)
            .current_dir(&self.dir)
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://{}:{}", self.listen, self.port),
                "--mechanism",
                "scram512",
                name,
                password,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {bin} user create"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{bin} user create did not finish in 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "{bin} user create failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// A broker this kit did not start (e.g. librdkafka's in-process mock cluster, or an
    /// existing Kafka): nothing to kill; `kill` and `restart` do nothing useful.
    pub fn external(brokers: &str) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("tandem-broker-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let port = brokers
            .split(',')
            .next()
            .and_then(|b| b.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            brokers: brokers.to_owned(),
            port,
            listen: Ipv4Addr::LOCALHOST.into(),
            advertised: format!("tcp://127.0.0.1:{port}"),
            dir,
            child: None,
            authentication: false,
            tls: None,
            scram_user: None,
        })
    }

    /// The librdkafka properties a client needs besides `bootstrap.servers` ([`brokers`]):
    /// none for a plaintext broker; `security.protocol` and `ssl.ca.location` behind TLS;
    /// the SASL mechanism and credentials with a SCRAM user.
    ///
    /// [`brokers`]: TestBroker::brokers
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut properties = Vec::new();
        let protocol = match (self.tls.is_some(), self.scram_user.is_some()) {
            (false, false) => return properties,
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        properties.push(("security.protocol".to_owned(), protocol.to_owned()));
        if let Some(tls) = &self.tls {
            properties.push((
                "ssl.ca.location".to_owned(),
                tls.ca_file.display().to_string(),
            ));
        }
        if let Some((name, password)) = &self.scram_user {
            properties.extend([
                ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
                ("sasl.username".to_owned(), name.clone()),
                ("sasl.password".to_owned(), password.clone()),
            ]);
        }
        properties
    }

    /// `bootstrap.servers` plus [`TestBroker::client_properties`].
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in self.client_properties() {
            config.set(key, value);
        }
        config
    }

    /// Tandem's Kafka settings for this broker (defaults otherwise).
    pub fn kafka_settings(&self) -> KafkaSettings {
        let mut settings = KafkaSettings {
            brokers: self.brokers.clone(),
            ..KafkaSettings::default()
        };
        settings.security_protocol = match (self.tls.is_some(), self.scram_user.is_some()) {
            (false, false) => SecurityProtocol::Plaintext,
            (true, false) => SecurityProtocol::Ssl,
            (false, true) => SecurityProtocol::SaslPlaintext,
            (true, true) => SecurityProtocol::SaslSsl,
        };
        settings.ssl_ca_file = self.ca_file();
        if let Some((name, password)) = &self.scram_user {
            settings.sasl_mechanism = Some("SCRAM-SHA-512".to_owned());
            settings.sasl_username = Some(name.clone());
            settings.sasl_password = Some(password.clone().into());
        }
        settings
    }

    /// The environment that points a Tandem binary whose settings prefix is `prefix`
    /// (`CRM`, `ERP`, `BRIDGE`) at this broker: `<prefix>__KAFKA__BROKERS` and, when needed,
    /// `__SECURITY_PROTOCOL`, `__SSL_CA_FILE`, `__SASL_*`.
    pub fn service_env(&self, prefix: &str) -> Vec<(String, String)> {
        let settings = self.kafka_settings();
        let key = |name: &str| format!("{prefix}__KAFKA__{name}");
        let mut env = vec![(key("BROKERS"), settings.brokers.clone())];
        if settings.security_protocol != SecurityProtocol::Plaintext {
            let protocol = match settings.security_protocol {
                SecurityProtocol::Plaintext => "PLAINTEXT",
                SecurityProtocol::Ssl => "SSL",
                SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
                SecurityProtocol::SaslSsl => "SASL_SSL",
            };
            env.push((key("SECURITY_PROTOCOL"), protocol.to_owned()));
        }
        if let Some(ca) = &settings.ssl_ca_file {
            env.push((key("SSL_CA_FILE"), ca.display().to_string()));
        }
        if let Some((name, password)) = &self.scram_user {
            env.extend([
                (key("SASL_MECHANISM"), "SCRAM-SHA-512".to_owned()),
                (key("SASL_USERNAME"), name.clone()),
                (key("SASL_PASSWORD"), password.clone()),
            ]);
        }
        env
    }

    /// The CA a client must trust to reach this broker over TLS (`None` without TLS).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|tls| tls.ca_file.clone())
    }

    /// The TLS port (`None` without TLS).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|tls| tls.port)
    }

    /// The broker's (tansu's) process id, when this kit started it and it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// stunnel's process id, behind TLS.
    pub fn tls_pid(&self) -> Option<u32> {
        self.tls.as_ref().and_then(tls_broker::TlsFront::pid)
    }

    /// What the broker wrote to its log so far, over all its restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    /// What stunnel logged (warnings and errors), behind TLS.
    pub fn tls_log(&self) -> String {
        self.tls
            .as_ref()
            .map(tls_broker::TlsFront::log)
            .unwrap_or_default()
    }

    /// Kills the broker (tansu) with SIGKILL (its sqlite storage survives). stunnel stays up:
    /// clients still complete the TLS handshake, then lose the connection.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker (tansu) again on the same port and storage.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
        if let Some(tls) = self.tls.as_mut() {
            tls.stop();
        }
        registered_properties().remove(&self.brokers);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listening on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `GET path` over plain HTTP/1.0; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until `GET /readyz` on `addr` answers 200.
pub fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(http_get(addr, "/readyz"), Ok((200, _))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr}/readyz not ready after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    /// The payload parsed as JSON (`Null` when it is not JSON).
    pub payload: serde_json::Value,
    /// The payload as sent.
    pub raw: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning until `expected` records arrived, or nothing new came for
/// `quiet` after at least that many. Returns everything read, so callers can also assert that
/// nothing extra arrived.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    quiet: Duration,
) -> Result<Vec<Record>> {
    let consumer: StreamConsumer = kafka_client_config(brokers)
        .set(
            "group.id",
            format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut records = Vec::new();
    let overall = Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if records.len() >= expected {
            quiet
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => {
                let raw = message.payload().unwrap_or_default().to_vec();
                let payload = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Record {
                    key: message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload,
                    raw,
                    headers,
                    partition: message.partition(),
                    offset: message.offset(),
                });
            }
            // librdkafka reports transport hiccups and reconnects by itself.
            Ok(Err(error)) => eprintln!("reading {topic}: {error} (continuing)"),
            Err(_) if records.len() >= expected => return Ok(records),
            Err(_) => {}
        }
        if Instant::now() > overall {
            bail!(
                "read {} of {expected} records from {topic} in 30 s",
                records.len()
            );
        }
    }
}

/// How many records `topics` hold in all (the sum of each partition's high minus low
/// watermark).
pub async fn topic_records(brokers: &str, topics: &[&str]) -> Result<i64> {
    let brokers = brokers.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = kafka_client_config(&brokers).create()?;
        let mut total = 0;
        for topic in &topics {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    let (low, high) = consumer.fetch_watermarks(
                        topic,
                        partition.id(),
                        Duration::from_secs(10),
                    )?;
                    total += high - low;
                }
            }
        }
        Ok(total)
    })
    .await?
}

/// Fails the test unless `event` (a whole envelope) matches the envelope schema and the JSON
/// Schema of its type in `proto/schemas/`.
pub fn assert_valid_event(event: &serde_json::Value) {
    if let Err(error) = tandem_proto::events::validate(event) {
        panic!("event does not match its schema: {error}\n{event:#}");
    }
}

/// Path of a workspace binary built by `cargo build` (the Makefile builds them first).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join(name)
}

/// One of Tandem's binaries, run as a child process with its output in a log file.
pub struct ServiceProcess {
    pub name: String,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
}

impl ServiceProcess {
    pub fn spawn(name: &str, envs: Vec<(String, String)>) -> Result<Self> {
        Self::spawn_in(None, name, envs)
    }

    /// [`ServiceProcess::spawn`] inside network namespace `netns` (see [`netns::Lab`]).
    pub fn spawn_in(netns: Option<&str>, name: &str, envs: Vec<(String, String)>) -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "tandem-{name}-{}.log",
            uuid::Uuid::now_v7().simple()
        ));
        let mut process = Self {
            name: name.to_owned(),
            envs,
            log,
            child: None,
            netns: netns.map(str::to_owned),
        };
        process.start()?;
        Ok(process)
    }

    /// (Re)starts the process with the same environment.
    pub fn start(&mut self) -> Result<()> {
        let path = binary(&self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // `ip netns exec` execs the binary itself: the child's pid is the service's.
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        let child = command
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {}; run `cargo build --workspace --bins` first",
                    path.display()
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next [`start`].
    ///
    /// [`start`]: ServiceProcess::start
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.envs.retain(|(k, _)| k != name);
        if let Some(value) = value {
            self.envs.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself (a crash point, say); returns
    /// its exit status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited with status 0.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} output ----\n{}", self.name, self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A producer for tests that publish raw records (as an integrator or a broken producer
/// would): one client, reused.
pub struct TestProducer {
    producer: FutureProducer,
}

impl TestProducer {
    pub fn new(brokers: &str) -> Result<Self> {
        Ok(Self {
            producer: kafka_client_config(brokers)
                // As Tandem's own producers (kafka.idempotence): the local broker cannot
                // survive an idempotent producer's epoch bump after its own SIGKILL.
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1")
                .set("acks", "all")
                .set("message.max.bytes", "2000000")
                .create()?,
        })
    }

    /// Publishes one record and waits for the ack; returns its partition and offset.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64)> {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).payload(payload).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("producing to {topic}: {error}"))?;
        Ok((delivery.partition, delivery.offset))
    }
}

/// Publishes one raw record with a fresh client and waits for the ack.
pub async fn produce(
    brokers: &str,
    topic: &str,
    key: Option<&str>,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> Result<(i32, i64)> {
    TestProducer::new(brokers)?
        .send(topic, key, payload, headers)
        .await
}

/// The whole system: CRM, ERP and bridge binaries on free ports, a private broker and two
/// fresh databases. Dropping it kills everything.
pub struct Stack {
    pub crm: ServiceProcess,
    pub erp: ServiceProcess,
    pub bridge: ServiceProcess,
    /// The CRM's public API (frontends).
    pub crm_grpc: SocketAddr,
    /// The CRM's internal sync port (the bridge, tandemctl).
    pub crm_sync: SocketAddr,
    pub crm_http: SocketAddr,
    pub erp_grpc: SocketAddr,
    pub erp_sync: SocketAddr,
    pub erp_http: SocketAddr,
    pub bridge_grpc: SocketAddr,
    pub bridge_http: SocketAddr,
    pub broker: TestBroker,
    pub crm_db: TestDatabase,
    pub erp_db: TestDatabase,
    /// The CA, certificates and token key every process of the stack uses.
    pub security: security::Security,
    /// Where the processes run, when each has a network namespace of its own.
    pub hosts: Option<StackHosts>,
}

/// How [`Stack::start_with`] builds a stack; the default is what [`Stack::start`] does.
#[derive(Default)]
pub struct StackOptions {
    /// The broker to use; `None` starts a private tansu ([`TestBroker::start`]).
    pub broker: Option<TestBroker>,
    /// Database name label prefix; `None` keeps `e2e` (`test_e2e_crm_…`).
    pub label: Option<String>,
    /// Extra environment of the CRM, the ERP and the bridge, set after (so over) the defaults.
    pub crm_env: Vec<(String, String)>,
    pub erp_env: Vec<(String, String)>,
    pub bridge_env: Vec<(String, String)>,
    /// The CRM's and the ERP's databases (empty); `None` creates both on the test server.
    pub databases: Option<(TestDatabase, TestDatabase)>,
    /// Run the CRM, the ERP and the bridge each in its own network namespace (listening on
    /// its address there); `None`: all on 127.0.0.1. The broker and the databases must then
    /// be reachable from those namespaces (on the lab's gateway).
    pub hosts: Option<StackHosts>,
}

/// The network namespaces of a stack's processes (see [`netns::Lab`]).
#[derive(Debug, Clone)]
pub struct StackHosts {
    pub crm: netns::Host,
    pub erp: netns::Host,
    pub bridge: netns::Host,
}

impl Stack {
    /// Starts everything and waits until all three processes are ready.
    pub async fn start() -> Result<Stack> {
        Self::start_with(StackOptions::default()).await
    }

    /// [`Stack::start`] with a broker, database labels or extra settings of one's own.
    pub async fn start_with(options: StackOptions) -> Result<Stack> {
        let StackOptions {
            broker,
            label,
            crm_env,
            erp_env,
            bridge_env,
            databases,
            hosts,
        } = options;
        let broker = match broker {
            Some(broker) => broker,
            None => TestBroker::start().await?,
        };
        let label = label.unwrap_or_else(|| "e2e".to_owned());
        let (crm_db, erp_db) = match databases {
            Some(databases) => databases,
            None => (
                TestDatabase::create(&format!("{label}_crm")).await?,
                TestDatabase::create(&format!("{label}_erp")).await?,
            ),
        };
        // Each process's addresses: its own namespace's, or the loopback.
        let ip = |host: Option<&netns::Host>| -> IpAddr {
            host.map_or(IpAddr::from([127, 0, 0, 1]), |h| IpAddr::V4(h.ip))
        };
        let (crm_ip, erp_ip, bridge_ip) = (
            ip(hosts.as_ref().map(|h| &h.crm)),
            ip(hosts.as_ref().map(|h| &h.erp)),
            ip(hosts.as_ref().map(|h| &h.bridge)),
        );
        let at = |ip: IpAddr| SocketAddr::new(ip, free_port());
        let netns =
            |pick: fn(&StackHosts) -> &netns::Host| hosts.as_ref().map(|h| pick(h).netns.clone());
        let (crm_grpc, crm_http) = (at(crm_ip), at(crm_ip));
        let (erp_grpc, erp_http) = (at(erp_ip), at(erp_ip));
        let (crm_sync, erp_sync) = (at(crm_ip), at(erp_ip));
        let security = security::Security::create()?;
        let (bridge_grpc, bridge_http) = (at(bridge_ip), at(bridge_ip));
        let env = |pairs: Vec<(&str, String)>| -> Vec<(String, String)> {
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .chain([("RUST_LOG".to_owned(), "info".to_owned())])
                .collect()
        };
        let crm = ServiceProcess::spawn_in(
            netns(|h| &h.crm).as_deref(),
            "crm-service",
            env(vec![
                ("CRM__GRPC__LISTEN", crm_grpc.to_string()),
                ("CRM__SYNC__LISTEN", crm_sync.to_string()),
                ("CRM__HTTP__LISTEN", crm_http.to_string()),
                ("CRM__DATABASE__URL", crm_db.url.clone()),
            ])
            .into_iter()
            .chain(security.service_env("CRM"))
            .chain(broker.service_env("CRM"))
            .chain(crm_env)
            .collect(),
        )?;
        let erp = ServiceProcess::spawn_in(
            netns(|h| &h.erp).as_deref(),
            "erp-service",
            env(vec![
                ("ERP__GRPC__LISTEN", erp_grpc.to_string()),
                ("ERP__SYNC__LISTEN", erp_sync.to_string()),
                ("ERP__HTTP__LISTEN", erp_http.to_string()),
                ("ERP__DATABASE__URL", erp_db.url.clone()),
            ])
            .into_iter()
            .chain(security.service_env("ERP"))
            .chain(broker.service_env("ERP"))
            .chain(erp_env)
            .collect(),
        )?;
        let bridge = ServiceProcess::spawn_in(
            netns(|h| &h.bridge).as_deref(),
            "sync-bridge",
            env(vec![
                ("BRIDGE__GRPC__LISTEN", bridge_grpc.to_string()),
                ("BRIDGE__HTTP__LISTEN", bridge_http.to_string()),
                ("BRIDGE__ERP__URL", format!("https://{erp_sync}")),
                ("BRIDGE__CRM__URL", format!("https://{crm_sync}")),
                ("BRIDGE__CONSUMER__GROUP_ID", "e2e-bridge".into()),
                ("BRIDGE__CONSUMER__RETRY__MAX_MS", "500".into()),
            ])
            .into_iter()
            .chain(security.caller_env(security::BRIDGE))
            .chain(broker.service_env("BRIDGE"))
            .chain(bridge_env)
            .collect(),
        )?;
        for (process, addr) in [(&crm, crm_http), (&erp, erp_http), (&bridge, bridge_http)] {
            if let Err(error) = wait_ready(addr, Duration::from_secs(30)) {
                bail!("{}: {error:#}\n{}", process.name, process.output());
            }
        }
        Ok(Stack {
            crm,
            erp,
            bridge,
            crm_grpc,
            crm_sync,
            crm_http,
            erp_grpc,
            erp_sync,
            erp_http,
            bridge_grpc,
            bridge_http,
            broker,
            crm_db,
            erp_db,
            security,
            hosts,
        })
    }

    /// A client of the CRM's public API whose calls carry a token with every role.
    pub async fn crm_client(&self) -> Result<CrmServiceClient<security::Authed>> {
        let channel = self
            .security
            .authed(self.crm_grpc, "e2e-tester", security::ALL_ROLES)
            .await?;
        Ok(CrmServiceClient::new(channel))
    }

    /// A client of the ERP's public API whose calls carry a token with every role.
    pub async fn erp_client(&self) -> Result<ErpServiceClient<security::Authed>> {
        let channel = self
            .security
            .authed(self.erp_grpc, "e2e-tester", security::ALL_ROLES)
            .await?;
        Ok(ErpServiceClient::new(channel))
    }

    /// A client of the CRM's internal port, with the bridge's certificate.
    pub async fn crm_sync_client(&self) -> Result<CrmSyncClient<tonic::transport::Channel>> {
        Ok(CrmSyncClient::new(
            self.security
                .sync_channel(self.crm_sync, security::BRIDGE)
                .await?,
        ))
    }

    /// A client of the ERP's internal port, with the bridge's certificate.
    pub async fn erp_sync_client(&self) -> Result<ErpSyncClient<tonic::transport::Channel>> {
        Ok(ErpSyncClient::new(
            self.security
                .sync_channel(self.erp_sync, security::BRIDGE)
                .await?,
        ))
    }

    /// `tandemctl` set up for this stack: its brokers (and their TLS), the services'
    /// internal ports, and tandemctl's client certificate. Add the arguments and run it.
    pub fn tandemctl(&self) -> Command {
        let mut command = Command::new(binary("tandemctl"));
        command
            .envs(self.broker.service_env("BRIDGE"))
            .envs(self.security.caller_env(security::TANDEMCTL))
            .env("BRIDGE__CRM__URL", format!("https://{}", self.crm_sync))
            .env("BRIDGE__ERP__URL", format!("https://{}", self.erp_sync));
        command
    }

    /// The value of a Prometheus sample on `addr` whose line starts with `prefix` (name plus
    /// labels; the sum when several lines do), or 0 when no line does. Panics when `/metrics`
    /// cannot be read or does not answer 200, or a matching line has no number: a figure read
    /// from nowhere must fail the test, not pass for 0.
    pub fn metric(addr: SocketAddr, prefix: &str) -> f64 {
        let (status, body) = http_get(addr, "/metrics")
            .unwrap_or_else(|error| panic!("cannot read http://{addr}/metrics: {error:#}"));
        assert_eq!(
            status, 200,
            "http://{addr}/metrics answered {status}, not 200:\n{body}"
        );
        body.lines()
            .filter(|line| line.starts_with(prefix))
            .map(|line| {
                line.rsplit(' ')
                    .next()
                    .and_then(|value| value.parse::<f64>().ok())
                    .unwrap_or_else(|| {
                        panic!("http://{addr}/metrics: no value in the sample {line:?}")
                    })
            })
            .sum()
    }
}

/// A service built in this process (on port 0, by its own integration tests) and running in a
/// task until [`InProcess::stop`].
pub struct InProcess {
    shutdown: tandem_common::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    /// Runs `run_until_stopped` (an application's, given its shutdown token) in a task.
    pub fn spawn<F, E>(
        run_until_stopped: impl FnOnce(tandem_common::CancellationToken) -> F,
    ) -> InProcess
    where
        F: std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Debug + Send + 'static,
    {
        let shutdown = tandem_common::CancellationToken::new();
        let run = run_until_stopped(shutdown.clone());
        let task = tokio::spawn(async move { run.await.unwrap() });
        InProcess { shutdown, task }
    }

    /// Cancels the shutdown token and waits until the service stopped; panics if it failed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}
