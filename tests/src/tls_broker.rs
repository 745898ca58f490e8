//! TLS in front of the test broker: tansu 0.6 takes `--cert` and `--key` but never uses
//! them (its listener speaks plaintext only), so a stunnel process terminates TLS on a port of
//! its own and forwards each connection to tansu's plaintext port on the loopback. The server
//! certificate (for `localhost` and `127.0.0.1` unless told otherwise) comes from a CA made for
//! this one broker.
//!
//! stunnel is the Debian package `stunnel4` (binary `stunnel4`, or `stunnel`); `STUNNEL_BIN`
//! names another binary.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tandem_common::pki;

/// stunnel terminating TLS on `port` and forwarding to a plaintext port.
pub(crate) struct TlsFront {
    /// Where clients connect with TLS.
    pub(crate) port: u16,
    /// The address it accepts on (127.0.0.1, or a test network's gateway).
    ip: std::net::IpAddr,
    /// The CA that signed the server certificate (what a client must trust).
    pub(crate) ca_file: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The stunnel binary: `STUNNEL_BIN`, else `stunnel4` or `stunnel` on the `PATH`.
fn stunnel_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("STUNNEL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["stunnel4", "stunnel"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("no stunnel4 or stunnel on the PATH: `apt-get install stunnel4` (scripts/test.sh does)")
}

impl TlsFront {
    /// Issues a CA and a server certificate for `names` into `dir/pki`, then starts stunnel
    /// accepting TLS on `ip`:`port` and connecting to 127.0.0.1:`upstream`. Its log is
    /// `dir/stunnel.log`.
    pub(crate) fn start(
        dir: &Path,
        ip: std::net::IpAddr,
        port: u16,
        upstream: u16,
        names: &[&str],
    ) -> Result<Self> {
        let pki_dir = dir.join("pki");
        std::fs::create_dir_all(&pki_dir)?;
        let ca = pki::Ca::generate("Tandem test broker CA")?;
        ca.write(&pki_dir)?;
        ca.issue(names, pki::Usage::Server)?
            .write(&pki_dir, "server")?;
        let log = dir.join("stunnel.log");
        let config = dir.join("stunnel.conf");
        // Foreground, no pid file (this kit stops it by its process id), errors and notices
        // only (debug 4 = warning).
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\ndebug = 4\noutput = {log}\n\n\
                 [kafka]\naccept = {ip}:{port}\nconnect = 127.0.0.1:{upstream}\n\
                 cert = {cert}\nkey = {key}\nsslVersionMin = TLSv1.2\n",
                log = log.display(),
                cert = pki_dir.join("server.pem").display(),
                key = pki_dir.join("server.key").display(),
            ),
        )?;
        let bin = stunnel_binary()?;
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stunnel.out"))?;
        let child = Command::new(&bin)
            .arg(&config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut front = Self {
            port,
            ip,
            ca_file: pki_dir.join("ca.pem"),
            log,
            child: Some(child),
        };
        front.wait_listening(dir, Duration::from_secs(10))?;
        Ok(front)
    }

    /// Waits until stunnel accepts connections; fails early with its output if it exited.
    fn wait_listening(&mut self, dir: &Path, timeout: Duration) -> Result<()> {
        let addr = std::net::SocketAddr::new(self.ip, self.port);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "stunnel exited ({status}) before listening on {addr}:\n{}\n{}",
                    std::fs::read_to_string(dir.join("stunnel.out")).unwrap_or_default(),
                    self.log()
                );
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "stunnel not listening on {addr} after {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills stunnel (its own child process, by its id) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop();
    }
}
