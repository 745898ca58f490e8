//! The public keys tokens are checked against: a [`KeySet`] maps key ids (`kid`) to ES256
//! (P-256), RS256 or EdDSA (Ed25519) public keys, read from a JWKS document or from a directory
//! of `<kid>.pem` public keys.
//!
//! Every key is checked when it is loaded: an unusable key fails the whole load (naming the key
//! and the reason, never its material) rather than quietly refusing tokens later. Keys whose
//! JWK `use` is not `sig` are skipped. Watching the source and reloading it is the job of `store.rs`.

use std::{collections::BTreeMap, fmt, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::error::{KeyStoreError, printable};

/// The signature algorithms a key may be used with; one per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (keys of at least 2048 bits).
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlgorithm {
    /// The JOSE name, as in a token's `alg` header.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Es256 => "ES256",
            KeyAlgorithm::Rs256 => "RS256",
            KeyAlgorithm::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::Rs256 => Algorithm::RS256,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One public key and the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) key: DecodingKey,
}

/// Public keys by key id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, VerifyingKey>,
}

impl fmt::Debug for KeySet {
    // Key ids and algorithms only: never the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.keys.iter().map(|(kid, key)| (kid, key.algorithm)))
            .finish()
    }
}

/// The size of a P-256 coordinate and of an Ed25519 public key.
const COORDINATE_LEN: usize = 32;
/// The RSA moduli accepted, in bits.
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;
/// The RSA public exponents accepted (as the crypto library's: at most 2^33 - 1).
const RSA_EXPONENTS: std::ops::RangeInclusive<u64> = 3..=(1 << 33) - 1;
/// Key files larger than this are refused unread.
const MAX_KEY_FILE_LEN: u64 = 1 << 20;

impl KeySet {
    /// Parses a JWKS document; `origin` names it in errors (a path, or e.g. `<inline>`).
    ///
    /// Keys whose `use` is not `sig` are skipped. Every other key must be usable: EC P-256
    /// (`ES256`), RSA of at least 2048 bits (`RS256`) or OKP Ed25519 (`EdDSA`), with a unique
    /// non-empty `kid` and no private part.
    pub fn from_jwks(document: &str, origin: &Path) -> Result<Self, KeyStoreError> {
        let jwks: JwksDocument =
            serde_json::from_str(document).map_err(|error| KeyStoreError::Jwks {
                path: origin.to_owned(),
                // The category and position only: serde's messages may quote the document.
                reason: format!(
                    "{:?} error at line {} column {}",
                    error.classify(),
                    error.line(),
                    error.column()
                ),
            })?;
        let mut set = KeySet::default();
        for jwk in jwks.keys {
            let kid = jwk.kid.clone().unwrap_or_default();
            let fail = |reason: String| KeyStoreError::Key {
                path: origin.to_owned(),
                kid: printable(&kid),
                reason,
            };
            if kid.is_empty() {
                return Err(fail("a key without a `kid`".to_owned()));
            }
            if jwk
                .key_use
                .as_deref()
                .is_some_and(|key_use| key_use != "sig")
            {
                tracing::debug!(kid = %printable(&kid), path = %origin.display(), "skipping a key not meant for signatures");
                continue;
            }
            let key = jwk.verifying_key().map_err(fail)?;
            set.insert(kid, key, origin)?;
        }
        Ok(set)
    }

    /// Reads every `<kid>.pem` public key in `dir`; other files, and names starting with `.`,
    /// are ignored.
    pub fn from_pem_dir(dir: &Path) -> Result<Self, KeyStoreError> {
        let read_error = |path: &Path, source| KeyStoreError::Read {
            path: path.to_owned(),
            source,
        };
        let mut set = KeySet::default();
        for entry in std::fs::read_dir(dir).map_err(|source| read_error(dir, source))? {
            let path = entry.map_err(|source| read_error(dir, source))?.path();
            if path.extension().is_none_or(|ext| ext != "pem") {
                continue;
            }
            let Some(kid) = path.file_stem().and_then(|stem| stem.to_str()) else {
                return Err(KeyStoreError::Key {
                    path: path.clone(),
                    kid: String::new(),
                    reason: "the file name (the key id) is not UTF-8".to_owned(),
                });
            };
            if kid.is_empty() || kid.starts_with('.') {
                continue;
            }
            let text = read_small(&path)?;
            let key = pem_verifying_key(&text).map_err(|reason| KeyStoreError::Key {
                path: path.clone(),
                kid: printable(kid),
                reason,
            })?;
            set.insert(kid.to_owned(), key, dir)?;
        }
        Ok(set)
    }

    fn insert(
        &mut self,
        kid: String,
        key: VerifyingKey,
        origin: &Path,
    ) -> Result<(), KeyStoreError> {
        if self.keys.contains_key(&kid) {
            return Err(KeyStoreError::DuplicateKid {
                path: origin.to_owned(),
                kid: printable(&kid),
            });
        }
        self.keys.insert(kid, key);
        Ok(())
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys (then every token is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids and their algorithms, sorted by key id.
    pub fn describe(&self) -> Vec<(String, KeyAlgorithm)> {
        self.keys
            .iter()
            .map(|(kid, key)| (kid.clone(), key.algorithm))
            .collect()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// The only key, when there is exactly one.
    pub(crate) fn single(&self) -> Option<(&str, &VerifyingKey)> {
        let mut keys = self.keys.iter();
        match (keys.next(), keys.next()) {
            (Some((kid, key)), None) => Some((kid.as_str(), key)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<serde::de::IgnoredAny>,
}

impl Jwk {
    fn verifying_key(&self) -> Result<VerifyingKey, String> {
        if self.d.is_some() {
            return Err("holds a private key (`d`): publish only public keys".to_owned());
        }
        let (algorithm, key) = match self.kty.as_str() {
            "EC" => {
                self.expect_alg(&["ES256"])?;
                self.expect_crv("P-256")?;
                let x = decode_coordinate(self.x.as_deref(), "x")?;
                let y = decode_coordinate(self.y.as_deref(), "y")?;
                let mut point = Vec::with_capacity(1 + 2 * COORDINATE_LEN);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (KeyAlgorithm::Es256, DecodingKey::from_ec_der(&point))
            }
            "OKP" => {
                self.expect_alg(&["EdDSA", "Ed25519"])?;
                self.expect_crv("Ed25519")?;
                let x = decode_coordinate(self.x.as_deref(), "x")?;
                (KeyAlgorithm::EdDsa, DecodingKey::from_ed_der(&x))
            }
            "RSA" => {
                self.expect_alg(&["RS256"])?;
                let n = decode_field(self.n.as_deref(), "n")?;
                let e = decode_field(self.e.as_deref(), "e")?;
                return rsa_key(&n, &e);
            }
            "oct" => return Err("a symmetric (`oct`) key: only public keys are accepted".into()),
            other => {
                return Err(format!(
                    "key type {:?}: only EC P-256, RSA and OKP Ed25519 keys are accepted",
                    printable(other)
                ));
            }
        };
        checked(algorithm, key)
    }

    fn expect_alg(&self, accepted: &[&str]) -> Result<(), String> {
        match self.alg.as_deref() {
            None => Ok(()),
            Some(alg) if accepted.contains(&alg) => Ok(()),
            Some(alg) => Err(format!(
                "algorithm {:?} does not fit a {} key (expected {})",
                printable(alg),
                printable(&self.kty),
                accepted.join(" or ")
            )),
        }
    }

    fn expect_crv(&self, curve: &str) -> Result<(), String> {
        match self.crv.as_deref() {
            Some(crv) if crv == curve => Ok(()),
            Some(crv) => Err(format!(
                "curve {:?}: only {curve} is accepted for {} keys",
                printable(crv),
                printable(&self.kty)
            )),
            None => Err(format!("no `crv` (expected {curve})")),
        }
    }
}

fn decode_field(value: Option<&str>, name: &str) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("no `{name}`"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("`{name}` is not base64url without padding"))?;
    if bytes.is_empty() {
        return Err(format!("`{name}` is empty"));
    }
    Ok(bytes)
}

fn decode_coordinate(value: Option<&str>, name: &str) -> Result<Vec<u8>, String> {
    let bytes = decode_field(value, name)?;
    if bytes.len() != COORDINATE_LEN {
        return Err(format!(
            "`{name}` is {} bytes long, expected {COORDINATE_LEN}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A key from PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo: EC P-256, Ed25519 or RSA) or
/// `RSA PUBLIC KEY` (PKCS#1).
fn pem_verifying_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    if text.contains("PRIVATE KEY-----") {
        return Err("a private key: only public keys belong with the verifiers".to_owned());
    }
    match text.matches("-----BEGIN ").count() {
        0 => return Err("not PEM: expected a `PUBLIC KEY` or `RSA PUBLIC KEY` block".to_owned()),
        1 => {}
        _ => return Err("expected exactly one PEM block".to_owned()),
    }
    let bytes = text.as_bytes();
    let (algorithm, key) = if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        let key = DecodingKey::from_rsa_pem(bytes).map_err(|_| "not a PKCS#1 RSA public key")?;
        (KeyAlgorithm::Rs256, key)
    } else if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
            (KeyAlgorithm::Es256, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
            (KeyAlgorithm::EdDsa, key)
        } else if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
            (KeyAlgorithm::Rs256, key)
        } else {
            return Err("not an EC P-256, Ed25519 or RSA public key".to_owned());
        }
    } else {
        return Err("expected a `PUBLIC KEY` or `RSA PUBLIC KEY` PEM block".to_owned());
    };
    if algorithm == KeyAlgorithm::Rs256 {
        // The PEM holds a PKCS#1 RSAPublicKey: check its modulus and exponent now, as for a JWK.
        let der = key
            .try_get_as_bytes()
            .map_err(|_| "not an RSA public key")?;
        let (n, e) = der_rsa_components(der).ok_or("not a well-formed PKCS#1 RSA public key")?;
        return rsa_key(n, e);
    }
    checked(algorithm, key)
}

/// An RS256 key from its modulus and exponent (big-endian), refused unless the crypto library
/// will take it: 2048 to 8192 bits, odd, with an odd exponent from 3 to 2^33 - 1.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<VerifyingKey, String> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = match n.first() {
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    };
    if !RSA_MODULUS_BITS.contains(&bits) {
        return Err(format!(
            "an RSA modulus of {bits} bits; {} to {} are accepted",
            RSA_MODULUS_BITS.start(),
            RSA_MODULUS_BITS.end()
        ));
    }
    if n.last().is_none_or(|last| last % 2 == 0) {
        return Err("an even RSA modulus".to_owned());
    }
    let exponent = if e.len() <= 8 {
        e.iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
    } else {
        u64::MAX
    };
    if !RSA_EXPONENTS.contains(&exponent) || exponent % 2 == 0 {
        return Err("an RSA exponent that is even, below 3 or above 2^33 - 1".to_owned());
    }
    Ok(VerifyingKey {
        algorithm: KeyAlgorithm::Rs256,
        key: DecodingKey::from_rsa_raw_components(n, e),
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

/// `(n, e)` from a DER PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent
/// INTEGER }`.
fn der_rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (sequence, rest) = der_element(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, rest) = der_element(sequence, 0x02)?;
    let (e, rest) = der_element(rest, 0x02)?;
    rest.is_empty().then_some((n, e))
}

/// The contents of the DER element with `tag` at the start of `input`, and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len, rest) = rest.split_at(count);
        let len = len
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Builds a verifier once, so a key the crypto library cannot use (a point not on the curve, a
/// P-384 key, a short Ed25519 key) is refused now rather than at the first token.
fn checked(algorithm: KeyAlgorithm, key: DecodingKey) -> Result<VerifyingKey, String> {
    match jsonwebtoken::crypto::verify("", b"", &key, algorithm.jwt()) {
        Ok(_) => Ok(VerifyingKey { algorithm, key }),
        Err(_) => Err(format!("not a usable {} public key", algorithm.name())),
    }
}

pub(crate) fn read_small(path: &Path) -> Result<String, KeyStoreError> {
    let read_error = |source| KeyStoreError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_error)?.len();
    if len > MAX_KEY_FILE_LEN {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes is too large for a key file"),
        )));
    }
    std::fs::read_to_string(path).map_err(read_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_support::{TempDir, TestKey};

    fn jwks_of(keys: &[&TestKey]) -> String {
        let keys: Vec<serde_json::Value> = keys.iter().map(|key| key.jwk()).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn loads_every_supported_key_type_from_jwks() {
        let es = TestKey::es256("es");
        let ed = TestKey::eddsa("ed");
        let rs = TestKey::rs256("rs");
        let set = KeySet::from_jwks(&jwks_of(&[&es, &ed, &rs]), Path::new("<test>")).unwrap();
        assert_eq!(
            set.describe(),
            vec![
                ("ed".to_owned(), KeyAlgorithm::EdDsa),
                ("es".to_owned(), KeyAlgorithm::Es256),
                ("rs".to_owned(), KeyAlgorithm::Rs256),
            ]
        );
    }

    #[test]
    fn loads_every_supported_key_type_from_a_pem_directory() {
        let dir = TempDir::new("pem-dir");
        for key in [
            TestKey::es256("es"),
            TestKey::eddsa("ed"),
            TestKey::rs256("rs"),
        ] {
            dir.write(&format!("{}.pem", key.kid), &key.public_pem());
        }
        dir.write("README.txt", "not a key");
        dir.write(".hidden.pem", "not a key either");
        let set = KeySet::from_pem_dir(dir.path()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(
            set.get("rs").map(|k| k.algorithm),
            Some(KeyAlgorithm::Rs256)
        );
        assert_eq!(
            set.get("ed").map(|k| k.algorithm),
            Some(KeyAlgorithm::EdDsa)
        );
    }

    #[test]
    fn refuses_unusable_jwks_entries_with_a_reason() {
        let es = TestKey::es256("es");
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}),
                "symmetric",
            ),
            (
                {
                    let mut jwk = es.jwk();
                    jwk["d"] = "AAAA".into();
                    jwk
                },
                "private key",
            ),
            (
                {
                    let mut jwk = es.jwk();
                    jwk["crv"] = "P-384".into();
                    jwk
                },
                "curve",
            ),
            (
                {
                    let mut jwk = es.jwk();
                    jwk["alg"] = "HS256".into();
                    jwk
                },
                "does not fit",
            ),
            (
                {
                    let mut jwk = es.jwk();
                    // A valid coordinate that is not on the curve with this y.
                    jwk["x"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
                    jwk
                },
                "not a usable ES256",
            ),
            (
                {
                    let mut jwk = es.jwk();
                    jwk.as_object_mut().unwrap().remove("kid");
                    jwk
                },
                "without a `kid`",
            ),
            (
                serde_json::json!({"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"}),
                "1024 bits",
            ),
            (
                serde_json::json!({"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AAAB"}),
                "exponent",
            ),
            (
                serde_json::json!({"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode([0xfeu8; 256]), "e": "AQAB"}),
                "even RSA modulus",
            ),
        ];
        for (jwk, expected) in cases {
            let document = serde_json::json!({ "keys": [jwk] }).to_string();
            let error = KeySet::from_jwks(&document, Path::new("<test>")).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{error} should mention {expected:?}"
            );
        }
        let twice = jwks_of(&[&es, &es]);
        assert!(matches!(
            KeySet::from_jwks(&twice, Path::new("<test>")),
            Err(KeyStoreError::DuplicateKid { .. })
        ));
        let garbage = KeySet::from_jwks("{\"keys\": [\"secret-looking\"", Path::new("<test>"))
            .unwrap_err()
            .to_string();
        assert!(!garbage.contains("secret-looking"), "{garbage}");
    }

    #[test]
    fn skips_encryption_keys() {
        let mut enc = TestKey::es256("enc").jwk();
        enc["use"] = "enc".into();
        let sig = TestKey::es256("sig").jwk();
        let document = serde_json::json!({ "keys": [enc, sig] }).to_string();
        let set = KeySet::from_jwks(&document, Path::new("<test>")).unwrap();
        assert_eq!(
            set.describe(),
            vec![("sig".to_owned(), KeyAlgorithm::Es256)]
        );
    }

    #[test]
    fn refuses_private_keys_and_junk_in_a_pem_directory() {
        let key = TestKey::es256("es");
        for (content, expected) in [
            (key.private_pem.clone(), "private key"),
            ("hello".to_owned(), "PUBLIC KEY"),
            (
                format!("{}{}", key.public_pem(), key.public_pem()),
                "one PEM",
            ),
        ] {
            let dir = TempDir::new("pem-junk");
            dir.write("k.pem", &content);
            let error = KeySet::from_pem_dir(dir.path()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("BEGIN"), "{error}");
        }
    }
}
