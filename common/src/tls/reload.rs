//! A TLS configuration rebuilt from its files when they change: the machinery the server
//! ([`super::ReloadingServerConfig`]) and the client ([`super::ReloadingClientConfig`]) share.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use super::TlsError;

/// The files one configuration is built from, and how to build it.
pub(super) trait ConfigFiles: Send + Sync + 'static {
    type Config: Send + Sync + 'static;

    /// Every file the configuration reads; a change to any of them triggers a rebuild.
    fn paths(&self) -> Vec<&Path>;

    /// Reads the files and builds the configuration.
    fn build(&self) -> Result<Self::Config, TlsError>;

    /// The file logs name when the configuration is reloaded (the certificate, or the CA).
    fn named(&self) -> &Path;
}

/// What identifies a file's version: modification time and length (`None`: unreadable).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

struct State<C> {
    config: Arc<C>,
    stamps: Vec<Stamp>,
    checked: Instant,
}

struct Shared<F: ConfigFiles> {
    files: F,
    check_every: Duration,
    state: Mutex<State<F::Config>>,
}

/// The current configuration built from `F`'s files. Cheap to clone; clones share it.
///
/// [`current`](Self::current) compares the files' modification times and lengths with the
/// last build's, at most every `check_every`, and rebuilds when they differ. A configuration
/// that fails to build (say the key was written before the certificate) is logged as a
/// warning and the previous one stays in use; it is tried again when the files change again.
pub(super) struct Reloading<F: ConfigFiles> {
    shared: Arc<Shared<F>>,
}

impl<F: ConfigFiles> Clone for Reloading<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F: ConfigFiles> Reloading<F> {
    /// Builds the configuration now (so a bad file is reported at start-up).
    pub(super) fn load(files: F, check_every: Duration) -> Result<Self, TlsError> {
        let stamps = stamps(&files);
        let config = Arc::new(files.build()?);
        Ok(Self {
            shared: Arc::new(Shared {
                files,
                check_every,
                state: Mutex::new(State {
                    config,
                    stamps,
                    checked: Instant::now(),
                }),
            }),
        })
    }

    pub(super) fn files(&self) -> &F {
        &self.shared.files
    }

    pub(super) fn check_every(&self) -> Duration {
        self.shared.check_every
    }

    fn lock(&self) -> MutexGuard<'_, State<F::Config>> {
        // A panic while holding the lock cannot leave the state half-written: every field is
        // replaced whole.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The configuration for the next handshake, rebuilt first when the check is due and the
    /// files changed.
    pub(super) fn current(&self) -> Arc<F::Config> {
        let mut state = self.lock();
        if state.checked.elapsed() >= self.shared.check_every {
            state.checked = Instant::now();
            let files = &self.shared.files;
            let now = stamps(files);
            if now != state.stamps {
                state.stamps = now;
                match files.build() {
                    Ok(config) => {
                        state.config = Arc::new(config);
                        tracing::info!(
                            file = %files.named().display(),
                            "reloaded the TLS configuration"
                        );
                    }
                    Err(error) => tracing::warn!(
                        file = %files.named().display(),
                        %error,
                        "cannot reload the TLS configuration; keeping the previous one"
                    ),
                }
            }
        }
        state.config.clone()
    }
}

fn stamps<F: ConfigFiles>(files: &F) -> Vec<Stamp> {
    files.paths().into_iter().map(stamp).collect()
}

/// `value` as a path, or an error naming the setting when it is empty.
pub(super) fn required(value: &str, key: &str) -> Result<PathBuf, TlsError> {
    if value.is_empty() {
        Err(TlsError::Settings(format!("{key} is not set")))
    } else {
        Ok(PathBuf::from(value))
    }
}
