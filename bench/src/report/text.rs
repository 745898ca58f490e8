//! The report's fixed prose: how the figures were measured and what was and will be optimised.

pub(super) const METHOD: &str = "\
- One run, one machine: `make bench` provisions PostgreSQL and the broker binary like `make test`, builds the \
release binaries, then `cargo run --release -p tandem-bench` starts the real stack through the test kit (a private \
tansu broker on a free loopback port, two fresh databases, the three release binaries with their default settings).
- Load generator: Rust, tonic clients, HDR histograms (1 µs resolution). Closed loop for RPC throughput (8 clients, \
one HTTP/2 connection each, 1 s warm-up excluded); open loop at a fixed arrival rate for everything else (latency \
counted from the scheduled start, so a stall is not hidden by the generator waiting).
- Baselines in the same run: tonic's hello-world Greeter served in-process on a 2-thread runtime of its own; \
pgbench (`-M prepared`, 8 clients, 2 threads) running CreateCustomer's SQL (customer row and the outbox row with a \
real-sized envelope, in one transaction) and, separately, GetCustomer's two queries, on a throw-away database with \
the CRM's migrations; a raw produce -> consume hop with the outbox relay's producer settings (acks=all, one request in flight, linger 2 ms) \
and the bridge's consumer settings (fetch.wait.max.ms 10 on tansu, the bridge's default; 1 on the mock cluster, which \
also holds an empty fetch for the whole wait, so 1 ms approximates a Kafka broker answering when data arrives), ~600-byte \
payloads, on the same broker at the same rate; \
the same hop and the same e2e figures against librdkafka's in-process mock cluster (`rdkafka::mocking`), to which the \
three services connect over loopback.
- Bridge throughput and recovery load the bridge alone: valid `crm.customer.upserted` events (each a new customer) are \
produced straight into `crm.customers`, as the CRM's relay would publish them.
- Resources from /proc/PID/stat (utime + stime) and /proc/PID/status (VmRSS), sampled every 500 ms.
- `BENCH_QUICK=1` (or `BENCH_SCALE=0.2`) shortens every phase for a smoke run; the report then says so.";

pub(super) const OPTIMISATIONS: &str = "\
Profiled first (`BENCH_ONLY=rpc make bench`-style runs with `perf record -g -p <crm pid>` and `perf record -a`, \
release binaries with line tables), then changed, each keeping every guarantee (the whole `make test`, chaos and \
crash-point suites included):
1. Bridge apply path, the sustained-throughput limit: `crm.customers` events were applied one \
`ErpSync.ApplyCustomer` call and one ERP transaction at a time per partition. Now a partition's waiting events go \
in one `ErpSync.ApplyCustomers` call (one transaction, the newest version of each customer once, each row still \
version-gated), like stock levels to the CRM already were.
2. CRM reads: GetCustomer made four queries (customer, contacts, addresses, finance); the profile showed the CRM \
mostly waiting and switching tasks per round trip. Now two: the row, then the lists as JSON arrays and the finance \
view joined in one query (also for ListCustomers and updates).
3. CRM writes: CreateCustomer deleted the (never existing) contacts and addresses of a new customer; now it does not: \
insert, outbox insert, commit. pgbench's script was changed alike, so the baseline is still the same SQL.
4. Telemetry: the OpenTelemetry layer received every span and event of every level (sqlx, h2, hyper at TRACE \
included), about a tenth of the CRM's CPU in the profile; it now sees only what the log filter selects.
5. The bench itself: the backlog for the bridge's drain rate is produced with the bridge stopped at 2,000/s (an \
open-loop 5,000/s burst made the local broker stop answering), and the bench's bridge takes its partitions itself \
(`consumer.assignment = all`), so its restarts involve no group coordination. On the mock cluster the bridge and \
the hop's consumer now use fetch.wait.max.ms 1 (10 before): the mock holds an empty fetch for the whole wait, so \
its floor fell from 7.4 to 3.3 ms; compare the mock figures by their ratio to the hop, not in ms. The bridge's \
throughput and recovery moved to the mock cluster (tansu stopped answering under their load).";

pub(super) const NEXT: &str = "\
In order of expected gain:
1. Outbox relay: one cycle is select unpublished rows, produce them and wait for every ack (linger 2 ms plus the \
broker's write), then one `UPDATE ... WHERE id = ANY($1)`; a commit that lands during a cycle waits for the next. \
Pipelining cycles (select the next batch while the previous one awaits its acks, marking in order) would take the \
ack wait off the latency of later commits.
2. Broker floor on local runs: tansu holds every fetch for fetch.wait.max.ms (10 ms by default), which is most of \
the local p50, and its idle fetches cost it a quarter of a core (seen in `perf record -a` while only reads ran); \
production Kafka answers as soon as data arrives, as the mock-cluster figures show.
3. Per-call overhead of the services: in the CRM's profile under load, a third of its CPU is the kernel switching \
tasks and waking sockets (one wake-up per PostgreSQL round trip and per HTTP/2 frame), then allocation and tracing. \
Fewer round trips (a single statement for GetCustomer, the customer and outbox inserts as one CTE) and a \
current-thread runtime per core are the next steps.";
