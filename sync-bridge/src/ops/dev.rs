//! `tandemctl dev-pki` and `tandemctl token`: what `make run` needs to run secured on one
//! machine — a private CA, certificates for the services (localhost), the bridge and
//! tandemctl, a token signing key with its JWKS, and tokens signed with it. Never for
//! production: there, certificates and signing keys come from the organisation's CA and
//! identity provider.

use std::{path::Path, time::Duration};

use anyhow::Context;
use tandem_common::{
    auth::{self, Role},
    pki::{self, Ca, Usage},
};

/// The key id of the development signing key.
pub const KID: &str = "dev-1";
const CA_NAME: &str = "Tandem development CA";

/// Creates what is missing in `dir`; keeps what exists (tokens and certificates stay valid
/// across runs). Answers what it created.
pub fn ensure_pki(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut created = Vec::new();
    let ca = if dir.join("ca.pem").exists() {
        Ca::load(dir, CA_NAME)?
    } else {
        let ca = Ca::generate(CA_NAME)?;
        ca.write(dir)?;
        created.push("ca".to_owned());
        ca
    };
    let certificates: [(&str, &[&str], Usage); 3] = [
        ("server", &["localhost", "127.0.0.1"], Usage::Server),
        ("sync-bridge", &["sync-bridge"], Usage::Client),
        ("tandemctl", &["tandemctl"], Usage::Client),
    ];
    for (stem, names, usage) in certificates {
        if !dir.join(format!("{stem}.pem")).exists() {
            ca.issue(names, usage)?.write(dir, stem)?;
            created.push(stem.to_owned());
        }
    }
    let key_file = dir.join("jwt-signing.key");
    if !key_file.exists() {
        pki::write(&key_file, &auth::generate_signing_key()?, true)?;
        created.push("jwt-signing.key".to_owned());
    }
    let key = std::fs::read_to_string(&key_file)?;
    pki::write(
        &dir.join("jwks.json"),
        &auth::public_jwks(&[(KID, &key)])?,
        false,
    )?;
    Ok(created)
}

/// A token signed with `dir`'s development key.
pub fn token(
    dir: &Path,
    issuer: &str,
    audience: &str,
    subject: &str,
    roles: &[Role],
    ttl: Duration,
) -> anyhow::Result<String> {
    let key_file = dir.join("jwt-signing.key");
    let key = std::fs::read_to_string(&key_file).with_context(|| {
        format!(
            "reading {}; run `tandemctl dev-pki` first",
            key_file.display()
        )
    })?;
    Ok(auth::mint(
        &key, KID, issuer, audience, subject, roles, ttl,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pki_is_made_once_and_its_tokens_verify() {
        let dir = std::env::temp_dir().join(format!("tandem-dev-pki-{}", uuid::Uuid::now_v7()));
        let created = ensure_pki(&dir).unwrap();
        assert_eq!(created.len(), 5, "{created:?}");
        assert!(
            ensure_pki(&dir).unwrap().is_empty(),
            "kept on the second run"
        );
        let token = token(
            &dir,
            "tandem-dev",
            "tandem",
            "dev",
            &[Role::Sales],
            Duration::from_secs(60),
        )
        .unwrap();
        let settings = auth::AuthSettings {
            keys: dir.join("jwks.json").display().to_string(),
            ..auth::AuthSettings::default()
        };
        let caller = auth::Verifier::from_settings(&settings)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(caller.subject, "dev");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
