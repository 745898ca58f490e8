//! A private PostgreSQL server for tests that stop and restart the database itself (the
//! shared test server must stay up for every other test), or that need TLS
//! ([`TestPostgres::start_tls`]). Uses the machine's PostgreSQL 15 binaries, like
//! `scripts/postgres.sh`; as root, the cluster belongs to `postgres`.
//!
//! [`DatabaseRoles`]: a throw-away database with an owner role and a runtime role, on any
//! server (the shared one or a private one), for the two-role set-up of `tandem_common::db`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use sqlx::{Connection, PgConnection};
use tandem_common::pki::{Ca, Usage};

use crate::{free_port, wait_for_tcp};

/// The user a [`TestPostgres::start_tls`] cluster authenticates by client certificate only
/// (`cert` in `pg_hba.conf`): a certificate from [`PgTls::client_cert`] for this name logs in
/// as it once the role exists (`CREATE ROLE tandem_cert LOGIN`).
pub const CERT_USER: &str = "tandem_cert";

/// A second loopback address a TLS cluster also listens on, which its certificate does not
/// name: for checking that `verify-full` refuses a host the certificate is not for.
pub const UNNAMED_HOST: &str = "127.0.0.2";

/// The TLS side of a [`TestPostgres::start_tls`] cluster: the CA that signed the server's
/// certificate (for `localhost` and 127.0.0.1) and the clients' files.
pub struct PgTls {
    /// The test CA; it also signs client certificates, which the server trusts.
    pub ca: Ca,
    dir: PathBuf,
}

impl PgTls {
    /// The CA's certificate, for `sslrootcert`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `sslmode=verify-full&sslrootcert=<the CA>`: what a client appends to a URL.
    pub fn verify_full_query(&self) -> String {
        format!(
            "sslmode=verify-full&sslrootcert={}",
            self.ca_file().display()
        )
    }

    /// A client certificate for `user` (its common name) signed by the CA, written next to
    /// the CA; returns the certificate's and the key's paths (for `sslcert` and `sslkey`).
    pub fn client_cert(&self, user: &str) -> Result<(PathBuf, PathBuf)> {
        let issued = self.ca.issue(&[user], Usage::Client)?;
        let stem = format!("client-{user}");
        issued.write(&self.dir, &stem)?;
        Ok((
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        ))
    }
}

/// A throw-away cluster on a free loopback port, stopped and deleted when dropped.
pub struct TestPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    tls: Option<PgTls>,
    /// Also reachable at this address from this subnet (a test network's gateway, see
    /// [`crate::netns::Lab`]); its URLs then name that address.
    network: Option<(std::net::Ipv4Addr, String)>,
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

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the cluster's owner.
pub(crate) fn as_owner(program: &PathBuf, args: &[&str]) -> Result<()> {
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

pub(crate) fn chown_to_postgres(path: &Path) -> Result<()> {
    if is_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(path)
            .status()?;
        if !status.success() {
            bail!("cannot chown {}", path.display());
        }
    }
    Ok(())
}

impl TestPostgres {
    /// Creates and starts the cluster, with trust authentication for `postgres`.
    pub fn start() -> Result<Self> {
        Self::create(false, None)
    }

    /// Creates and starts a cluster that only speaks TLS: `ssl = on` with a server
    /// certificate for `localhost` and 127.0.0.1 from a fresh test CA ([`TestPostgres::tls`]),
    /// and a `pg_hba.conf` with only `hostssl` lines from 127.0.0.1 — a plaintext connection
    /// is refused. `postgres` logs in without a password (trust), [`CERT_USER`] by client
    /// certificate, every other role by password (SCRAM). It also listens on
    /// [`UNNAMED_HOST`]. Its URLs ([`TestPostgres::url`]) carry `sslmode=verify-full`.
    pub fn start_tls() -> Result<Self> {
        Self::create(true, None)
    }

    /// [`TestPostgres::start_tls`], also listening on `host` and accepting connections from
    /// `subnet` (a test network's gateway and subnet): processes in the network's namespaces
    /// reach it, and its URLs name `host`.
    pub fn start_tls_at(host: std::net::Ipv4Addr, subnet: &str) -> Result<Self> {
        Self::create(true, Some((host, subnet.to_owned())))
    }

    fn create(tls: bool, network: Option<(std::net::Ipv4Addr, String)>) -> Result<Self> {
        let bin = pg_bin()?;
        let base = if is_root() {
            PathBuf::from("/var/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("tandem-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        chown_to_postgres(&dir)?;
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
        let mut pg = Self {
            port: free_port(),
            dir,
            bin,
            tls: None,
            network,
        };
        if tls {
            pg.tls = Some(pg.configure_tls()?);
        }
        pg.resume()?;
        Ok(pg)
    }

    /// Writes the server's certificate and key into the data directory, the CA into a
    /// directory next to it, and the TLS settings and `pg_hba.conf`.
    fn configure_tls(&self) -> Result<PgTls> {
        let ca = Ca::generate("Tandem test PostgreSQL CA")?;
        let client_dir = self.dir.with_extension("tls");
        std::fs::create_dir_all(&client_dir)?;
        ca.write(&client_dir)?;
        let host = self.network.as_ref().map(|(ip, _)| ip.to_string());
        let names: Vec<&str> = ["localhost", "127.0.0.1"]
            .into_iter()
            .chain(host.as_deref())
            .collect();
        let server = ca.issue(&names, Usage::Server)?;
        server.write(&self.dir, "server")?;
        // The server trusts the CA for client certificates too.
        tandem_common::pki::write(&self.dir.join("root.pem"), ca.cert_pem(), false)?;
        for file in ["server.pem", "server.key", "root.pem"] {
            chown_to_postgres(&self.dir.join(file))?;
        }
        let conf = self.dir.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        settings.push_str(
            "\n# Tandem test kit: TLS only\nssl = on\nssl_cert_file = 'server.pem'\n\
             ssl_key_file = 'server.key'\nssl_ca_file = 'root.pem'\n",
        );
        std::fs::write(&conf, settings)?;
        let mut hba = format!(
            "# Tandem test kit: TLS only, from 127.0.0.1\n\
             local   all all                    trust\n\
             hostssl all postgres 127.0.0.1/32  trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             hostssl all all      127.0.0.1/32  scram-sha-256\n"
        );
        if let Some((_, subnet)) = &self.network {
            hba.push_str(&format!(
                "hostssl all postgres {subnet}  trust\nhostssl all all      {subnet}  scram-sha-256\n"
            ));
        }
        std::fs::write(self.dir.join("pg_hba.conf"), hba)?;
        Ok(PgTls {
            ca,
            dir: client_dir,
        })
    }

    /// The data directory (`PGDATA`), which is also the server's socket directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the PostgreSQL programs this cluster runs with.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The CA and client files of a [`TestPostgres::start_tls`] cluster.
    pub fn tls(&self) -> Option<&PgTls> {
        self.tls.as_ref()
    }

    /// The admin URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The URL of database `name` on this server (as `postgres`; with `sslmode=verify-full`
    /// against the test CA when the cluster speaks TLS).
    pub fn url(&self, name: &str) -> String {
        let host = self
            .network
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_owned(), |(ip, _)| ip.to_string());
        let base = format!("postgres://postgres@{host}:{}/{name}", self.port);
        match &self.tls {
            Some(tls) => format!("{base}?{}", tls.verify_full_query()),
            None => base,
        }
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url()).await?;
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
        let mut listen = if self.tls.is_some() {
            format!("127.0.0.1,{UNNAMED_HOST}")
        } else {
            "127.0.0.1".to_owned()
        };
        if let Some((ip, _)) = &self.network {
            listen.push_str(&format!(",{ip}"));
        }
        let options = format!(
            "-p {} -k {data} -c listen_addresses={listen} -c fsync=off",
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
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
    }
}

/// A throw-away database for the two-role set-up of `tandem_common::db`: owned by an owner
/// role, with a runtime role that may only connect (no `CREATE` on the database; PostgreSQL
/// 15 gives `PUBLIC` no `CREATE` on schema `public`), both `LOGIN` with a random password.
/// `DROP`ped with both roles by [`DatabaseRoles::drop_all`], or when dropped.
pub struct DatabaseRoles {
    pub database: String,
    pub owner: String,
    /// URL of `database` as the owner: for `database.migration_url`.
    pub owner_url: String,
    pub runtime: String,
    /// URL of `database` as the runtime role: for `database.url`.
    pub runtime_url: String,
    admin_url: String,
    dropped: bool,
}

/// `admin_url` with another user, password and database; its host, port and query (TLS
/// parameters, say) are kept.
fn url_for(admin_url: &str, user: &str, password: &str, database: &str) -> Result<String> {
    let (scheme, rest) = admin_url
        .split_once("://")
        .context("the admin URL has no scheme")?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!(
        "{scheme}://{user}:{password}@{host}/{database}{query}"
    ))
}

impl DatabaseRoles {
    /// Creates `test_<label>_<random>` and the roles `<it>_owner` and `<it>_app` on the server
    /// of `admin_url` (a superuser's URL), the way `tandem_common::db` tells operators to.
    pub async fn create(admin_url: &str, label: &str) -> Result<Self> {
        ensure!(
            label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "label {label:?}: lower-case letters, digits and _ only"
        );
        // A v7 UUID's last 12 hex digits are random (its first ones are the time).
        let random = uuid::Uuid::now_v7().simple().to_string();
        let database = format!("test_{label}_{}", &random[20..]);
        let owner = format!("{database}_owner");
        ensure!(owner.len() <= 63, "label {label:?} is too long");
        let runtime = format!("{database}_app");
        let owner_password = uuid::Uuid::now_v7().simple().to_string();
        let runtime_password = uuid::Uuid::now_v7().simple().to_string();
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        let roles = Self {
            owner_url: url_for(admin_url, &owner, &owner_password, &database)?,
            runtime_url: url_for(admin_url, &runtime, &runtime_password, &database)?,
            database,
            owner,
            runtime,
            admin_url: admin_url.to_owned(),
            dropped: false,
        };
        for statement in [
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{owner_password}'",
                roles.owner
            ),
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{runtime_password}'",
                roles.runtime
            ),
            format!("CREATE DATABASE {} OWNER {}", roles.database, roles.owner),
            format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", roles.database),
            format!(
                "GRANT CONNECT ON DATABASE {} TO {}",
                roles.database, roles.runtime
            ),
        ] {
            sqlx::raw_sql(&statement)
                .execute(&mut conn)
                .await
                .with_context(|| format!("{statement:?}"))?;
        }
        Ok(roles)
    }

    /// Drops the database (closing its sessions) and both roles.
    pub async fn drop_all(&mut self) -> Result<()> {
        if !self.dropped {
            drop_database_and_roles(
                &self.admin_url,
                &self.database,
                &[&self.owner, &self.runtime],
            )
            .await?;
            self.dropped = true;
        }
        Ok(())
    }
}

async fn drop_database_and_roles(admin_url: &str, database: &str, roles: &[&str]) -> Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let statements = std::iter::once(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .chain(
            roles
                .iter()
                .map(|role| format!("DROP ROLE IF EXISTS {role}")),
        );
    for statement in statements {
        sqlx::raw_sql(&statement)
            .execute(&mut conn)
            .await
            .with_context(|| format!("{statement:?}"))?;
    }
    Ok(())
}

impl Drop for DatabaseRoles {
    /// A test that failed before [`DatabaseRoles::drop_all`] still leaves no roles behind on
    /// a shared server (roles belong to the server, not to a database).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, database) = (self.admin_url.clone(), self.database.clone());
        let (owner, runtime) = (self.owner.clone(), self.runtime.clone());
        let cleanup = std::thread::spawn(move || -> Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(drop_database_and_roles(
                    &admin_url,
                    &database,
                    &[&owner, &runtime],
                ))
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("cannot drop {}: {error:#}", self.database),
            Err(_) => eprintln!("cannot drop {}: the clean-up panicked", self.database),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_host_and_query() {
        assert_eq!(
            url_for(
                "postgres://postgres@127.0.0.1:5/postgres?sslmode=verify-full&sslrootcert=/c",
                "u",
                "p",
                "d"
            )
            .unwrap(),
            "postgres://u:p@127.0.0.1:5/d?sslmode=verify-full&sslrootcert=/c"
        );
        assert_eq!(
            url_for("postgres://a:b@h:1/x", "u", "p", "d").unwrap(),
            "postgres://u:p@h:1/d"
        );
    }
}
