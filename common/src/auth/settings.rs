//! The `auth` settings section: who issues tokens, for whom, and where the public keys live.

use serde::{Deserialize, Serialize};

/// How bearer tokens are checked, e.g. `CRM__AUTH__ISSUER`, `CRM__AUTH__KEYS`.
///
/// The defaults are secure: with no `keys` configured no token verifies, so every method that
/// needs a role is refused with UNAUTHENTICATED. There is no "auth off" switch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AuthSettings {
    /// The `iss` claim a token must carry. Default `tandem-dev`.
    pub issuer: String,
    /// The `aud` claim a token must carry (one of its values, when it is an array). Default
    /// `tandem`.
    pub audience: String,
    /// Where the public keys are: a JWKS JSON file (`*.json`) or a directory of PEM public keys
    /// named `<kid>.pem` (SubjectPublicKeyInfo `PUBLIC KEY`, or `RSA PUBLIC KEY`). ES256 (P-256),
    /// RS256 and EdDSA (Ed25519) keys are accepted. Several keys may be loaded at once, for
    /// rotation. Empty (the default): no keys, every token is refused.
    pub keys: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30; at most one hour is
    /// used.
    pub leeway_s: u64,
    /// How often, at most, the key file (or directory) is checked for changes, in milliseconds.
    /// The check is a `stat` made on the verify path; a change reloads the keys. Default 1000.
    pub reload_check_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "tandem-dev".to_owned(),
            audience: "tandem".to_owned(),
            keys: String::new(),
            leeway_s: 30,
            reload_check_ms: 1_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use config::{Config, Environment};
    use serde::{Deserialize, Serialize};

    use super::*;

    /// A process's settings with an `auth` section, loaded as `crate::settings` loads them.
    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Process {
        auth: AuthSettings,
    }

    fn load(pairs: &[(&str, &str)]) -> Process {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Config::builder()
            .add_source(Config::try_from(&Process::default()).unwrap())
            .add_source(
                Environment::with_prefix("CRM")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(map)),
            )
            .build()
            .and_then(Config::try_deserialize)
            .unwrap()
    }

    #[test]
    fn defaults_are_secure() {
        let settings = load(&[]).auth;
        assert_eq!(settings, AuthSettings::default());
        assert_eq!(settings.issuer, "tandem-dev");
        assert_eq!(settings.audience, "tandem");
        assert!(settings.keys.is_empty());
        assert_eq!(settings.leeway_s, 30);
        assert_eq!(settings.reload_check_ms, 1_000);
    }

    #[test]
    fn every_field_comes_from_the_environment() {
        let settings = load(&[
            ("CRM__AUTH__ISSUER", "https://id.example"),
            ("CRM__AUTH__AUDIENCE", "crm"),
            ("CRM__AUTH__KEYS", "/etc/tandem/jwks.json"),
            ("CRM__AUTH__LEEWAY_S", "5"),
            ("CRM__AUTH__RELOAD_CHECK_MS", "250"),
        ])
        .auth;
        assert_eq!(
            settings,
            AuthSettings {
                issuer: "https://id.example".into(),
                audience: "crm".into(),
                keys: "/etc/tandem/jwks.json".into(),
                leeway_s: 5,
                reload_check_ms: 250,
            }
        );
    }
}
