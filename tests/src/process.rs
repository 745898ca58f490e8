//! The real binaries as child processes, and waiting for their ports and readiness.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listening on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `GET path` over plain HTTP/1.0; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until `GET /readyz` on `addr` answers 200.
pub fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(http_get(addr, "/readyz"), Ok((200, _))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr}/readyz not ready after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Path of a workspace binary built by `cargo build` (the Makefile builds them first).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join(name)
}

/// One of Tandem's binaries, run as a child process with its output in a log file.
pub struct ServiceProcess {
    pub name: String,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
}

impl ServiceProcess {
    pub fn spawn(name: &str, envs: Vec<(String, String)>) -> Result<Self> {
        Self::spawn_in(None, name, envs)
    }

    /// [`ServiceProcess::spawn`] inside network namespace `netns` (see [`netns::Lab`]).
    ///
    /// [`netns::Lab`]: crate::netns::Lab
    pub fn spawn_in(netns: Option<&str>, name: &str, envs: Vec<(String, String)>) -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "tandem-{name}-{}.log",
            uuid::Uuid::now_v7().simple()
        ));
        let mut process = Self {
            name: name.to_owned(),
            envs,
            log,
            child: None,
            netns: netns.map(str::to_owned),
        };
        process.start()?;
        Ok(process)
    }

    /// (Re)starts the process with the same environment.
    pub fn start(&mut self) -> Result<()> {
        let path = binary(&self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // `ip netns exec` execs the binary itself: the child's pid is the service's.
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        let child = command
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {}; run `cargo build --workspace --bins` first",
                    path.display()
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next [`start`].
    ///
    /// [`start`]: ServiceProcess::start
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.envs.retain(|(k, _)| k != name);
        if let Some(value) = value {
            self.envs.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself (a crash point, say); returns
    /// its exit status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        while let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited with status 0.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not stop within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} output ----\n{}", self.name, self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
