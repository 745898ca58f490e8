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
Profiled first (`BENCH_ONLY=rpc` runs with `perf record -g -p <crm pid>` and `perf record -a`, release binaries \
with line tables; PostgreSQL's plans with `auto_explain` and `pg_stat_user_tables`), then changed. This round \
(the report it replaces is listed above as \"before\"):
1. The relay's \"mark published\" UPDATE had been prepared in the leader's session while the outbox was nearly \
empty, as a sequential scan, and kept that plan while the table grew (auto_explain: Seq Scan, Filter id = ANY($1), \
3-7 ms each; 8-10 million rows read per run; half of PostgreSQL's CPU in the write phase). The relay's statements \
are now planned at every execution, and the UPDATE says `AND published_at IS NULL` so the small partial index \
serves it.
2. GetCustomer's lists and finance for one customer are read by `$1::uuid`, not `unnest($1::uuid[])`: PostgreSQL \
plans an array parameter for a hundred elements, so the prepared statement was planned again on every call \
(perf: GetCachedPlan -> standard_planner, a third of PostgreSQL's CPU under reads). pgbench runs the same SQL.
3. sqlx pinged every pooled connection at every acquire, a round trip per request; only a connection idle for \
`database.check_idle_after_ms` (1 s) is checked now.
4. A token that verified is remembered (SHA-256 of the token, bound to the loaded key set and the token's own \
validity window): clients send one token per call, and ES256 in pure Rust was the costliest step of admission.
5. Idle: tansu queries every partition on every fetch and holds each fetch for fetch.wait.max.ms; with SQLite \
storage (each query prepared anew) that costs it most of a core at rest. Its memory engine costs a tenth of \
that but lost acknowledged records under concurrent produce requests (20,000 acknowledged, 19,420 kept), so the \
bench's broker, like `make run`'s, stays on SQLite. So after 2 s of quiet (`consumer.rest_after_ms`) the bridge \
rests: it pauses its partitions and asks for their end offsets every 500 ms (`consumer.rest_check_ms`), one \
request, and fetches again once one moves; the first event after a quiet spell waits up to 500 ms longer (the \
lone-customer figure above). Under `make run`, tansu went from 96.5 % of a core to 1.2 %. The idle figure is now \
sampled once the bridge rests. \
rdkafka's FutureProducer polled in 100 ms steps and spun through the last fraction of a millisecond of each \
(about 1 % of a core per idle process); Tandem's `AckProducer` polls in 1 s steps.
6. The bench: the sustained-throughput ladder climbs past the old 6,000/s cap until a flat rate and a failed one \
bracket the ceiling; the read RPC is measured against pgbench running its own SQL; the idle stack's CPU is summed.
7. Scale: `tandemctl reconcile` held both whole listings in memory (5.3 GiB at its peak over a million customers and \
a million orders, far over the 256 MiB of the pod it is documented to run in). It now streams: the customer \
listings are merge-joined in id order, the ERP's orders are kept as a compact index (about 40 bytes each) while the \
CRM's stream by, and a thousand drifts per kind are kept as examples (all are counted). On the same million rows, \
on a quiet machine: 167 MiB at its peak, 103 s instead of 125 s. `Republish` pages through tokens and writes a \
batch in one INSERT.
8. The snapshot: `ErpSync.ApplyCustomers` wrote a batch one statement per customer (500 round trips per call; \
PostgreSQL was 58 % of a 100k snapshot's samples, most of it the ERP's backends); it is one set-based upsert now \
(`unnest` arrays, the version gate in `ON CONFLICT ... WHERE`). Submitted orders reach the ERP in batches \
(`ErpSync.AcceptOrders`: orders accepted before are answered from one lookup), order statuses the CRM \
(`CrmSync.ApplyOrderStatuses`). The outbox keeps payloads as json, not jsonb: no parse on insert, no printing on \
publish. A million customers into the ERP: 308 s before, 186 s with the set-based upsert, 126 s with the order \
batches and the bench no longer counting the ERP's million rows every 250 ms while it waits (each count took a \
tenth of a second of both cores); the table above has this run's figure.
9. The relay sent a batch, awaited all its acks, marked it and only then read the outbox again: a commit that \
landed meanwhile waited for the previous batch's acks. It now keeps up to 4 batches in flight \
(`outbox.max_batches_in_flight`) and marks them in the order sent, each up to its first failure; after a failure \
nothing later is marked, so it all goes again in order (a failpoint test holds a batch's ack back and refuses it: \
the topic reads v1, v2, v1, v2).
10. The e2e figures: the bench sees a change only when a poll (every 2 ms) answers, so the old figure, the first \
poll that saw it, added about half a poll interval and a query to every latency (1.4 ms at the p50 of CRM -> ERP at \
200/s on the mock cluster), which the raw hop, timed by its consumer as records arrive, does not have. The latency \
is now the midpoint of the window the change became visible in; the first poll that saw it stays beside it, and the \
summary's headline e2e figures keep it, so they compare with earlier runs. Each e2e phase also reports its stages' \
means from the services' own histograms (relay, bridge, apply call): what the figure is made of.
11. sqlx pings every connection it takes back into its pool (a Sync and a wait for ReadyForQuery, in \
`PoolConnection::return_to_pool`, with no switch to turn it off): GetCustomer made three round trips where pgbench \
makes two, a tenth of the CRM's samples (`perf record -g`). The services' database handle (`tandem_common::pool`) now \
keeps a connection a request finished with cleanly warm for the next request, without that round trip; a connection \
with a statement or a rollback still queued, or leased when an error said the database was unreachable, goes back \
through sqlx's pool and its ping (so a restarted database costs one failed request, not one per warm connection); \
one warm for `database.check_idle_after_ms` goes back too. A/B with `BENCH_ONLY=rpc`, the same bench binary, old and \
new CRM alternating: GetCustomer 2,476 and 2,547 calls/s before, 3,264 and 2,986 after (+24 %); CreateCustomer \
1,305 and 1,396 before, 1,436 and 1,157 after (the write phase is dominated by the work downstream of it; no change \
to be seen). A later A/B on a quiet machine, five pairs of `BENCH_ONLY=mock` with the CRM, the ERP and the bridge \
of before and after alternating, found no cost to the e2e path: CRM -> ERP at 200/s midpoint p50 5.17-5.67 ms \
before, 5.08-6.02 after; the ERP's apply call 0.90-1.06 ms before, 0.84-1.05 after.
12. tansu keeps every record's Kafka headers in a table it creates without an index, and looks up each fetched \
record's headers in it: every record it returned scanned every header it held, and every Tandem event carries one \
(`traceparent`). After the write phase (36,713 customers in 20 s) tansu sat at 100 % of a core on SQLite scans, \
the bridge's requests timed out behind its fetch, and 60 s later the ERP held 12,762 of the customers: the two \
runs before this one report no tansu e2e figure at all (nothing seen). The scripts that start tansu now index \
`header (topition, offset_id)` (`scripts/tansu_index.py`); the ERP holds every customer 0.3 s after the writes, \
and the tansu half of the run takes 128 s instead of 314.
13. CreateCustomer without a request id is one statement now: the customer, its contacts and addresses and its \
outbox row (data-modifying `WITH` items) commit together in one round trip, where it was BEGIN, each insert and \
COMMIT; with a request id the same statement runs in the transaction that replays and remembers. pgbench runs the \
same statement (7,239 tps where the four-round-trip transaction made about 4,300). A/B with `BENCH_ONLY=rpc`, three \
pairs, old and new CRM alternating: 1,130, 1,239 and 1,251 calls/s before; 2,276, 1,746 and 1,736 after (+59 %), \
p50 5.0-6.0 ms before, 2.9-3.8 after.
14. Since the report before this one, nothing aimed at these figures; what changed on their path: a database \
connection is checked idle without waiting when its lease ends (sqlx's wait-until-ready polled once) and closed \
when it is not, where it went warm (A/B with `BENCH_ONLY=rpc`, three pairs in both orders: no difference beyond \
the run order's drift); UpdateCustomer is one statement (not measured here); librdkafka links the system's OpenSSL \
(the fresh release build of `make bench` took 10 m 45 s of this run's 18 m 43 s, where building OpenSSL added \
about 4 minutes). This run's machine was quicker than the last one's (pgbench's write 13,206 tps against 8,680): \
compare the ratios.";

/// What to do next, by expected gain.
pub(super) const NEXT: &str = "\
In order of expected gain:
1. Writes share two cores with everything downstream of them: during the write phase the relay, the broker, the \
bridge and the ERP (with its own transactions on the same PostgreSQL) take about half of the CPU pgbench has to \
itself. The CRM's own cost per call is about 200 us of CPU (TLS, HTTP/2, the envelope's JSON, sqlx, the relay's \
produce); a third of it is the kernel switching tasks. Reads (`perf record -a`, GetCustomer at 2,206/s): the CRM \
took 39 % of the two cores, PostgreSQL 40 %, the load generator 15 %, so about 360 us of the CRM's CPU and 360 us of \
PostgreSQL's per call, before warm connections (item 11 above) took sqlx's ping off. What is left per call is \
spread thin: HTTP/2 and TLS on both sides of the gRPC call, the load generator's own gRPC client (pgbench's C client \
costs a fraction of it), the tracing spans each request opens, and one process switch per round trip to \
PostgreSQL. One runtime worker instead of two (`TOKIO_WORKER_THREADS=1`) changed nothing: 2,452 calls/s against \
2,206-2,504 in three runs with two. Writes (`perf record -a`, CreateCustomer at 1,281/s on tansu, before item 13): \
the CRM took 26 % of the machine, PostgreSQL 38 % (the CRM's writes, the relay's reads and marks, the ERP's \
applies), tansu 23 %, the load generator 8 %: with everything downstream of a write on the same two cores, the \
write ratio measures the whole pipeline against PostgreSQL alone.
2. Outbox relay: batches are pipelined now, but each is still marked by its own UPDATE, a new row version per \
row; a high-water mark, with the gaps of transactions still in flight handled, would remove that write.
3. Idle: what is left at rest is the bridge's end-offset check (2 a second), the relays' and the services' \
housekeeping ticks and PostgreSQL's background writers. A longer `consumer.rest_check_ms` cuts the first of them at \
the price of the first event's latency after a quiet spell.
4. Scale: the snapshot is bound by the CPU of two cores shared by PostgreSQL, the bridge, the ERP and the CRM. \
What each customer still costs: the CRM's republish share-locks every row it reads (a WAL record and a dirtied \
page per customer), the relay marks every outbox row published (a new row version with its index entries), and \
the bridge parses every envelope twice (into a JSON tree, then into its payload).";
