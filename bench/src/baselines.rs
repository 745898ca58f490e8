//! Same-run baselines: a tonic hello-world server, pgbench with the CRM's customer write, and a
//! raw produce -> consume hop through a broker with Tandem's client settings.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use serde::{Deserialize, Serialize};
use tandem_common::kafka::KafkaSettings;
use tonic::{Request, Response, Status};

use crate::{
    load::{Throughput, closed_loop},
    stats::{Latencies, Summary},
};

pub mod hello {
    tonic::include_proto!("helloworld");
}

use hello::{
    HelloReply, HelloRequest,
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer},
};

struct HelloWorld;

#[tonic::async_trait]
impl Greeter for HelloWorld {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("Hello {}!", request.into_inner().name),
        }))
    }
}

/// The hello-world server on a runtime of its own (2 worker threads, like the services), so
/// the load generator's runtime does not serve it. Returns its address; it lives until exit.
fn start_hello_server() -> Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding hello server")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hello-server")
        .build()
        .context("building the hello-world runtime")?;
    std::thread::Builder::new()
        .name("hello-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    eprintln!("hello server: cannot adopt listener");
                    return;
                };
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                if let Err(error) = tonic::transport::Server::builder()
                    .add_service(GreeterServer::new(HelloWorld))
                    .serve_with_incoming(incoming)
                    .await
                {
                    eprintln!("hello server stopped: {error}");
                }
            });
        })
        .context("spawning hello server thread")?;
    Ok(addr)
}

/// Unary hello-world throughput at `clients` concurrent clients, each on its own connection.
pub async fn hello_world(
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Throughput> {
    let addr = start_hello_server()?;
    let mut pool = Vec::new();
    for _ in 0..clients {
        pool.push(
            GreeterClient::connect(format!("http://{addr}"))
                .await
                .context("connecting to the hello-world server")?,
        );
    }
    Ok(
        closed_loop(pool, warmup, duration, |mut client, seq| async move {
            client
                .say_hello(HelloRequest {
                    name: format!("bench-{seq}"),
                })
                .await?;
            Ok(())
        })
        .await,
    )
}

/// pgbench result for the customer-write transaction.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PgBench {
    pub clients: usize,
    pub seconds: f64,
    pub tps: f64,
    pub latency: Summary,
}

/// The CRM's `CreateCustomer` SQL without a request id: one statement writing the customer
/// row, its (here empty) contacts and addresses, and the outbox row with a real-sized
/// envelope, as `customers::store::insert` sends it. pgbench cannot make a UUID, so the
/// customer's id is built from two random numbers.
const CUSTOMER_WRITE: &str = r#"\set hi random(0, 2147483647)
\set lo random(0, 2147483647)
WITH contacts AS (INSERT INTO customer_contacts (customer_id, position, name, email, phone, role) SELECT (lpad(to_hex(:hi::int), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(:lo::int), 12, '0'))::uuid, ordinality - 1, name, email, phone, role FROM UNNEST('{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[]) WITH ORDINALITY AS c(name, email, phone, role, ordinality)), addresses AS (INSERT INTO customer_addresses (customer_id, position, kind, line1, line2, city, postal_code, region, country_code) SELECT (lpad(to_hex(:hi::int), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(:lo::int), 12, '0'))::uuid, ordinality - 1, kind, line1, line2, city, postal_code, region, country_code FROM UNNEST('{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[]) WITH ORDINALITY AS a(kind, line1, line2, city, postal_code, region, country_code, ordinality)), outbox_row AS (INSERT INTO outbox (event_id, topic, kafka_key, payload, traceparent) VALUES (gen_random_uuid(), 'crm.customers', lpad(to_hex(:hi::int), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(:lo::int), 12, '0'), '{"id": "0193a0c4-0000-7000-8000-000000000001","type": "crm.customer.upserted","schema_version": 1,"source": "crm","aggregate_type": "customer","aggregate_id": "0193a0c4-0000-7000-8000-000000000002","aggregate_version": 1,"occurred_at": "2026-11-26T10:00:00.000000Z","data": {"customer_id": "0193a0c4-0000-7000-8000-000000000002","display_name": "Bench Customer","email": "bench@example.com","phone": null,"tax_id": null,"status": "ACTIVE","external_ref": null,"contacts": [],"addresses": []}}'::json, NULL)) INSERT INTO customers (id, display_name, email, phone, tax_id, status, external_ref, version) VALUES ((lpad(to_hex(:hi::int), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(:lo::int), 12, '0'))::uuid, 'Bench Customer ' || :client_id, 'bench@example.com', NULL, NULL, 'ACTIVE', NULL, 1) RETURNING id, display_name, email, phone, tax_id, status, external_ref, version, create_time, update_time;
"#;

/// GetCustomer's SQL for one of the customers [`seed_customers`] wrote: the row, its
/// contacts, its addresses, its finance view.
const CUSTOMER_READ: &str = r#"\set n random(1, 1000)
SELECT id, display_name, email, phone, tax_id, status, external_ref, version, create_time, update_time FROM customers WHERE id = ('00000000-0000-7000-8000-' || lpad(:n::text, 12, '0'))::uuid;
SELECT c.id, COALESCE((SELECT json_agg(json_build_array(name, email, phone, role) ORDER BY position) FROM customer_contacts WHERE customer_id = c.id), '[]')::text, COALESCE((SELECT json_agg(json_build_array(kind, line1, line2, city, postal_code, region, country_code) ORDER BY position) FROM customer_addresses WHERE customer_id = c.id), '[]')::text, f.currency, f.credit_limit_minor, f.open_balance_minor, f.payment_terms, f.credit_hold, f.source_version, f.update_time FROM (SELECT ('00000000-0000-7000-8000-' || lpad(:n::text, 12, '0'))::uuid AS id) AS c LEFT JOIN customer_finance f ON f.customer_id = c.id;
"#;

/// Which of CreateCustomer's and GetCustomer's SQL pgbench runs.
#[derive(Debug, Clone, Copy)]
pub enum PgScript {
    CustomerWrite,
    CustomerRead,
}

/// 1,000 customers with ids pgbench can compute (`00000000-0000-7000-8000-00000000000n`).
pub async fn seed_customers(url: &str) -> Result<()> {
    let pool = sqlx::PgPool::connect(url)
        .await
        .context("connecting to the pgbench database")?;
    sqlx::query(
        "INSERT INTO customers (id, display_name, email, status, version) \
         SELECT ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid, \
                'Seeded ' || n, 'seeded@example.com', 'ACTIVE', 1 \
         FROM generate_series(1, 1000) AS n ON CONFLICT DO NOTHING",
    )
    .execute(&pool)
    .await
    .context("seeding customers for pgbench")?;
    pool.close().await;
    Ok(())
}

/// Applies the CRM's migrations (read from `crm-service/migrations/`) to `url`.
pub async fn apply_crm_schema(url: &str) -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crm-service/migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let pool = sqlx::PgPool::connect(url)
        .await
        .context("connecting to the pgbench database")?;
    for file in files {
        let sql = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        sqlx::raw_sql(&sql)
            .execute(&pool)
            .await
            .with_context(|| format!("applying {}", file.display()))?;
    }
    pool.close().await;
    Ok(())
}

/// Runs pgbench with `script` at `clients` connections (prepared statements, like sqlx) for
/// `duration`, and reads the per-transaction log for percentiles.
pub async fn pgbench(
    url: &str,
    script: PgScript,
    clients: usize,
    duration: Duration,
) -> Result<PgBench> {
    let bin =
        std::env::var("PGBENCH").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pgbench".into());
    let dir =
        std::env::temp_dir().join(format!("tandem-pgbench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let (name, sql) = match script {
        PgScript::CustomerWrite => ("customer_write.sql", CUSTOMER_WRITE),
        PgScript::CustomerRead => ("customer_read.sql", CUSTOMER_READ),
    };
    let script = dir.join(name);
    std::fs::write(&script, sql)?;
    let seconds = duration.as_secs().max(1);
    let jobs = clients.clamp(1, 2);
    let mut command = std::process::Command::new(&bin);
    command
        .current_dir(&dir)
        .args(["-n", "-M", "prepared", "-l", "--log-prefix=txlog"])
        .arg(format!("-c{clients}"))
        .arg(format!("-j{jobs}"))
        .arg(format!("-T{seconds}"))
        .arg("-f")
        .arg(&script)
        .arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .with_context(|| format!("running {bin}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "pgbench failed: {}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench output:\n{stdout}"))?;
    let mut latencies = Latencies::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("txlog"));
        if !is_log {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            // client_id transaction_no time_us script_no epoch epoch_us
            if let Some(micros) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                latencies.record(Duration::from_micros(micros));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(PgBench {
        clients,
        seconds: seconds as f64,
        tps,
        latency: latencies.summary(),
    })
}

/// A raw produce -> consume hop: the broker's own latency floor with Tandem's settings.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Hop {
    pub rate: f64,
    pub produced: u64,
    pub received: u64,
    pub latency: Summary,
}

/// The consumer settings of the bridge (see sync-bridge/src/consumer.rs) for `group`.
pub fn bridge_like_consumer(
    brokers: &str,
    group: &str,
    fetch_wait_max_ms: u32,
) -> Result<StreamConsumer> {
    let mut config: ClientConfig = KafkaSettings {
        brokers: brokers.to_owned(),
        ..KafkaSettings::default()
    }
    .client_config()?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait_max_ms.to_string())
        .set("session.timeout.ms", "10000");
    config.create().context("creating a consumer")
}

/// The outbox relay's producer settings (acks=all, one request in flight, linger 2 ms).
pub fn relay_like_producer(brokers: &str) -> Result<FutureProducer> {
    KafkaSettings {
        brokers: brokers.to_owned(),
        ..KafkaSettings::default()
    }
    .producer_config()?
    .create()
    .context("creating a producer")
}

/// Produces at `rate` per second for `duration` to a fresh 3-partition topic and measures
/// send -> receive in a consumer with the bridge's settings. Payloads are ~600 bytes, like
/// a customer event.
/// `topic`: an existing topic to use; `None` creates a fresh one through the admin API.
pub async fn kafka_hop(
    brokers: &str,
    topic: Option<&str>,
    rate: f64,
    duration: Duration,
    fetch_wait_max_ms: u32,
) -> Result<Hop> {
    let topic = match topic {
        Some(topic) => topic.to_owned(),
        None => {
            let topic = format!("bench.hop.{}", uuid::Uuid::now_v7().simple());
            KafkaSettings {
                brokers: brokers.to_owned(),
                ..KafkaSettings::default()
            }
            .ensure_topics(&[&topic])
            .await
            .with_context(|| format!("creating {topic}"))?;
            topic
        }
    };
    let producer = relay_like_producer(brokers)?;
    let consumer = bridge_like_consumer(
        brokers,
        &format!("bench-hop-{}", uuid::Uuid::now_v7().simple()),
        fetch_wait_max_ms,
    )?;
    consumer.subscribe(&[&topic]).context("subscribing")?;
    let origin = Instant::now();
    let payload_of = move |seq: u64| -> Vec<u8> {
        let nanos = origin.elapsed().as_nanos() as u64;
        let mut payload = format!("{nanos} {seq} ").into_bytes();
        payload.resize(600, b'x');
        payload
    };
    // Warm up: the consumer must own its partitions before the clock runs.
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    let mut warmed = false;
    while !warmed && Instant::now() < warm_deadline {
        for partition_key in 0..3u64 {
            let key = format!("warm-{partition_key}");
            let payload = payload_of(u64::MAX);
            let _ = producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(5),
                )
                .await;
        }
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
            warmed = true;
        }
    }
    if !warmed {
        bail!("the hop consumer received nothing from {brokers} in 30 s");
    }
    // Drain what the warm-up left.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), consumer.recv()).await {}

    let total = (rate * duration.as_secs_f64()).round() as u64;
    let produced = Arc::new(AtomicU64::new(0));
    let producer = Arc::new(producer);
    let sender = {
        let (producer, produced, topic) = (producer.clone(), produced.clone(), topic.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            for seq in 0..total {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let (producer, produced, topic) =
                    (producer.clone(), produced.clone(), topic.clone());
                let payload = payload_of(seq);
                tokio::spawn(async move {
                    let key = format!("k{}", seq % 64);
                    if producer
                        .send(
                            FutureRecord::to(&topic).key(&key).payload(&payload),
                            Duration::from_secs(10),
                        )
                        .await
                        .is_ok()
                    {
                        produced.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        })
    };
    let mut latencies = Latencies::new();
    let mut received = 0u64;
    let deadline = Instant::now() + duration + Duration::from_secs(15);
    while received < total && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(Ok(message)) => {
                let now = origin.elapsed().as_nanos() as u64;
                let mut fields = message
                    .payload()
                    .and_then(|p| std::str::from_utf8(p.get(..40.min(p.len()))?).ok())
                    .map(|s| s.split(' ').take(2).map(str::to_owned).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter();
                let sent = fields.next().and_then(|v| v.parse::<u64>().ok());
                let seq = fields.next().and_then(|v| v.parse::<u64>().ok());
                if let (Some(sent), Some(seq)) = (sent, seq)
                    && seq != u64::MAX
                {
                    latencies.record(Duration::from_nanos(now.saturating_sub(sent)));
                    received += 1;
                }
            }
            Ok(Err(error)) => eprintln!("  hop consumer: {error} (continuing)"),
            Err(_) => {}
        }
    }
    let _ = sender.await;
    Ok(Hop {
        rate,
        produced: produced.load(Ordering::Relaxed),
        received,
        latency: latencies.summary(),
    })
}
