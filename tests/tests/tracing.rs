//! Every change is traceable from the frontend's call to the other service's database write,
//! also when the bridge applies several events in one call. The three processes export their
//! spans over OTLP to a receiver in this test (a real OTLP/gRPC server); each change is sent
//! with a `traceparent` of the test's own (the frontend's span), and the test then follows
//! each one through the spans it received:
//!
//! frontend span -> the owner's `grpc.call` -> `bridge.event` (same trace) -> either the
//! target's `grpc.call` under that event (applied alone) or a `bridge.batch` span linked to
//! the event, with the target's `grpc.call` under it (applied in a batch) -> the target's
//! database write (`apply`, `apply_many`, `apply_stock_levels`).
//!
//! The bridge is stopped while the changes are made, so they wait together and the batch
//! paths (customers to the ERP, stock levels to the CRM) are taken for sure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{collections::HashMap, time::Duration};

use tandem_proto::{crm::v1 as crm, erp::v1 as erp};
use tandem_tests::{
    Stack, StackOptions,
    otlp::{OtlpReceiver, ReceivedSpan},
};
use tonic::Request;

/// A frontend's span: a fresh trace id and span id, as W3C `traceparent`.
struct FrontendSpan {
    trace_id: String,
    span_id: String,
}

impl FrontendSpan {
    fn new() -> Self {
        let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
        let span_id = format!("{:016x}", rand::random::<u64>() | 1);
        Self { trace_id, span_id }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "traceparent",
            format!("00-{}-{}-01", self.trace_id, self.span_id)
                .parse()
                .unwrap(),
        );
        request
    }
}

/// The spans received, indexed.
struct Spans {
    all: Vec<ReceivedSpan>,
    by_id: HashMap<(String, String), usize>,
}

impl Spans {
    fn new(all: Vec<ReceivedSpan>) -> Self {
        let by_id = all
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.trace_id.clone(), s.span_id.clone()), i))
            .collect();
        Self { all, by_id }
    }

    fn parent(&self, span: &ReceivedSpan) -> Option<&ReceivedSpan> {
        self.by_id
            .get(&(span.trace_id.clone(), span.parent_span_id.clone()))
            .map(|&i| &self.all[i])
    }

    fn ancestors<'a>(&'a self, span: &'a ReceivedSpan) -> Vec<&'a ReceivedSpan> {
        let mut chain = vec![span];
        while let Some(parent) = chain.last().and_then(|s| self.parent(s)) {
            chain.push(parent);
        }
        chain
    }

    /// How `change` (a frontend span, the entity's id) reached a write named `write` in the
    /// other service: `Ok("alone")`, `Ok("batch")`, or why it cannot be followed.
    fn follow(
        &self,
        frontend: &FrontendSpan,
        aggregate_id: &str,
        owner_method: &str,
        writes: &[&str],
    ) -> Result<&'static str, String> {
        let in_trace = |s: &&ReceivedSpan| s.trace_id == frontend.trace_id;
        let owner = self
            .all
            .iter()
            .filter(in_trace)
            .find(|s| s.attribute("rpc.method") == Some(owner_method))
            .ok_or_else(|| format!("no {owner_method} span in trace {}", frontend.trace_id))?;
        if owner.parent_span_id != frontend.span_id {
            return Err(format!(
                "{owner_method}'s span is not a child of the frontend's span: {owner:?}"
            ));
        }
        let event = self
            .all
            .iter()
            .filter(in_trace)
            .find(|s| s.name == "bridge.event" && s.attribute("aggregate_id") == Some(aggregate_id))
            .ok_or_else(|| format!("no bridge.event for {aggregate_id} in its trace"))?;
        for write in self
            .all
            .iter()
            .filter(|s| writes.contains(&s.name.as_str()))
        {
            for ancestor in self.ancestors(write) {
                if ancestor.name == "bridge.event" && ancestor.span_id == event.span_id {
                    return Ok("alone");
                }
                if ancestor.name == "bridge.batch"
                    && ancestor
                        .links
                        .contains(&(event.trace_id.clone(), event.span_id.clone()))
                {
                    return Ok("batch");
                }
            }
        }
        Err(format!(
            "no {writes:?} span descends from {aggregate_id}'s bridge.event or from a batch linked to it"
        ))
    }

    /// The path of a batched change, for the report: each span with its parent or link.
    fn describe(&self, frontend: &FrontendSpan, writes: &[&str]) -> String {
        let mut lines = Vec::new();
        for span in self.all.iter().filter(|s| s.trace_id == frontend.trace_id) {
            lines.push(format!(
                "  [{}] {} {} (trace {}, span {}, parent {})",
                span.service,
                span.name,
                span.attribute("rpc.method")
                    .or(span.attribute("aggregate_id"))
                    .unwrap_or(""),
                &span.trace_id[..8],
                span.span_id,
                span.parent_span_id
            ));
            if span.name == "bridge.event" {
                for batch in self.all.iter().filter(|b| {
                    b.name == "bridge.batch"
                        && b.links
                            .contains(&(span.trace_id.clone(), span.span_id.clone()))
                }) {
                    lines.push(format!(
                        "    linked from [{}] bridge.batch size={} (trace {}, span {})",
                        batch.service,
                        batch.attribute("size").unwrap_or("?"),
                        &batch.trace_id[..8],
                        batch.span_id
                    ));
                    for under in self.all.iter().filter(|s| {
                        s.trace_id == batch.trace_id
                            && self.ancestors(s).iter().any(|a| a.span_id == batch.span_id)
                            && (s.attribute("rpc.method").is_some()
                                || writes.contains(&s.name.as_str()))
                    }) {
                        lines.push(format!(
                            "      [{}] {} {} (span {}, parent {})",
                            under.service,
                            under.name,
                            under.attribute("rpc.method").unwrap_or(""),
                            under.span_id,
                            under.parent_span_id
                        ));
                    }
                }
            }
        }
        lines.join("\n")
    }
}

/// A stack whose three processes export to `endpoint`; the bridge takes its partitions itself
/// (the tests kill and restart it, as under `make run`).
async fn traced_stack(endpoint: &str) -> Stack {
    let otlp = |prefix: &str| {
        vec![(
            format!("{prefix}__TELEMETRY__OTLP_ENDPOINT"),
            endpoint.to_owned(),
        )]
    };
    Stack::start_with(StackOptions {
        crm_env: otlp("CRM"),
        erp_env: otlp("ERP"),
        bridge_env: [
            otlp("BRIDGE"),
            vec![("BRIDGE__CONSUMER__ASSIGNMENT".into(), "all".into())],
        ]
        .concat(),
        ..StackOptions::default()
    })
    .await
    .unwrap()
}

// Several threads: the receiver must keep serving while the test blocks on a process's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_is_traceable_end_to_end_through_batches() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut stack = traced_stack(&receiver.endpoint()).await;
    let (mut crm, mut erp) = support::clients(&stack).await;
    const SKUS: [&str; 6] = ["TR-1", "TR-2", "TR-3", "TR-4", "TR-5", "TR-6"];
    for sku in SKUS {
        support::stock_product(&mut erp, sku, 1_000, 10).await;
    }
    for sku in SKUS {
        support::crm_available(&crm, sku, 10).await;
    }

    // The burst, while the bridge is down: 12 customers and 6 receipts, each from its own
    // frontend span.
    stack.bridge.kill();
    let mut customers = Vec::new();
    for n in 0..12 {
        let frontend = FrontendSpan::new();
        let id = crm
            .create_customer(frontend.request(crm::CreateCustomerRequest {
                customer: Some(crm::Customer {
                    display_name: format!("Traced {n}"),
                    email: format!("traced{n}@example.com"),
                    ..crm::Customer::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .id;
        customers.push((frontend, id));
    }
    let mut receipts = Vec::new();
    for sku in SKUS {
        let frontend = FrontendSpan::new();
        erp.receive_stock(frontend.request(erp::ReceiveStockRequest {
            sku: sku.into(),
            warehouse: "MAIN".into(),
            quantity: 5,
            reference: format!("traced {sku}"),
            request_id: String::new(),
        }))
        .await
        .unwrap();
        receipts.push((frontend, sku));
    }
    stack.bridge.start().unwrap();
    for (_, id) in &customers {
        support::erp_has_customer(&erp, id).await;
    }
    for sku in SKUS {
        support::crm_available(&crm, sku, 15).await;
    }
    // A clean stop flushes every process's spans to the receiver.
    for process in [&mut stack.bridge, &mut stack.crm, &mut stack.erp] {
        assert!(process.terminate(Duration::from_secs(30)).unwrap());
    }

    let spans = Spans::new(receiver.spans());
    let mut failures = Vec::new();
    let mut paths: HashMap<&str, usize> = HashMap::new();
    let mut example = None;
    for (frontend, id) in &customers {
        match spans.follow(
            frontend,
            id,
            "/tandem.crm.v1.CrmService/CreateCustomer",
            &["apply", "apply_many"],
        ) {
            Ok(path) => {
                *paths.entry(path).or_default() += 1;
                if path == "batch" && example.is_none() {
                    example = Some(spans.describe(frontend, &["apply", "apply_many"]));
                }
            }
            Err(why) => failures.push(format!("customer {id}: {why}")),
        }
    }
    for (frontend, sku) in &receipts {
        match spans.follow(
            frontend,
            sku,
            "/tandem.erp.v1.ErpService/ReceiveStock",
            &["apply_stock_levels"],
        ) {
            Ok(path) => *paths.entry(path).or_default() += 1,
            Err(why) => failures.push(format!("stock {sku}: {why}")),
        }
    }
    let mut names: Vec<String> = spans
        .all
        .iter()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();
    names.sort();
    names.dedup();
    println!(
        "{} spans received ({}); paths followed: {paths:?}",
        spans.all.len(),
        names.join(", ")
    );
    if let Some(example) = &example {
        println!("one batched customer's journey:\n{example}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} changes cannot be followed:\n{}",
        failures.len(),
        customers.len() + receipts.len(),
        failures.join("\n")
    );
    assert!(
        paths.get("batch").copied().unwrap_or(0) > 0,
        "no change went through a batch, so the batch path was not tested: {paths:?}"
    );
}

/// With `log_format = json`, each log line is one JSON object, and a line written inside a
/// call's or an event's span carries that span's `trace_id` and `span_id`: the frontend's trace
/// id is found in the CRM's line for its call and in the bridge's line for the event it caused.
/// No line holds a secret: the database roles' passwords, the caller's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_callers_trace_and_no_secret() {
    let admin = tandem_tests::admin_database_url();
    let roles = tandem_tests::postgres::DatabaseRoles::create(&admin, "logs")
        .await
        .unwrap();
    let password = |url: &str| -> String {
        let userinfo = url.split("://").nth(1).unwrap().split('@').next().unwrap();
        userinfo.split(':').nth(1).unwrap().to_owned()
    };
    let secrets = [password(&roles.owner_url), password(&roles.runtime_url)];
    let json = |prefix: &str, filter: &str| {
        vec![
            (
                format!("{prefix}__TELEMETRY__LOG_FORMAT"),
                "json".to_owned(),
            ),
            ("RUST_LOG".to_owned(), filter.to_owned()),
        ]
    };
    // A target directive too: with one filter per layer, it used to make lines vanish.
    let mut crm_env = json("CRM", "info,tandem_common=debug");
    crm_env.extend([
        ("CRM__DATABASE__URL".to_owned(), roles.runtime_url.clone()),
        (
            "CRM__DATABASE__MIGRATION_URL".to_owned(),
            roles.owner_url.clone(),
        ),
    ]);
    let stack = Stack::start_with(StackOptions {
        crm_env,
        bridge_env: json("BRIDGE", "info,sync_bridge=debug"),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let token = stack
        .security
        .token("log-tester", tandem_tests::security::ALL_ROLES)
        .unwrap();
    let (mut crm, erp) = support::clients(&stack).await;
    let frontend = FrontendSpan::new();
    let id = crm
        .create_customer(frontend.request(crm::CreateCustomerRequest {
            customer: Some(crm::Customer {
                display_name: "Logged".into(),
                email: "logged@example.com".into(),
                ..crm::Customer::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .id;
    support::erp_has_customer(&erp, &id).await;

    let lines = |output: &str| -> Vec<serde_json::Value> {
        output
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let in_trace = |lines: &[serde_json::Value]| -> Vec<serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["trace_id"] == frontend.trace_id.as_str())
            .cloned()
            .collect()
    };
    let applied_in_trace = |lines: &[serde_json::Value]| {
        in_trace(lines).iter().any(|l| {
            l["fields"]["message"] == "event applied" && l["span"]["aggregate_id"] == id.as_str()
        })
    };
    // The ERP's row is visible before the bridge has logged the answer: wait for its line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let bridge_out = loop {
        let output = stack.bridge.output();
        if applied_in_trace(&lines(&output)) || std::time::Instant::now() > deadline {
            break output;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let crm_out = stack.crm.output();
    let (crm_lines, bridge_lines) = (lines(&crm_out), lines(&bridge_out));
    assert!(
        !crm_lines.is_empty() && !bridge_lines.is_empty(),
        "JSON lines expected"
    );
    let crm_call = in_trace(&crm_lines);
    assert!(
        crm_call
            .iter()
            .any(|l| l["fields"]["message"] == "call answered"
                && l["span"]["rpc.method"] == "/tandem.crm.v1.CrmService/CreateCustomer"
                && l["span_id"].as_str().is_some_and(|s| s.len() == 16)),
        "no CRM line of the call in trace {}:\n{}",
        frontend.trace_id,
        crm_out
            .lines()
            .filter(|l| !l.contains("Health/Check"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        applied_in_trace(&bridge_lines),
        "no bridge line of the event in trace {}:\n{bridge_out}",
        frontend.trace_id
    );
    for (process, output) in [
        ("crm-service", &crm_out),
        ("sync-bridge", &bridge_out),
        ("erp-service", &stack.erp.output()),
    ] {
        for secret in secrets.iter().chain([&token]) {
            assert!(
                !output.contains(secret.as_str()),
                "{process} logged a secret ({}…)",
                &secret[..6]
            );
        }
    }
}

/// Export as production configures it: to a collector behind TLS (trusting its CA), with a
/// vendor's token in the headers, a ratio sampler of 0 that still keeps the traces a frontend
/// asked to sample (parent-based), and resource attributes. The token never reaches a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_tls_collector_with_headers_sampled_by_their_parent() {
    let pki = tandem_tests::security::Security::create().unwrap();
    let receiver = OtlpReceiver::start_tls(&pki).await.unwrap();
    const TOKEN: &str = "Bearer otlp-sekret-7f3a";
    let crm_env = [
        ("CRM__TELEMETRY__OTLP_ENDPOINT", receiver.endpoint()),
        ("CRM__TELEMETRY__OTLP_TLS__ENABLED", "true".to_owned()),
        ("CRM__TELEMETRY__OTLP_TLS__CA_FILE", pki.ca_file()),
        (
            "CRM__TELEMETRY__OTLP_HEADERS",
            format!("authorization={TOKEN},x-tenant=acme"),
        ),
        ("CRM__TELEMETRY__SAMPLER_RATIO", "0".to_owned()),
        ("CRM__TELEMETRY__ENVIRONMENT", "drill".to_owned()),
        (
            "CRM__TELEMETRY__RESOURCE_ATTRIBUTES",
            "team=sales".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut stack = Stack::start_with(StackOptions {
        crm_env,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (mut crm, _) = support::clients(&stack).await;
    let customer = |name: &str| crm::CreateCustomerRequest {
        customer: Some(crm::Customer {
            display_name: name.into(),
            email: format!("{}@example.com", name.to_lowercase()),
            ..crm::Customer::default()
        }),
        request_id: String::new(),
    };
    let frontend = FrontendSpan::new();
    crm.create_customer(frontend.request(customer("Sampled")))
        .await
        .unwrap();
    // No traceparent: a trace that starts here, where the ratio (0) decides.
    crm.create_customer(customer("Unsampled")).await.unwrap();
    assert!(stack.crm.terminate(Duration::from_secs(30)).unwrap());

    let spans = receiver.spans();
    let crm_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "crm-service")
        .collect();
    assert!(
        crm_spans.iter().any(|s| s.trace_id == frontend.trace_id
            && s.attribute("rpc.method") == Some("/tandem.crm.v1.CrmService/CreateCustomer")),
        "the sampled call's span reached the collector over TLS: {crm_spans:#?}"
    );
    assert!(
        crm_spans.iter().all(|s| s.trace_id == frontend.trace_id),
        "with sampler_ratio 0 only the frontend's sampled trace is exported: {:#?}",
        crm_spans
            .iter()
            .filter(|s| s.trace_id != frontend.trace_id)
            .map(|s| &s.name)
            .collect::<Vec<_>>()
    );
    let resource = &crm_spans[0].resource;
    assert_eq!(
        resource
            .get("deployment.environment.name")
            .map(String::as_str),
        Some("drill")
    );
    assert_eq!(resource.get("team").map(String::as_str), Some("sales"));
    assert!(resource.contains_key("service.version"), "{resource:?}");
    let headers = receiver.headers();
    assert!(!headers.is_empty());
    for seen in &headers {
        assert_eq!(seen.get("authorization").map(String::as_str), Some(TOKEN));
        assert_eq!(seen.get("x-tenant").map(String::as_str), Some("acme"));
    }
    assert!(
        !stack.crm.output().contains("otlp-sekret"),
        "the collector's token was logged"
    );
}

/// What a newcomer runs under `make run`: `tandemctl trace-collector` receives the three
/// processes' spans into a file, and `tandemctl trace <customer id>` prints the customer's
/// journey, through the bridge's batch, to the ERP's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandemctl_prints_a_batched_changes_journey_from_the_collectors_file() {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], tandem_tests::free_port()));
    let file = std::env::temp_dir().join(format!("traces-{}.jsonl", uuid::Uuid::now_v7().simple()));
    let mut collector = std::process::Command::new(tandem_tests::binary("tandemctl"))
        .args(["trace-collector", "--listen", &addr.to_string(), "--out"])
        .arg(&file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tandem_tests::wait_for_tcp(addr, Duration::from_secs(10)).unwrap();
    let mut stack = traced_stack(&format!("http://{addr}")).await;
    let (mut crm, erp) = support::clients(&stack).await;
    stack.bridge.kill();
    let mut ids = Vec::new();
    // Enough that some wait together whatever the machine's pace (three were, once, each
    // applied alone on a busy machine).
    for n in 0..12 {
        let customer = crm
            .create_customer(FrontendSpan::new().request(crm::CreateCustomerRequest {
                customer: Some(crm::Customer {
                    display_name: format!("Journey {n}"),
                    email: format!("journey{n}@example.com"),
                    ..crm::Customer::default()
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap()
            .into_inner();
        ids.push(customer.id);
    }
    stack.bridge.start().unwrap();
    for id in &ids {
        support::erp_has_customer(&erp, id).await;
    }
    for process in [&mut stack.bridge, &mut stack.crm, &mut stack.erp] {
        assert!(process.terminate(Duration::from_secs(30)).unwrap());
    }
    let trace = |id: &str| {
        let shown = std::process::Command::new(tandem_tests::binary("tandemctl"))
            .args(["trace", id, "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        String::from_utf8_lossy(&shown.stdout).into_owned()
    };
    let printed: Vec<String> = ids.iter().map(|id| trace(id)).collect();
    let _ = collector.kill();
    let _ = collector.wait();
    let _ = std::fs::remove_file(&file);
    for (id, printed) in ids.iter().zip(&printed) {
        for step in [
            "[crm-service] /tandem.crm.v1.CrmService/CreateCustomer",
            "[sync-bridge] bridge.event",
            "[erp-service] /tandem.erp.v1.ErpSync/ApplyCustomer",
            "[erp-service] apply",
        ] {
            assert!(
                printed.contains(step),
                "{id}'s journey lacks {step:?}:\n{printed}"
            );
        }
    }
    // The bridge was down while they were made: at least one went through a batch.
    let batched = printed
        .iter()
        .find(|p| p.contains("[sync-bridge] bridge.batch") && p.contains("apply_many"))
        .unwrap_or_else(|| panic!("no journey through a batch:\n{}", printed.join("\n")));
    println!("a batched customer's journey (tandemctl trace):\n{batched}");
}
