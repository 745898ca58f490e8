//! `tandem_common::pool`: connections that end cleanly stay warm (no ping on the way back), a
//! transaction dropped open rolls back and frees its locks, and a database that went away
//! costs one failed request, not one per warm connection. Against a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sqlx::{Connection, PgPool, postgres::PgPoolOptions};
use tandem_common::pool::{Db, note_error};
use tandem_tests::{TestDatabase, postgres::TestPostgres};

/// One test at a time: a noted error reaches every pool of the process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn db_over(url: &str, max: u32) -> Db {
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .connect(url)
        .await
        .unwrap();
    Db::new(pool, Duration::from_secs(30))
}

async fn backend(db: &Db) -> i32 {
    let mut lease = db.acquire().await.unwrap();
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *lease)
        .await
        .unwrap()
}

/// Polls `check` (every 20 ms, for at most 5 s) until it holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Waits until no connection is out of `db` (every one warm or idle in sqlx's pool).
async fn all_back(db: &Db, what: &str) {
    eventually(what, async || {
        db.warm() + db.pool().num_idle() == db.pool().size() as usize
    })
    .await;
}

/// The next request: inserts `id` into `table` on a lease of its own.
async fn next_insert(db: &Db, table: &str, id: i32) -> Result<(), sqlx::Error> {
    let mut lease = db.acquire().await.unwrap();
    sqlx::query(&format!("INSERT INTO {table} VALUES ($1)"))
        .bind(id)
        .execute(&mut *lease)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_clean_lease_stays_warm_and_the_next_acquire_takes_it() {
    let _serial = SERIAL.lock().await;
    let database = TestDatabase::create("pool_warm").await.unwrap();
    let db = db_over(&database.url, 2).await;

    let first = backend(&db).await;
    // Kept warm: sqlx still counts it as in use (it never went back through its ping).
    assert_eq!(db.warm(), 1);
    assert_eq!(db.pool().num_idle(), 0);
    assert_eq!(db.pool().size(), 1);
    // The next request gets the same connection, and no second one is opened.
    assert_eq!(backend(&db).await, first);
    assert_eq!(db.pool().size(), 1);

    // A connection that was warm too long goes back to sqlx's pool.
    let short = Db::new(db.pool().clone(), Duration::from_millis(50));
    let _ = backend(&short).await;
    assert_eq!(short.warm(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    short.sweep();
    assert_eq!(short.warm(), 0);
    eventually("the swept connection is idle in sqlx's pool", async || {
        db.pool().num_idle() >= 1
    })
    .await;
}

#[tokio::test]
async fn a_transaction_dropped_open_rolls_back_and_frees_its_locks() {
    let _serial = SERIAL.lock().await;
    let database = TestDatabase::create("pool_rollback").await.unwrap();
    let db = db_over(&database.url, 2).await;
    let other = PgPool::connect(&database.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY, n int); INSERT INTO t VALUES (1, 0);")
        .execute(&other)
        .await
        .unwrap();

    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE t SET n = 1 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (2, 0)")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx);

    // The row lock is gone (NOWAIT would fail while the transaction held it) and nothing of
    // the transaction stayed.
    eventually("the dropped transaction rolled back", async || {
        let mut conn = other.acquire().await.unwrap();
        let mut check = conn.begin().await.unwrap();
        let locked = sqlx::query("SELECT id FROM t WHERE id = 1 FOR UPDATE NOWAIT")
            .execute(&mut *check)
            .await
            .is_err();
        !locked
    })
    .await;
    assert_eq!(count(&other, "SELECT count(*) FROM t").await, 1);
    assert_eq!(count(&other, "SELECT n::int8 FROM t WHERE id = 1").await, 0);
    // The rolled-back connection is clean again and stays warm.
    eventually("the connection is warm again", async || db.warm() == 1).await;
    // A new transaction on it commits only itself: had the connection been left inside the
    // old transaction, this COMMIT would keep row 2 and n = 1 too.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO t VALUES (3, 0)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&other, "SELECT count(*) FROM t").await, 2);
    assert_eq!(count(&other, "SELECT n::int8 FROM t WHERE id = 1").await, 0);
}

#[tokio::test]
async fn a_lease_with_a_rollback_still_queued_leaves_no_transaction_behind() {
    let _serial = SERIAL.lock().await;
    let database = TestDatabase::create("pool_queued").await.unwrap();
    let db = db_over(&database.url, 2).await;
    let other = PgPool::connect(&database.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(&other)
        .await
        .unwrap();

    let mut lease = db.acquire().await.unwrap();
    {
        // sqlx's own transaction on the leased connection: dropped open, it only queues its
        // ROLLBACK, to be sent with the connection's next message.
        let mut tx = lease.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    drop(lease);
    // The connection is closed (or, had the ROLLBACK's answer been read at once, warm).
    eventually("no connection is left inside the transaction", async || {
        count(
            &other,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .await
            == 0
    })
    .await;
    assert_eq!(count(&other, "SELECT count(*) FROM t").await, 0);
    // The next request commits on its own.
    next_insert(&db, "t", 2).await.unwrap();
    assert_eq!(count(&other, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn a_database_that_went_away_costs_one_failed_request_not_one_per_warm_connection() {
    let _serial = SERIAL.lock().await;
    let server = TestPostgres::start().unwrap();
    server.create_database("warm").await.unwrap();
    let url = server.url("warm");
    let db = db_over(&url, 8).await;
    // Three connections warm.
    let leases = [
        db.acquire().await.unwrap(),
        db.acquire().await.unwrap(),
        db.acquire().await.unwrap(),
    ];
    drop(leases);
    assert_eq!(db.warm(), 3);

    server.stop().unwrap();
    server.resume().unwrap();

    let mut failures = 0;
    for _ in 0..4 {
        let mut lease = db.acquire().await.unwrap();
        let answered: Result<i32, sqlx::Error> =
            sqlx::query_scalar("SELECT 1").fetch_one(&mut *lease).await;
        if let Err(error) = answered {
            // What the services' error conversion does.
            note_error(&error);
            failures += 1;
        }
    }
    assert_eq!(
        failures, 1,
        "every warm connection failed a request of its own"
    );
}

#[tokio::test]
async fn a_begin_given_up_in_flight_leaves_no_connection_inside_a_transaction() {
    let _serial = SERIAL.lock().await;
    let database = TestDatabase::create("pool_begin").await.unwrap();
    let db = db_over(&database.url, 2).await;
    let other = PgPool::connect(&database.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(&other)
        .await
        .unwrap();
    let _ = backend(&db).await; // one connection warm, so the begin below sends BEGIN at once

    for id in 1..=20_i32 {
        // A caller that gives up (a client's deadline, say) after BEGIN went out and before
        // its answer came: one poll sends it, then the future is dropped.
        let _ = futures::FutureExt::now_or_never(db.begin());
        // The next request's statement commits by itself, on whichever connection it gets.
        // Had a connection gone warm inside the abandoned BEGIN's transaction, the insert
        // would be acknowledged and never committed (and lost when that connection rolls
        // back or closes).
        all_back(&db, "every connection is back").await;
        next_insert(&db, "t", id).await.unwrap();
        assert_eq!(
            count(&other, "SELECT count(*) FROM t").await,
            i64::from(id),
            "insert {id} was acknowledged but is not committed: its connection was inside a transaction"
        );
    }
}

#[tokio::test]
async fn a_commit_given_up_in_flight_hands_its_failure_to_no_other_request() {
    let _serial = SERIAL.lock().await;
    let database = TestDatabase::create("pool_commit").await.unwrap();
    let db = db_over(&database.url, 2).await;
    let other = PgPool::connect(&database.url).await.unwrap();
    // A deferred unique constraint: the duplicate fails at COMMIT, not at the INSERT.
    sqlx::raw_sql(
        "CREATE TABLE t (id int, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED); \
         CREATE TABLE u (id int)",
    )
    .execute(&other)
    .await
    .unwrap();

    for id in 1..=10_i32 {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (0), (0)")
            .execute(&mut *tx)
            .await
            .unwrap();
        // Given up after COMMIT went out and before its answer (the failure) came.
        let _ = futures::FutureExt::now_or_never(tx.commit());
        all_back(&db, "every connection is back").await;
        // The next request gets its own answer, not the abandoned COMMIT's failure.
        let inserted = next_insert(&db, "u", id).await;
        assert!(
            inserted.is_ok(),
            "request {id} got another request's error: {inserted:?}"
        );
        assert_eq!(count(&other, "SELECT count(*) FROM u").await, i64::from(id));
    }
    assert_eq!(count(&other, "SELECT count(*) FROM t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_of_a_call_given_up_hands_its_failure_to_no_other_request() {
    // A call (as the gRPC limits run it) given up while its statement is in flight: a
    // deadline, or a client that went away.
    statements_given_up_in_flight("pool_given_up", |insert| {
        Box::pin(tandem_common::limits::as_call(insert))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_dropped_in_flight_outside_any_call_holds_no_connection() {
    // A future dropped with its statement in flight outside any gRPC call: a background
    // task's own timeout, say.
    statements_given_up_in_flight("pool_dropped", |insert| insert).await;
}

/// Ten times: a statement that fails 50 ms after it is sent is given up 10 ms in, by dropping
/// the future `wrap` makes of it. Its connection must not be held (sqlx's ping over TLS could
/// hang on the failure and keep the pool's slot for good), and the next request must not read
/// its failure as its own.
async fn statements_given_up_in_flight(
    name: &str,
    wrap: impl Fn(
        futures::future::BoxFuture<'static, Result<(), sqlx::Error>>,
    ) -> futures::future::BoxFuture<'static, Result<(), sqlx::Error>>,
) {
    let _serial = SERIAL.lock().await;
    let database = TestDatabase::create(name).await.unwrap();
    let db = db_over(&database.url, 2).await;
    let other = PgPool::connect(&database.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (0); CREATE TABLE u (id int)",
    )
    .execute(&other)
    .await
    .unwrap();
    let _ = backend(&db).await; // one connection warm, so the statement below is sent at once

    for id in 1..=10_i32 {
        let given_up = tokio::spawn(wrap(failing_insert(db.clone())));
        tokio::time::sleep(Duration::from_millis(10)).await;
        given_up.abort();
        assert!(given_up.await.is_err_and(|e| e.is_cancelled()));
        all_back(&db, "no connection is held by the statement given up").await;
        let inserted = next_insert(&db, "u", id).await;
        assert!(
            inserted.is_ok(),
            "request {id} got another request's error: {inserted:?}"
        );
    }
    assert_eq!(count(&other, "SELECT count(*) FROM u").await, 10);
}

/// An insert that fails 50 ms after it is sent (boxed: the compiler cannot prove sqlx's
/// executor futures `Send` through `spawn` otherwise).
fn failing_insert(db: Db) -> futures::future::BoxFuture<'static, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let mut lease = db.acquire().await?;
        let conn: &mut sqlx::PgConnection = &mut lease;
        sqlx::Executor::execute(conn, "INSERT INTO t SELECT 0 FROM pg_sleep(0.05)")
            .await
            .map(|_| ())
    })
}
