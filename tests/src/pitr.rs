//! Backups and point-in-time restores of a private PostgreSQL cluster, with the real tools:
//! continuous WAL archiving (`archive_mode = on`, an `archive_command` that copies each
//! finished segment into an archive directory), a base backup taken with `pg_basebackup`,
//! named restore points (`pg_create_restore_point`), and a restore that replaces the data
//! directory with the base backup and replays the archive (`restore_command`,
//! `recovery.signal`) up to a target. What `docs/runbook.md` ("Backups and restores") tells
//! an operator to do, on one machine.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use sqlx::{Connection, PgConnection};

use crate::postgres::{TestPostgres, as_owner, chown_to_postgres, is_root};

/// Where a restore stops replaying the WAL archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The end of the base backup: the earliest consistent state it holds
    /// (`recovery_target = 'immediate'`).
    EndOfBackup,
    /// A restore point made with `pg_create_restore_point` (`recovery_target_name`).
    RestorePoint(String),
}

/// A TLS-only [`TestPostgres`] that archives its WAL, with one base backup. Stopped and
/// deleted (data, archive and backup) when dropped.
pub struct ArchivedPostgres {
    pub pg: TestPostgres,
    archive: PathBuf,
    base: PathBuf,
}

impl ArchivedPostgres {
    /// Starts a [`TestPostgres::start_tls`] cluster with WAL archiving into a directory of its
    /// own, and local replication connections for `pg_basebackup`. A segment is copied under
    /// a temporary name and renamed, so the archive never holds a partial segment.
    pub fn start_tls() -> Result<Self> {
        let pg = TestPostgres::start_tls()?;
        let archive = pg.data_dir().with_extension("wal-archive");
        let base = pg.data_dir().with_extension("base-backup");
        std::fs::create_dir_all(&archive)?;
        chown_to_postgres(&archive)?;
        let conf = pg.data_dir().join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf)?;
        settings.push_str(&format!(
            "\n# Tandem test kit: continuous WAL archiving\nwal_level = replica\n\
             archive_mode = on\n\
             archive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f.part && \
             mv {archive}/%f.part {archive}/%f'\n\
             archive_timeout = 60\n",
            archive = archive.display()
        ));
        std::fs::write(&conf, settings)?;
        let hba = pg.data_dir().join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba)?;
        rules.push_str("local   replication postgres           trust\n");
        std::fs::write(&hba, rules)?;
        // archive_mode only takes effect at start.
        pg.stop()?;
        pg.resume()?;
        Ok(Self { pg, archive, base })
    }

    /// Takes the base backup (`pg_basebackup`, plain format, with the WAL it needs), over
    /// the local socket.
    pub fn base_backup(&self) -> Result<()> {
        ensure!(
            !self.base.exists(),
            "this cluster has a base backup already"
        );
        let (socket, port) = (self.socket(), self.pg.port.to_string());
        as_owner(
            &self.pg.bin_dir().join("pg_basebackup"),
            &[
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &self.base.to_string_lossy(),
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )
        .context("pg_basebackup")
    }

    /// Records restore point `name`, switches to a new WAL segment and waits until the one
    /// holding the point is archived. Returns the point's LSN.
    pub async fn restore_point(&self, name: &str) -> Result<String> {
        let mut conn = PgConnection::connect(&self.pg.admin_url()).await?;
        let lsn: String = sqlx::query_scalar("SELECT pg_create_restore_point($1)::text")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        self.archive_current_segment(&mut conn).await?;
        Ok(lsn)
    }

    /// Switches to a new WAL segment and waits until the finished one is in the archive: after
    /// this, a restore can replay everything committed so far.
    pub async fn flush_archive(&self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.pg.admin_url()).await?;
        self.archive_current_segment(&mut conn).await
    }

    async fn archive_current_segment(&self, conn: &mut PgConnection) -> Result<()> {
        let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
            .fetch_one(&mut *conn)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.archive.join(&segment).exists() {
            if Instant::now() > deadline {
                bail!("WAL segment {segment} was not archived within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// How many WAL segments the archive holds.
    pub fn archived_segments(&self) -> usize {
        std::fs::read_dir(&self.archive)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().ends_with(".part"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The restore: stops the server (as a lost disk would), replaces its data directory with
    /// the base backup, has it replay the archive up to `target` on the backup's timeline and
    /// promote, and starts it on the same port. Returns once it is promoted (out of recovery,
    /// taking writes), with how long that took.
    pub async fn restore(&self, target: &RecoveryTarget) -> Result<Duration> {
        ensure!(self.base.exists(), "no base backup to restore");
        let started = Instant::now();
        self.pg.stop().context("stopping the server to restore")?;
        let data = self.pg.data_dir();
        std::fs::remove_dir_all(data).with_context(|| format!("removing {}", data.display()))?;
        copy_tree(&self.base, data)?;
        // The backup copied the live server's socket lock file (the socket directory is the
        // data directory here) and its log.
        for entry in std::fs::read_dir(data)?.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".s.PGSQL.") || name == "server.log" {
                std::fs::remove_file(entry.path())?;
            }
        }
        let target = match target {
            RecoveryTarget::EndOfBackup => "recovery_target = 'immediate'".to_owned(),
            RecoveryTarget::RestorePoint(name) => format!("recovery_target_name = '{name}'"),
        };
        let conf = data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf)?;
        settings.push_str(&format!(
            "\n# Tandem test kit: point-in-time recovery\n\
             restore_command = 'cp {archive}/%f %p'\n{target}\n\
             recovery_target_timeline = 'current'\nrecovery_target_action = 'promote'\n",
            archive = self.archive.display()
        ));
        std::fs::write(&conf, settings)?;
        std::fs::write(data.join("recovery.signal"), "")?;
        chown_to_postgres(&data.join("recovery.signal"))?;
        self.pg
            .resume()
            .with_context(|| format!("the restored server did not start: {}", self.log()))?;
        // It accepts read-only connections while it replays; wait for the promotion.
        let mut conn = PgConnection::connect(&self.pg.admin_url()).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await?;
            if !in_recovery {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                bail!("still in recovery after 60 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log (recovery messages included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.pg.data_dir().join("server.log")).unwrap_or_default()
    }

    fn socket(&self) -> String {
        self.pg.data_dir().to_string_lossy().into_owned()
    }
}

/// Copies directory `from` to `to` with owners and modes (`cp -a`), then restricts `to` to its
/// owner, as PostgreSQL requires of a data directory.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    ensure!(
        status.success(),
        "cp -a {} {}: {status}",
        from.display(),
        to.display()
    );
    let status = Command::new("chmod").arg("0700").arg(to).status()?;
    ensure!(status.success(), "chmod 0700 {}: {status}", to.display());
    if is_root() {
        chown_to_postgres(to)?;
    }
    Ok(())
}

impl Drop for ArchivedPostgres {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.archive);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
