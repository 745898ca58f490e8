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
///
/// TLS and client certificates go in the URLs, as libpq spells them:
/// `?sslmode=verify-full&sslrootcert=/etc/tandem/pg-ca.pem` checks the server's certificate
/// against that CA and its name against the URL's host; `&sslcert=/path/client.pem&sslkey=
/// /path/client.key` adds a client certificate (for `cert` authentication in `pg_hba.conf`).
/// Without `sslmode` the connection *prefers* TLS but accepts any certificate (and plaintext):
/// production sets `verify-full`. See [`crate::db`] for the roles the two URLs name.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Connection URL the service runs with, e.g. `postgres://crm_app:pass@db:5432/crm?
    /// sslmode=verify-full&sslrootcert=/etc/tandem/pg-ca.pem`. When `migration_url` is set, a
    /// role that can read and write the tables but not change the schema.
    pub url: String,
    /// Connection URL of the role that owns the database, used only at start-up to run the
    /// migrations and grant the `url` role its privileges on the tables (then closed). Empty:
    /// migrations run over `url`, whose role then needs to own the schema.
    pub migration_url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// `statement_timeout` of every pooled connection of `url`, in milliseconds: a statement
    /// running longer is cancelled (SQLSTATE 57014). 0 sets none (the server's default
    /// applies: off unless the role or database sets one). Migrations are not subject to it.
    pub statement_timeout_ms: u64,
    /// A pooled connection idle at least this long (milliseconds) is checked with a round
    /// trip before a request gets it, and replaced if dead. Busier ones are handed out at once:
    /// checking every one would add a round trip to every request. 0 checks every time.
    /// A connection a request finished with cleanly waits warm for the next request, skipping
    /// sqlx's ping on its way back (`tandem_common::pool`); one warm for this long goes back
    /// to the pool, and so to this check. 0 keeps none warm.
    pub check_idle_after_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            migration_url: String::new(),
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            statement_timeout_ms: 30_000,
            check_idle_after_ms: 1_000,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    // The URLs may hold passwords: never print them, only whether the migration URL is set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let migration_url = if self.migration_url.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        };
        f.debug_struct("DatabaseSettings")
            .field("url", &"<redacted>")
            .field("migration_url", &migration_url)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("check_idle_after_ms", &self.check_idle_after_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
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

    #[test]
    fn migration_url_is_never_printed() {
        let settings = DatabaseSettings {
            url: "postgres://app:secret1@h/db".into(),
            migration_url: "postgres://owner:secret2@h/db?sslmode=verify-full".into(),
            ..DatabaseSettings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(!printed.contains("owner"), "{printed}");
        assert!(
            printed.contains("migration_url: \"<redacted>\""),
            "{printed}"
        );
        let printed = format!("{:?}", DatabaseSettings::default());
        assert!(printed.contains("migration_url: \"<unset>\""), "{printed}");
        let printed = format!("{:#?}", settings);
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn migration_url_and_statement_timeout_come_from_the_environment() {
        let loaded: Sample = load_from(
            "TST",
            None,
            env(&[
                ("TST__DATABASE__MIGRATION_URL", "postgres://owner@h/db"),
                ("TST__DATABASE__STATEMENT_TIMEOUT_MS", "1500"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.database.migration_url, "postgres://owner@h/db");
        assert_eq!(loaded.database.statement_timeout_ms, 1500);
        assert_eq!(loaded.database.url, "postgres://default/db");
        let defaults = DatabaseSettings::default();
        assert!(defaults.migration_url.is_empty());
        assert_eq!(defaults.statement_timeout_ms, 30_000);
    }
}
