//! A private certificate authority for development and tests: a CA, server certificates
//! (DNS names and IP addresses) and client certificates (the caller's identity is its DNS
//! name, e.g. `sync-bridge`), all ECDSA P-256, as PEM.
//!
//! `make run` (through `tandemctl dev-pki`) and the test kit use it; production issues its
//! certificates elsewhere (cert-manager, a corporate CA) and only points the settings at the
//! files.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate authority that can issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn generate_error(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_owned(),
        source,
    }
}

/// Valid from yesterday's year start to two years ahead: long enough for development, short
/// enough that a forgotten certificate expires.
fn validity(params: &mut CertificateParams) {
    let now = chrono::Utc::now();
    params.not_before = rcgen::date_time_ymd(now.year() - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(now.year() + 2, 12, 31);
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    validity(&mut params);
    params
}

impl Ca {
    /// A new CA named `name` (its subject common name).
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(generate_error("the CA key"))?;
        let params = ca_params(name);
        let cert = params
            .self_signed(&key)
            .map_err(generate_error("the CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA written by [`Ca::write`] to `dir` (`ca.pem`, `ca.key`), named `name` as when it
    /// was generated.
    pub fn load(dir: &Path, name: &str) -> Result<Self, PkiError> {
        let cert_pem = read(&dir.join("ca.pem"))?;
        let key_pem = read(&dir.join("ca.key"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(generate_error("the CA key"))?;
        Ok(Self {
            cert_pem,
            key_pem,
            issuer: Issuer::new(ca_params(name), key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) to `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        write(&dir.join("ca.pem"), &self.cert_pem, false)?;
        write(&dir.join("ca.key"), &self.key_pem, true)
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is also the common
    /// name), signed by this CA.
    pub fn issue(&self, names: &[&str], usage: Usage) -> Result<Issued, PkiError> {
        let what = format!("a certificate for {names:?}");
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(generate_error(&what))?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        validity(&mut params);
        let key = KeyPair::generate().map_err(generate_error(&what))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error(&what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>.key` (mode 0600) to `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(), PkiError> {
        write(&dir.join(format!("{stem}.pem")), &self.cert_pem, false)?;
        write(&dir.join(format!("{stem}.key")), &self.key_pem, true)
    }
}

/// A new ECDSA P-256 private key as PKCS#8 PEM (e.g. the development token-signing key).
pub fn signing_key_pem() -> Result<String, PkiError> {
    Ok(KeyPair::generate()
        .map_err(generate_error("a signing key"))?
        .serialize_pem())
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path`; private files are created with mode 0600.
pub fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let error = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_holder_and_chain_to_the_ca() {
        let ca = Ca::generate("Tandem test CA").unwrap();
        let server = ca
            .issue(&["localhost", "127.0.0.1"], Usage::Server)
            .unwrap();
        let client = ca.issue(&["sync-bridge"], Usage::Client).unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));

        use rustls_pki_types::pem::PemObject;
        let der =
            |pem: &str| rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let anchor = der(ca.cert_pem());
        let anchors = [webpki::anchor_from_trusted_cert(&anchor).unwrap()];
        let leaf = der(&client.cert_pem);
        let cert = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let name = rustls_pki_types::ServerName::try_from("sync-bridge").unwrap();
        cert.verify_is_valid_for_subject_name(&name).unwrap();
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .unwrap();
    }

    #[test]
    fn a_loaded_ca_issues_certificates_that_chain_like_the_original() {
        let dir = std::env::temp_dir().join(format!("tandem-pki-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Ca::generate("Tandem test CA").unwrap().write(&dir).unwrap();
        let loaded = Ca::load(&dir, "Tandem test CA").unwrap();
        let issued = loaded.issue(&["tandemctl"], Usage::Client).unwrap();
        issued.write(&dir, "tandemctl").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("tandemctl.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
