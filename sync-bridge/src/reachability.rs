//! Whether the bridge can do its work: the CRM's and the ERP's internal ports answer
//! SERVING (so their databases are up too), and the broker answers a metadata request. A
//! background task checks all three every [`INTERVAL`] and reports them as readiness
//! [`Dependency`]s, so `/readyz` and the bridge's gRPC health fail while any is unreachable
//! (an orchestrator holds a rollout, the "bridge not ready" alert fires) and say which.

use std::time::Duration;

use tandem_common::{
    CancellationToken, admin_http::Dependency, metrics_names, producer::AckProducer,
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How often the targets and the broker are checked.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// How long one check may take before it counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A service the bridge calls, checked through gRPC health on the channel the flows use.
struct Target {
    health: HealthClient<Channel>,
    dependency: Dependency,
    label: &'static str,
}

/// The checks, until [`Reachability::watch`] runs them.
pub struct Reachability {
    targets: [Target; 2],
    producer: AckProducer,
    topic: String,
    broker: Dependency,
}

impl Reachability {
    /// Checks the CRM and the ERP over their channels and the broker through `producer`
    /// (metadata of `topic`, one the bridge writes). Returns the dependencies for readiness.
    pub fn new(
        crm: Channel,
        erp: Channel,
        producer: AckProducer,
        topic: String,
    ) -> (Self, [Dependency; 3]) {
        let crm_up = Dependency::new("crm unreachable");
        let erp_up = Dependency::new("erp unreachable");
        let broker = Dependency::new("broker unreachable");
        let dependencies = [crm_up.clone(), erp_up.clone(), broker.clone()];
        let target = |channel, dependency, label| Target {
            health: HealthClient::new(channel),
            dependency,
            label,
        };
        let reachability = Self {
            targets: [target(crm, crm_up, "crm"), target(erp, erp_up, "erp")],
            producer,
            topic,
            broker,
        };
        (reachability, dependencies)
    }

    /// Checks every [`INTERVAL`] until `stop`; logs each change.
    pub async fn watch(mut self, stop: CancellationToken) {
        loop {
            for target in &mut self.targets {
                let up = serving(&mut target.health).await;
                report(&target.dependency, target.label, up);
            }
            let up = broker_answers(&self.producer, &self.topic).await;
            report(&self.broker, "broker", up);
            if tandem_common::shutdown::sleep_or_cancel(INTERVAL, &stop).await {
                return;
            }
        }
    }
}

fn report(dependency: &Dependency, label: &'static str, up: bool) {
    metrics::gauge!(metrics_names::BRIDGE_TARGET_UP, "target" => label)
        .set(f64::from(u8::from(up)));
    if dependency.report(up) {
        if up {
            tracing::info!(target = label, "reachable again");
        } else {
            tracing::warn!(target = label, "unreachable: the bridge is not ready");
        }
    }
}

async fn serving(health: &mut HealthClient<Channel>) -> bool {
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, check).await,
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

async fn broker_answers(producer: &AckProducer, topic: &str) -> bool {
    let (producer, topic) = (producer.clone(), topic.to_owned());
    // librdkafka blocks: off the async threads.
    let metadata = tokio::task::spawn_blocking(move || {
        producer
            .fetch_metadata(Some(&topic), CHECK_TIMEOUT)
            .map(|metadata| metadata.brokers().len())
    });
    matches!(metadata.await, Ok(Ok(brokers)) if brokers > 0)
}
