//! Keeping the keys current: the [`KeyStore`] holds the loaded [`KeySet`] and reloads it when
//! its source changes.
//!
//! There is no background task: the verify path asks for the keys, and at most every
//! `reload_check_ms` one caller (the others do not wait) compares the modification times, sizes
//! and inodes of the JWKS file, or of the directory and every entry in it, with what it saw
//! last; a `stat` per file, following symbolic links (so Kubernetes secret volumes work). On a
//! change it reads the keys again. A load that fails, or finds no keys, keeps the previous keys
//! and logs a warning once per change. Replace key files atomically (write, then rename) so a
//! half-written file is never read.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock, TryLockError},
    time::{Duration, Instant, SystemTime},
};

use super::{KeySet, KeyStoreError, keys::read_small};

/// Where keys are read from.
#[derive(Debug, Clone)]
enum Source {
    JwksFile(PathBuf),
    PemDir(PathBuf),
}

impl Source {
    fn new(path: &Path) -> Result<Self, KeyStoreError> {
        let metadata = std::fs::metadata(path).map_err(|source| KeyStoreError::Read {
            path: path.to_owned(),
            source,
        })?;
        if metadata.is_dir() {
            Ok(Source::PemDir(path.to_owned()))
        } else if path.extension().is_some_and(|ext| ext == "json") {
            Ok(Source::JwksFile(path.to_owned()))
        } else {
            Err(KeyStoreError::UnknownSource {
                path: path.to_owned(),
            })
        }
    }

    fn path(&self) -> &Path {
        match self {
            Source::JwksFile(path) | Source::PemDir(path) => path,
        }
    }

    fn load(&self) -> Result<KeySet, KeyStoreError> {
        let set = match self {
            Source::JwksFile(path) => KeySet::from_jwks(&read_small(path)?, path)?,
            Source::PemDir(path) => KeySet::from_pem_dir(path)?,
        };
        if set.is_empty() {
            return Err(KeyStoreError::NoKeys {
                path: self.path().to_owned(),
            });
        }
        Ok(set)
    }

    /// What the source looks like on disk, cheaply: one `stat` per file.
    fn fingerprint(&self) -> Fingerprint {
        let stamps = match self {
            Source::JwksFile(path) => Stamp::of(path, OsString::new()).map(|stamp| vec![stamp]),
            Source::PemDir(dir) => Stamp::of(dir, OsString::new()).and_then(|own| {
                let mut stamps = vec![own];
                for entry in std::fs::read_dir(dir)? {
                    let entry = entry?;
                    // Follows symbolic links, as reading does (e.g. Kubernetes secret volumes).
                    stamps.push(Stamp::of(&entry.path(), entry.file_name())?);
                }
                stamps.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(stamps)
            }),
        };
        match stamps {
            Ok(stamps) => Fingerprint::Seen(stamps),
            Err(error) => Fingerprint::Unreadable(error.kind()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    Seen(Vec<Stamp>),
    Unreadable(std::io::ErrorKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    name: OsString,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path, name: OsString) -> std::io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Stamp {
            name,
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode,
        })
    }
}

/// The current keys, reloaded from their source when it changes.
pub(crate) struct KeyStore {
    source: Option<Source>,
    current: RwLock<Arc<KeySet>>,
    check: Mutex<CheckState>,
    interval: Duration,
}

struct CheckState {
    /// When to look at the source again; `None`: never.
    next: Option<Instant>,
    seen: Fingerprint,
}

impl KeyStore {
    /// Keys that never change (tests, fuzzing, or none at all).
    pub(crate) fn fixed(keys: KeySet) -> Self {
        Self {
            source: None,
            current: RwLock::new(Arc::new(keys)),
            check: Mutex::new(CheckState {
                next: None,
                seen: Fingerprint::Seen(Vec::new()),
            }),
            interval: Duration::MAX,
        }
    }

    /// Loads the keys at `path` now (failing if they cannot be loaded) and watches it.
    pub(crate) fn watch(path: &Path, interval: Duration) -> Result<Self, KeyStoreError> {
        let source = Source::new(path)?;
        let seen = source.fingerprint();
        let keys = source.load()?;
        tracing::info!(path = %path.display(), keys = ?keys, "token keys loaded");
        Ok(Self {
            current: RwLock::new(Arc::new(keys)),
            check: Mutex::new(CheckState {
                next: Instant::now().checked_add(interval),
                seen,
            }),
            interval,
            source: Some(source),
        })
    }

    /// The current keys, after reloading them if their source changed.
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.reload_if_changed();
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn reload_if_changed(&self) {
        let Some(source) = &self.source else {
            return;
        };
        // One caller checks; the others go on with the keys they have.
        let mut state = match self.check.try_lock() {
            Ok(state) => state,
            Err(TryLockError::WouldBlock) => return,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        let now = Instant::now();
        match state.next {
            Some(next) if now >= next => state.next = now.checked_add(self.interval),
            _ => return,
        }
        let seen = source.fingerprint();
        if seen == state.seen {
            return;
        }
        let path = source.path().display();
        match source.load() {
            Ok(keys) => {
                tracing::info!(%path, keys = ?keys, "token keys reloaded");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
            }
            Err(error) => {
                tracing::warn!(%path, %error, "token keys not reloaded; keeping the previous keys");
            }
        }
        // Also after a failure: the next change is tried again, this state is not re-logged.
        state.seen = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{
        KeyAlgorithm,
        test_support::{TempDir, TestKey, jwks},
    };

    #[test]
    fn the_source_must_be_json_or_a_directory() {
        let dir = TempDir::new("source");
        dir.write("keys.txt", "{}");
        assert!(matches!(
            KeyStore::watch(&dir.path().join("keys.txt"), Duration::ZERO),
            Err(KeyStoreError::UnknownSource { .. })
        ));
        assert!(matches!(
            KeyStore::watch(&dir.path().join("absent.json"), Duration::ZERO),
            Err(KeyStoreError::Read { .. })
        ));
        // A directory without keys is a misconfiguration, not "no auth".
        assert!(matches!(
            KeyStore::watch(dir.path(), Duration::ZERO),
            Err(KeyStoreError::NoKeys { .. })
        ));
    }

    #[test]
    fn a_pem_directory_reloads_when_a_file_is_added_or_removed() {
        let dir = TempDir::new("pem-reload");
        let one = TestKey::es256("one");
        let two = TestKey::eddsa("two");
        dir.write("one.pem", &one.public_pem());
        let store = KeyStore::watch(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(store.keys().len(), 1);
        dir.write("two.pem", &two.public_pem());
        assert_eq!(store.keys().len(), 2);
        dir.remove("one.pem");
        let keys = store.keys();
        assert_eq!(
            keys.describe(),
            vec![("two".to_owned(), KeyAlgorithm::EdDsa)]
        );
    }

    #[test]
    fn a_huge_reload_interval_does_not_overflow() {
        let dir = TempDir::new("interval");
        dir.write("k.json", &jwks(&[&TestKey::es256("k")]));
        let store =
            KeyStore::watch(&dir.path().join("k.json"), Duration::from_millis(u64::MAX)).unwrap();
        assert_eq!(store.keys().len(), 1);
    }
}
