//! Whether the bridge can do its work: the CRM's and the ERP's internal ports answer
//! SERVING (so their databases are up too), and the broker answers a metadata request. A
//! background task checks each of the three on its own, every [`INTERVAL`], and reports them
//! as readiness [`Dependency`]s, so `/readyz` and the bridge's gRPC health fail while any is
//! unreachable (an orchestrator holds a rollout, the "bridge not ready" alert fires) and say
//! which. On its own: checked in turn, two unreachable services (each check waiting out its
//! [`CHECK_TIMEOUT`]) delayed the broker's check to every 8 s, and a 7.8 s cut of the broker
//! went unreported. Each shows within `INTERVAL + 2 × CHECK_TIMEOUT` of its cut.

use std::time::Duration;

use futures::{
    FutureExt,
    future::{BoxFuture, join_all},
};

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

    /// Checks each dependency every [`INTERVAL`], each on its own, until `stop`; logs each
    /// change.
    pub async fn watch(self, stop: CancellationToken) {
        let [crm, erp] = &self.targets;
        let (producer, topic, broker) = (&self.producer, &self.topic, &self.broker);
        let checks: Vec<Check<'_>> = vec![
            Box::new(|| crm.check().boxed()),
            Box::new(|| erp.check().boxed()),
            Box::new(|| {
                async {
                    let up = broker_answers(producer, topic).await;
                    report(broker, "broker", up);
                }
                .boxed()
            }),
        ];
        each_on_its_own(&stop, INTERVAL, checks).await;
    }
}

impl Target {
    /// One check of the service's health, reported.
    async fn check(&self) {
        let up = serving(&mut self.health.clone()).await;
        report(&self.dependency, self.label, up);
    }
}

/// A check of one dependency, run again and again.
type Check<'a> = Box<dyn FnMut() -> BoxFuture<'a, ()> + Send + 'a>;

/// Runs each check, then waits `interval`, over and over until `stop`: each on its own, so a
/// check waiting out its timeout delays no other.
async fn each_on_its_own(stop: &CancellationToken, interval: Duration, checks: Vec<Check<'_>>) {
    join_all(checks.into_iter().map(|mut check| async move {
        loop {
            check().await;
            if tandem_common::shutdown::sleep_or_cancel(interval, stop).await {
                return;
            }
        }
    }))
    .await;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_check_waiting_out_its_timeout_delays_no_other() {
        // The bridge's schedule at a twentieth: checks every 100 ms, timeouts of 100 ms.
        let (interval, timeout) = (Duration::from_millis(100), Duration::from_millis(100));
        let stop = CancellationToken::new();
        let (slow_runs, fast_runs) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let slow = || -> Check<'_> {
            Box::new(|| {
                async {
                    slow_runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(timeout).await;
                }
                .boxed()
            })
        };
        let fast: Check<'_> = Box::new(|| {
            async {
                fast_runs.fetch_add(1, Ordering::SeqCst);
            }
            .boxed()
        });
        // Two unreachable services (each check waits out its timeout) and a broker that answers.
        let watching = each_on_its_own(&stop, interval, vec![slow(), slow(), fast]);
        let stopping = async {
            tokio::time::sleep(Duration::from_millis(850)).await;
            stop.cancel();
        };
        tokio::join!(watching, stopping);
        // On its own, the broker's check runs at 0, 100, ..., 800 ms (9 times; fewer when the
        // machine is slow to wake timers). In turn after the two slow ones, it ran every
        // 300 ms: at 200, 500 and 800 ms at most.
        let fast = fast_runs.load(Ordering::SeqCst);
        assert!(fast >= 6, "the broker's check ran {fast} times in 850 ms");
        assert!(slow_runs.load(Ordering::SeqCst) >= 4);
    }
}
