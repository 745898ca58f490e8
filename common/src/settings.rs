//! Layered settings: built-in defaults < optional file < environment variables.
//!
//! Each process has a prefix (`CRM`, `ERP`, `BRIDGE`). A key `database.url` is set by the
//! environment variable `CRM__DATABASE__URL`; the optional file is named by `CRM_CONFIG`
//! (TOML, YAML-free on purpose: one format to document).

use std::{net::SocketAddr, path::PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot serialise the built-in defaults: {0}")]
    Defaults(#[source] Box<config::ConfigError>),
    #[error("invalid settings (defaults < {file} < {prefix}__* environment): {source}")]
    Load {
        prefix: String,
        file: String,
        #[source]
        source: Box<config::ConfigError>,
    },
}

/// Loads `T` for the process whose environment prefix is `prefix`.
pub fn load<T>(prefix: &str) -> Result<T, SettingsError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let file = std::env::var_os(format!("{prefix}_CONFIG")).map(PathBuf::from);
    load_from(prefix, file, Environment::with_prefix(prefix))
}

fn load_from<T>(
    prefix: &str,
    file: Option<PathBuf>,
    environment: Environment,
) -> Result<T, SettingsError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = Config::try_from(&T::default())
        .map_err(|error| SettingsError::Defaults(Box::new(error)))?;
    let mut builder = Config::builder().add_source(defaults);
    let file_name = match &file {
        Some(path) => {
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
            path.display().to_string()
        }
        None => "no file".to_owned(),
    };
    builder
        .add_source(
            environment
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .and_then(Config::try_deserialize)
        .map_err(|source| SettingsError::Load {
            prefix: prefix.to_owned(),
            file: file_name,
            source: Box::new(source),
        })
}

/// Where a server listens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListenSettings {
    /// Socket address, e.g. `127.0.0.1:50051`; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl ListenSettings {
    pub fn loopback(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

/// PostgreSQL connection settings.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Connection URL, e.g. `postgres://user:pass@host:5432/crm`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing, in milliseconds.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            acquire_timeout_ms: 3_000,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    // The URL may hold a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        grpc: ListenSettings,
        database: DatabaseSettings,
        name: String,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                grpc: ListenSettings::loopback(50051),
                database: DatabaseSettings {
                    url: "postgres://default/db".into(),
                    ..DatabaseSettings::default()
                },
                name: "default".into(),
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Environment::with_prefix("TST").source(Some(map))
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let loaded: Sample = load_from("TST", None, env(&[])).unwrap();
        assert_eq!(loaded, Sample::default());
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let dir = std::env::temp_dir().join(format!("tandem-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sample.toml");
        std::fs::write(
            &path,
            "name = \"from-file\"\n[database]\nurl = \"postgres://file/db\"\nmax_connections = 3\n",
        )
        .unwrap();
        let loaded: Sample = load_from(
            "TST",
            Some(path),
            env(&[
                ("TST__DATABASE__URL", "postgres://env/db"),
                ("TST__GRPC__LISTEN", "0.0.0.0:1"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.name, "from-file");
        assert_eq!(loaded.database.url, "postgres://env/db");
        assert_eq!(loaded.database.max_connections, 3);
        assert_eq!(loaded.grpc.listen, "0.0.0.0:1".parse().unwrap());
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let error = load_from::<Sample>("TST", None, env(&[("TST__GRPC__LISTEN", "nonsense")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("listen"), "{error}");
    }

    #[test]
    fn database_url_is_never_printed() {
        let settings = DatabaseSettings {
            url: "postgres://u:secret@h/db".into(),
            ..DatabaseSettings::default()
        };
        assert!(!format!("{settings:?}").contains("secret"));
    }
}
