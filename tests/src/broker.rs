//! A private tansu broker for one test (optionally behind TLS and SASL SCRAM), and the
//! client configuration every Kafka client of this kit starts from.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use tandem_common::kafka::{KafkaSettings, SecurityProtocol};

use crate::{free_port, tls_broker, wait_for_tcp};

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
    ///
    /// [`netns::Lab::gateway`]: crate::netns::Lab::gateway
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
///
/// [`read_topic`]: crate::read_topic
/// [`TestProducer`]: crate::TestProducer
/// [`evidence`]: crate::evidence
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

    /// tansu's SQLite store.
    pub fn store(&self) -> PathBuf {
        self.dir.join("tansu.db")
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
            // SQLite in the broker's directory, which survives a restart. Not tansu's memory
            // engine: it loses acknowledged records under concurrent produce requests.
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
        )?;
        index_headers(&self.store())
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

    /// Kills the broker (tansu) with SIGKILL (SQLite storage survives). stunnel stays up:
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

/// Indexes tansu's record headers (`scripts/tansu_index.py`): without it every fetched record
/// scans every header stored, and a broker holding a few ten thousand events stalls.
fn index_headers(db: &Path) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tansu_index.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(db)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed: {}",
            script.display(),
            db.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
