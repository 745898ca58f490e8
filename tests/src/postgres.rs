//! A private PostgreSQL server for tests that stop and restart the database itself (the
//! shared test server must stay up for every other test). Uses the machine's PostgreSQL 15
//! binaries, like `scripts/postgres.sh`; as root, the cluster belongs to `postgres`.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{free_port, wait_for_tcp};

/// A throw-away cluster on a free loopback port, stopped and deleted when dropped.
pub struct TestPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn pg_bin() -> Result<PathBuf> {
    let candidates = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL binaries not found in /usr/lib/postgresql")?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists());
    candidates
        .max()
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the cluster's owner.
fn as_owner(program: &PathBuf, args: &[&str]) -> Result<()> {
    let status = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
    } else {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
    };
    if !status.success() {
        bail!("{} {args:?} failed: {status}", program.display());
    }
    Ok(())
}

impl TestPostgres {
    /// Creates and starts the cluster, with trust authentication for `postgres`.
    pub fn start() -> Result<Self> {
        let bin = pg_bin()?;
        let base = if is_root() {
            PathBuf::from("/var/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("tandem-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()?;
            if !status.success() {
                bail!("cannot chown {}", dir.display());
            }
        }
        let data = dir.to_string_lossy().into_owned();
        as_owner(
            &bin.join("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        )?;
        let pg = Self {
            port: free_port(),
            dir,
            bin,
        };
        pg.resume()?;
        Ok(pg)
    }

    /// The admin URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url()).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Stops the server now (`immediate`: like a crash; the data survives).
    pub fn stop(&self) -> Result<()> {
        let data = self.dir.to_string_lossy().into_owned();
        as_owner(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        )
    }

    /// Starts the stopped server again on the same port and data.
    pub fn resume(&self) -> Result<()> {
        let data = self.dir.to_string_lossy().into_owned();
        let log = format!("{data}/server.log");
        let options = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        as_owner(
            &self.bin.join("pg_ctl"),
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        )?;
        wait_for_tcp(([127, 0, 0, 1], self.port).into(), Duration::from_secs(20))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
