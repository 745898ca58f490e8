//! The whole system ([`Stack`]) on a private broker and two fresh databases, a service run
//! in-process ([`InProcess`]), and [`eventually`].

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use tandem_proto::{
    crm::v1::{crm_service_client::CrmServiceClient, crm_sync_client::CrmSyncClient},
    erp::v1::{erp_service_client::ErpServiceClient, erp_sync_client::ErpSyncClient},
};

use crate::{
    ServiceProcess, TestBroker, TestDatabase, binary, free_port, http_get, netns, security,
    wait_ready,
};

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
