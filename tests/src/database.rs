//! Throw-away databases on the test PostgreSQL server, and free ports.

use std::net::TcpListener;

use anyhow::{Context, Result};
use sqlx::{Connection, PgConnection};

/// The admin URL of the test PostgreSQL server.
pub fn admin_database_url() -> String {
    std::env::var("TANDEM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".to_owned())
}

/// A database of its own for one test, created empty.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(label: &str) -> Result<Self> {
        let admin = admin_database_url();
        let name = format!("test_{label}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to the test PostgreSQL at {admin}; run `make test` or scripts/postgres.sh start"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        // The query (e.g. `sslmode=verify-full&sslrootcert=/path`) is kept as it is.
        let (path, query) = match admin.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (admin.as_str(), String::new()),
        };
        let base = path
            .rsplit_once('/')
            .map(|(base, _)| base.to_owned())
            .context("admin URL has no database part")?;
        Ok(Self {
            url: format!("{base}/{name}{query}"),
            name,
        })
    }

    pub async fn connect(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
///
/// Ports come from 20000..32000, below Linux's ephemeral range (32768..60999): a port taken
/// from the ephemeral range could be handed to some outgoing connection before the process
/// it was meant for binds it. Within one test binary no port is handed out twice (the tests
/// of a binary run in parallel).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = (std::process::id().wrapping_mul(7_919)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = u16::try_from(BASE + n).unwrap_or(0);
        if port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}
