//! PostgreSQL connections that can be verified, least privilege at run time and
//! `statement_timeout`, against real PostgreSQL 15 servers: private TLS-only clusters
//! ([`TestPostgres::start_tls`]) and the shared test server.
//!
//! The least-privilege test starts the real `crm-service` binary (build it first:
//! `cargo build -p crm-service`): an older binary that ignores `database.migration_url` would
//! migrate as the runtime role, fail, and never become ready.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    borrow::Cow,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, migrate::Migrator};
use tandem_common::{db, pki::Ca, settings::DatabaseSettings};
use tandem_proto::crm::v1::{self as crm, crm_service_client::CrmServiceClient};
use tandem_tests::security::{self, Security};
use tandem_tests::{
    ServiceProcess, TestBroker, admin_database_url, eventually, free_port,
    postgres::{CERT_USER, DatabaseRoles, TestPostgres, UNNAMED_HOST},
    wait_ready,
};

/// The SQLSTATE of a database error, if it is one.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(Cow::into_owned),
        _ => None,
    }
}

/// Did the TLS handshake reject the server's certificate? sqlx reports it as `Tls`, or as
/// `Io` wrapping rustls' `InvalidCertificate` when the handshake itself fails.
fn rejected_certificate(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => format!("{io:?}").contains("InvalidCertificate"),
        _ => false,
    }
}

async fn start_tls_cluster() -> TestPostgres {
    tokio::task::spawn_blocking(TestPostgres::start_tls)
        .await
        .unwrap()
        .unwrap()
}

async fn connection_is_encrypted(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Runs `sql` on `conn` and returns its SQLSTATE; panics if it succeeds.
async fn refused(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => panic!("{sql:?} succeeded"),
        Err(error) => {
            sqlstate(&error).unwrap_or_else(|| panic!("{sql:?}: not a database error: {error:?}"))
        }
    }
}

fn migrations(service: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(service)
        .join("migrations")
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-pgsec-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn verify_full_connects_only_to_the_named_server_signed_by_the_trusted_ca() {
    let started = Instant::now();
    let pg = start_tls_cluster().await;
    let tls = pg.tls().unwrap();
    let port = pg.port;
    let verify_full = tls.verify_full_query();
    eprintln!("TLS cluster up in {:?}", started.elapsed());

    // The right CA, by host name and by IP address (both in the certificate): encrypted.
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("postgres://postgres@{host}:{port}/postgres?{verify_full}");
        let mut conn = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("verify-full to {host}: {error:?}"));
        assert!(connection_is_encrypted(&mut conn).await, "{host}");
        let version: String =
            sqlx::query_scalar("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        eprintln!("verify-full to {host}: encrypted, {version}");
        conn.close().await.unwrap();
    }

    // Another CA: the server's certificate does not chain to it.
    let other = scratch_dir();
    Ca::generate("Not the server's CA")
        .unwrap()
        .write(&other)
        .unwrap();
    let url = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        other.join("ca.pem").display()
    );
    let error = PgConnection::connect(&url).await.unwrap_err();
    assert!(rejected_certificate(&error), "wrong CA: {error:?}");
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
    eprintln!("wrong CA: {error}");
    // No sslrootcert: the public roots do not know the test CA either.
    let url = format!("postgres://postgres@localhost:{port}/postgres?sslmode=verify-full");
    let error = PgConnection::connect(&url).await.unwrap_err();
    assert!(rejected_certificate(&error), "no CA: {error:?}");
    std::fs::remove_dir_all(&other).unwrap();

    // Plaintext: pg_hba.conf has no `host` line, only `hostssl`.
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
    let error = PgConnection::connect(&url).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("28000"), "{error:?}");
    assert!(error.to_string().contains("no encryption"), "{error}");
    eprintln!("plaintext: {error}");

    // A host the certificate does not name, on the same server and with the right CA.
    let url = format!("postgres://postgres@{UNNAMED_HOST}:{port}/postgres?{verify_full}");
    let error = PgConnection::connect(&url).await.unwrap_err();
    assert!(rejected_certificate(&error), "{UNNAMED_HOST}: {error:?}");
    assert!(
        format!("{error:?}").contains("NotValidForName"),
        "{error:?}"
    );
    eprintln!("verify-full to {UNNAMED_HOST}: {error}");
    // ... which is the name check: without verification the same address answers.
    let url = format!("postgres://postgres@{UNNAMED_HOST}:{port}/postgres?sslmode=require");
    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert!(connection_is_encrypted(&mut conn).await);
    conn.close().await.unwrap();
    // (verify-ca, chain only, should also answer; sqlx 0.8.6 with rustls 0.23.46 checks the
    // name anyway: its name-blind verifier still expects rustls' older error variant.)
    let url = format!(
        "postgres://postgres@{UNNAMED_HOST}:{port}/postgres?sslmode=verify-ca&sslrootcert={}",
        tls.ca_file().display()
    );
    match PgConnection::connect(&url).await {
        Ok(conn) => {
            conn.close().await.unwrap();
            eprintln!("verify-ca to {UNNAMED_HOST}: connected (chain only)");
        }
        Err(error) => eprintln!("verify-ca to {UNNAMED_HOST}: {error} (checks the name too)"),
    }
    // A DNS name not in the certificate, when the machine's own name is a loopback alias.
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    let loopback = tokio::net::lookup_host((hostname, port))
        .await
        .map(|mut addrs| addrs.any(|a: SocketAddr| a.ip().is_loopback()))
        .unwrap_or(false);
    if !hostname.is_empty() && hostname != "localhost" && loopback {
        let url = format!("postgres://postgres@{hostname}:{port}/postgres?{verify_full}");
        let error = PgConnection::connect(&url).await.unwrap_err();
        assert!(rejected_certificate(&error), "{hostname}: {error:?}");
        assert!(
            format!("{error:?}").contains("NotValidForName"),
            "{error:?}"
        );
        eprintln!("verify-full to {hostname}: {error}");
    } else {
        eprintln!("the machine's name {hostname:?} is no loopback alias: DNS-name case skipped");
    }

    // A client certificate given in the URL (sslcert/sslkey) authenticates CERT_USER.
    let mut admin = PgConnection::connect(&pg.admin_url()).await.unwrap();
    sqlx::raw_sql(&format!("CREATE ROLE {CERT_USER} LOGIN"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (cert, key) = tls.client_cert(CERT_USER).unwrap();
    let url = format!(
        "postgres://{CERT_USER}@localhost:{port}/postgres?{verify_full}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    );
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(user, CERT_USER);
    conn.close().await.unwrap();
    let url = format!("postgres://{CERT_USER}@localhost:{port}/postgres?{verify_full}");
    let error = PgConnection::connect(&url).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("28000"), "{error:?}");
    eprintln!("{CERT_USER} without a client certificate: {error}");
    // A certificate for another name does not log in as CERT_USER.
    let (cert, key) = tls.client_cert("somebody_else").unwrap();
    let url = format!(
        "postgres://{CERT_USER}@localhost:{port}/postgres?{verify_full}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    );
    let error = PgConnection::connect(&url).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("28000"), "{error:?}");
    eprintln!("TLS checks done in {:?}", started.elapsed());
}

#[tokio::test]
async fn the_crm_binary_migrates_as_the_owner_and_runs_as_a_role_that_cannot_change_the_schema() {
    let started = Instant::now();
    let pg = start_tls_cluster().await;
    let mut roles = DatabaseRoles::create(&pg.admin_url(), "pgsec_crm")
        .await
        .unwrap();
    let broker = TestBroker::start().await.unwrap();
    let (grpc, http, sync) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let security = Security::create().unwrap();
    let mut crm = ServiceProcess::spawn(
        "crm-service",
        [
            ("CRM__GRPC__LISTEN", grpc.to_string()),
            ("CRM__SYNC__LISTEN", sync.to_string()),
            ("CRM__HTTP__LISTEN", http.to_string()),
            ("CRM__DATABASE__URL", roles.runtime_url.clone()),
            ("CRM__DATABASE__MIGRATION_URL", roles.owner_url.clone()),
            ("CRM__DATABASE__STATEMENT_TIMEOUT_MS", "5000".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(security.service_env("CRM"))
        .chain(broker.service_env("CRM"))
        .collect(),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || wait_ready(http, Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("{error:#}\n{}", crm_output_tail(&crm)));
    eprintln!("crm-service ready in {:?}", started.elapsed());

    // The migrations ran as the owner: it owns the tables.
    let mut owner = PgConnection::connect(&roles.owner_url).await.unwrap();
    let owner_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, tableowner::text FROM pg_tables WHERE schemaname = 'public' \
         ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(
        owners.iter().any(|(table, _)| table == "customers"),
        "{owners:?}"
    );
    assert!(owners.iter().all(|(_, o)| *o == roles.owner), "{owners:?}");
    eprintln!("{} tables, all owned by {}", owners.len(), roles.owner);

    // The service's own sessions (seen by the superuser): the runtime role, all over TLS.
    let mut admin = PgConnection::connect(&pg.admin_url()).await.unwrap();
    let sessions: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.usename::text, coalesce(s.ssl, false) FROM pg_stat_activity a \
         LEFT JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> $2 \
         AND a.backend_type = 'client backend'",
    )
    .bind(&roles.database)
    .bind(owner_pid)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        sessions.iter().any(|(user, _)| *user == roles.runtime),
        "{sessions:?}"
    );
    assert!(sessions.iter().all(|(_, ssl)| *ssl), "{sessions:?}");
    assert!(
        sessions.iter().all(|(user, _)| *user == roles.runtime),
        "the owner's start-up pool stays open: {sessions:?}"
    );

    // As the runtime role: no schema changes...
    let mut app = PgConnection::connect(&roles.runtime_url).await.unwrap();
    assert!(connection_is_encrypted(&mut app).await);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(
        timeout, "0",
        "a plain connection has no timeout (only the pool sets one)"
    );
    for sql in [
        "CREATE TABLE x (i int)",
        "CREATE SCHEMA x",
        "CREATE TEMP TABLE x (i int)",
        "ALTER TABLE customers ADD COLUMN x int",
        "ALTER TABLE customers DROP COLUMN email",
        "DROP TABLE customers",
        "TRUNCATE customers",
        "CREATE INDEX x ON customers (email)",
        "SELECT * FROM _sqlx_migrations",
        "DELETE FROM _sqlx_migrations",
    ] {
        let code = refused(&mut app, sql).await;
        assert_eq!(
            code, "42501",
            "{sql:?} failed with {code}, not insufficient_privilege"
        );
    }
    // ... but reads and writes.
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO customers (id, display_name, email, status, version) \
         VALUES ($1, 'Direct', 'direct@example.com', 'ACTIVE', 1)",
    )
    .bind(id)
    .execute(&mut app)
    .await
    .unwrap();
    let name: String = sqlx::query_scalar("SELECT display_name FROM customers WHERE id = $1")
        .bind(id)
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(name, "Direct");
    sqlx::query("UPDATE customers SET version = 2 WHERE id = $1")
        .bind(id)
        .execute(&mut app)
        .await
        .unwrap();
    sqlx::query("DELETE FROM customers WHERE id = $1")
        .bind(id)
        .execute(&mut app)
        .await
        .unwrap();

    // The service answers: a customer created over gRPC, and its event relayed (the relay
    // reads and updates the outbox as the runtime role).
    let mut client = CrmServiceClient::new(
        security
            .authed(grpc, "least-privilege", security::ALL_ROLES)
            .await
            .unwrap(),
    );
    let created = client
        .create_customer(crm::CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(crm::Customer {
                display_name: "Least Privilege".into(),
                email: "least@example.com".into(),
                ..crm::Customer::default()
            }),
        })
        .await
        .unwrap_or_else(|status| panic!("{status:?}\n{}", crm_output_tail(&crm)))
        .into_inner();
    let stored: String = sqlx::query_scalar("SELECT display_name FROM customers WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&created.id).unwrap())
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(stored, "Least Privilege");
    eventually(Duration::from_secs(20), "the outbox relayed", || {
        let url = roles.owner_url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.ok()?;
            let published: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
                    .fetch_one(&mut conn)
                    .await
                    .ok()?;
            (published > 0).then_some(())
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error:#}\n{}", crm_output_tail(&crm)));
    let output = crm.output();
    assert!(
        output.contains("granted the runtime role its privileges"),
        "{}",
        crm_output_tail(&crm)
    );
    assert!(
        !output.contains("can change the schema"),
        "{}",
        crm_output_tail(&crm)
    );

    assert!(crm.terminate(Duration::from_secs(15)).unwrap());
    app.close().await.unwrap();
    owner.close().await.unwrap();
    admin.close().await.unwrap();
    roles.drop_all().await.unwrap();
    eprintln!("least-privilege checks done in {:?}", started.elapsed());
}

fn crm_output_tail(crm: &ServiceProcess) -> String {
    let output = crm.output();
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test]
async fn prepare_grants_after_every_migration_run_and_bounds_statements() {
    let started = Instant::now();
    let mut roles = DatabaseRoles::create(&admin_database_url(), "pgsec_prep")
        .await
        .unwrap();
    let outcome = prepare_checks(&roles).await;
    roles.drop_all().await.unwrap();
    outcome.unwrap();
    eprintln!("prepare checks done in {:?}", started.elapsed());
}

async fn prepare_checks(roles: &DatabaseRoles) -> anyhow::Result<()> {
    let full = Migrator::new(migrations("erp-service")).await?;
    anyhow::ensure!(
        full.migrations.len() >= 2,
        "the ERP has fewer migrations than expected"
    );
    // First the first migration only, as an older release would have run.
    let mut first = Migrator::new(migrations("erp-service")).await?;
    first.migrations = Cow::Owned(full.migrations[..1].to_vec());
    let settings = DatabaseSettings {
        url: roles.runtime_url.clone(),
        migration_url: roles.owner_url.clone(),
        statement_timeout_ms: 300,
        ..DatabaseSettings::default()
    };
    let pool = db::prepare(&settings, &first, Duration::from_secs(10)).await?;
    let tables_before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' \
         AND tablename <> '_sqlx_migrations'",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;

    // Then the whole set: the tables added since are granted too (and again: idempotent).
    for _ in 0..2 {
        let pool = db::prepare(&settings, &full, Duration::from_secs(10)).await?;
        pool.close().await;
    }
    let pool = db::prepare(&settings, &full, Duration::from_secs(10)).await?;
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(me == roles.runtime, "the pool runs as {me}");
    // Every table of schema public but the migrations' bookkeeping, seen by the runtime role.
    const TABLES: &str = "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
         AND c.relname <> '_sqlx_migrations'";
    let missing: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT c.relname::text {TABLES} AND NOT (has_table_privilege(c.oid, 'SELECT') \
         AND has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE') \
         AND has_table_privilege(c.oid, 'DELETE')) ORDER BY 1"
    ))
    .fetch_all(&pool)
    .await?;
    anyhow::ensure!(missing.is_empty(), "not granted: {missing:?}");
    let (tables_after, extra): (i64, Option<bool>) = sqlx::query_as(&format!(
        "SELECT count(*), bool_or(has_table_privilege(c.oid, 'TRUNCATE') \
         OR has_table_privilege(c.oid, 'REFERENCES') OR has_table_privilege(c.oid, 'TRIGGER')) \
         {TABLES}"
    ))
    .fetch_one(&pool)
    .await?;
    let extra = extra.unwrap_or(false);
    anyhow::ensure!(!extra, "the runtime role holds more than it needs");
    anyhow::ensure!(
        tables_after > tables_before,
        "the later migrations added no table ({tables_before} -> {tables_after})"
    );
    // The ERP's own sequence, and its append-only trigger (EXECUTE is PUBLIC's).
    let number: i64 = sqlx::query_scalar("SELECT nextval('invoice_numbers')")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(number >= 1);
    let no_schema: (bool, bool, bool) = sqlx::query_as(
        "SELECT has_schema_privilege('public', 'CREATE'), \
                has_database_privilege(current_database(), 'CREATE'), \
                has_table_privilege('_sqlx_migrations', 'SELECT')",
    )
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(no_schema == (false, false, false), "{no_schema:?}");
    let mut conn = pool.acquire().await?;
    let code = refused(&mut conn, "CREATE TABLE x (i int)").await;
    anyhow::ensure!(code == "42501", "CREATE TABLE: {code}");
    let code = refused(&mut conn, "ALTER TABLE stock_ledger DISABLE TRIGGER ALL").await;
    anyhow::ensure!(code == "42501", "ALTER TABLE: {code}");
    drop(conn);

    // statement_timeout: on every pooled connection.
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(timeout == "300ms", "statement_timeout is {timeout}");
    sqlx::query("SELECT pg_sleep(0.05)").execute(&pool).await?;
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let pool = pool.clone();
        sleepers.push(tokio::spawn(async move {
            let begun = Instant::now();
            let outcome = sqlx::query("SELECT pg_sleep(3)").execute(&pool).await;
            (outcome, begun.elapsed())
        }));
    }
    for sleeper in sleepers {
        let (outcome, took) = sleeper.await?;
        let Err(error) = outcome else {
            anyhow::bail!("pg_sleep(3) outlived a 300 ms statement_timeout");
        };
        anyhow::ensure!(
            sqlstate(&error).as_deref() == Some("57014"),
            "pg_sleep(3): {error:?}"
        );
        anyhow::ensure!(
            took < Duration::from_secs(2),
            "cancelled only after {took:?}"
        );
        eprintln!("pg_sleep(3) cancelled after {took:?}: {error}");
    }
    pool.close().await;

    // Without a migration URL, migrations run over `url`: here the runtime role's, which
    // cannot create anything, so they fail, and say over which key.
    let single = DatabaseSettings {
        url: roles.runtime_url.clone(),
        ..DatabaseSettings::default()
    };
    let mut fresh = Migrator::new(migrations("crm-service")).await?;
    fresh.migrations = Cow::Owned(fresh.migrations[..1].to_vec());
    match db::prepare(&single, &fresh, Duration::from_secs(5)).await {
        Ok(_) => anyhow::bail!("the runtime role ran a migration"),
        Err(error) => {
            let text = error.to_string();
            anyhow::ensure!(
                text.contains("database.url") && text.contains("permission denied"),
                "{text}"
            );
            eprintln!("migrating as the runtime role: {text}");
        }
    }
    Ok(())
}
