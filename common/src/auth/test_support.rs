//! Test keys, tokens and temporary directories for the `auth` tests (real crypto throughout).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::{AuthSettings, KeyAlgorithm, Verifier, mint};

/// The private half of `fuzz-rs256` in [`super::fixtures::TEST_JWKS`] (PKCS#8).
pub const RSA_PRIVATE_PEM: &str = "
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDqljQfyfD2Ll9n
FDt5inqpMsoG9QpVwQEzkfbTXtwC9/0yKMMOHcoDiJUDNPihD31p29M5o0rAkFm6
zw+CYQaeIEpAwPrB+QESwQiDlSsSBSRxPYAuwjyU1r6VPwxS/i2MUO6EprHU8TPF
bz8WuAopUrJ1BRv58YFVjEt+4dFl+bY3DvB+q1emyZA94Kp54YyM0bpL5VqF7rd/
AxNAkfoJ/2R3tNMr5YxyDRH/NrXAxY6eiQkJulu6LVmJQ6GUjlX2c+dzeAjFRP1p
G7KDsQGrkWW2rOJ3ULGkUW4HSVGtDED9+df2uSVtrrtO4FMkKOgqGjwkk5WSGl08
6rygnPP5AgMBAAECggEAJhVndeezYkwJ+fKLa0Jjgnd32+RJHr3cI5KlRxBl2GeJ
J+z9KZwFcUhppKEjYgZhPl/NLVTIrHVi09SMuIZm7CHi3BtYOkhh97j12GLNoLnL
/kRVPIIVErbALvuS1SBlpZt39XoYcbEMzhcu31HWeHnv9dZ0AcJG1GwXz4v6kjrF
25cjYTM0jn4Xu6ly24iNd9BeIQsO/he7suWYdaNLgDbYO3swRAQEY9B9bLsijwW4
5b+Eu3kDpp1LzaNhjGT5Z+TglSg9b6M1vIggq0CLve1TSzuHdALn9SYxcb6EgHwZ
/h0B8/NwmRKGYia6EC4F8ZDh0SWEwZAi1icKhMWtDwKBgQD2vHJpFjla3EKtfq8A
N7CIw1N+pc5k0IvmIWXyX2dxhsUdN1kSiMz9gAaCuDe2f4W7q3erF14l3w71iIly
gpuAQC4E6Y/UnE7qpowr2emnSNZ3exixj1LpCln0kQgy0IYVwn78HG0mx7jNxnox
N8oDxgebPhNmVLS6N/cIbaF2mwKBgQDzZPr+hvobpRumtTRGdv8A3em9fFCV8OVq
WzBEQYytBn9oXSli47GUD/8w8JQcIvxJMwlqSlWXLkOE6IFSk/N9QP3SarQuVxI3
So7rb0rohCx7hOjuLu1pH/wB/LWxCJ0o9BDnQj6B15WHA/aH+C7EQUKiMvKGrTNK
fa6xKO6e+wKBgFvmUM7nYjF/fK5WUyRHmc82wXCYnUlbi+AJbIlcE5FrWxvIs7p9
jayV9NbXepjU4qDF+uqU55I/hLjbRCaMkxKv1PQrclEEbzhjFC55Gdge/xK9nLL1
6TG3k03Ofzk+BdMxAE8y30zkcubiGD0gxHOnXMnr0xn4TuBVXAOdodglAoGBALTo
scbN/MjfiBX5Scm2WQQD7eBxrlREocDT1qRlNHLHCZxA4qomI6+x1DREHVJsjqi5
zp26crPUJ0t6peUDI1BOJltoBFUNUvTV7jUAm+UHmSiWOawQJVal92Jiu4nCpU3z
Wz0I9/z6iKG6SFv4FIq7FxQIWkvQIPeVQ2tayUJRAoGAH6VPwDC7uN4DppmavlkE
GviKXP3OyTcJpQ93Q7kOJSlXX0PfUhJUOami6qN1T/89H4/rpHrCVVDE5uvinLms
DF/d+I8RjYORXqcqPIVKi1p85N9Rhqap0EX9P6p4Ue9YCHfIi7ZpVpw3XiTn5Bdx
pCdWx2cE+VPgIwslvXRNaBg=
-----END PRIVATE KEY-----
";

/// The public half of `fuzz-rs256` (SubjectPublicKeyInfo).
pub const RSA_PUBLIC_PEM: &str = "
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA6pY0H8nw9i5fZxQ7eYp6
qTLKBvUKVcEBM5H2017cAvf9MijDDh3KA4iVAzT4oQ99advTOaNKwJBZus8PgmEG
niBKQMD6wfkBEsEIg5UrEgUkcT2ALsI8lNa+lT8MUv4tjFDuhKax1PEzxW8/FrgK
KVKydQUb+fGBVYxLfuHRZfm2Nw7wfqtXpsmQPeCqeeGMjNG6S+Vahe63fwMTQJH6
Cf9kd7TTK+WMcg0R/za1wMWOnokJCbpbui1ZiUOhlI5V9nPnc3gIxUT9aRuyg7EB
q5Fltqzid1CxpFFuB0lRrQxA/fnX9rklba67TuBTJCjoKho8JJOVkhpdPOq8oJzz
+QIDAQAB
-----END PUBLIC KEY-----
";

/// `n` of `fuzz-rs256`, base64url.
const RSA_N: &str = "6pY0H8nw9i5fZxQ7eYp6qTLKBvUKVcEBM5H2017cAvf9MijDDh3KA4iVAzT4oQ99advTOaNKwJBZus8PgmEGniBKQMD6wfkBEsEIg5UrEgUkcT2ALsI8lNa-lT8MUv4tjFDuhKax1PEzxW8_FrgKKVKydQUb-fGBVYxLfuHRZfm2Nw7wfqtXpsmQPeCqeeGMjNG6S-Vahe63fwMTQJH6Cf9kd7TTK-WMcg0R_za1wMWOnokJCbpbui1ZiUOhlI5V9nPnc3gIxUT9aRuyg7EBq5Fltqzid1CxpFFuB0lRrQxA_fnX9rklba67TuBTJCjoKho8JJOVkhpdPOq8oJzz-Q";

pub const ISSUER: &str = "tandem-test";
pub const AUDIENCE: &str = "tandem";

/// A signing key and its key id.
pub struct TestKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// PKCS#8 PEM.
    pub private_pem: String,
    /// The raw public key: `04 || x || y` (P-256), 32 bytes (Ed25519); empty for RSA.
    public_raw: Vec<u8>,
    public_pem: String,
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::from_rcgen(kid, KeyAlgorithm::Es256, &pair)
    }

    pub fn eddsa(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self::from_rcgen(kid, KeyAlgorithm::EdDsa, &pair)
    }

    /// Always the same RSA key (`fuzz-rs256`'s), under any key id: ring cannot generate RSA.
    pub fn rs256(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            algorithm: KeyAlgorithm::Rs256,
            private_pem: RSA_PRIVATE_PEM.trim().to_owned(),
            public_raw: Vec::new(),
            public_pem: RSA_PUBLIC_PEM.trim().to_owned(),
        }
    }

    fn from_rcgen(kid: &str, algorithm: KeyAlgorithm, pair: &rcgen::KeyPair) -> Self {
        Self {
            kid: kid.to_owned(),
            algorithm,
            private_pem: pair.serialize_pem(),
            public_raw: pair.public_key_raw().to_vec(),
            public_pem: pair.public_key_pem(),
        }
    }

    /// The same key pair under another key id.
    pub fn renamed(&self, kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            algorithm: self.algorithm,
            private_pem: self.private_pem.clone(),
            public_raw: self.public_raw.clone(),
            public_pem: self.public_pem.clone(),
        }
    }

    pub fn public_pem(&self) -> String {
        self.public_pem.clone()
    }

    pub fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self.algorithm {
            KeyAlgorithm::Es256 => json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                "x": b64(&self.public_raw[1..33]), "y": b64(&self.public_raw[33..65]),
            }),
            KeyAlgorithm::EdDsa => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig",
                "x": b64(&self.public_raw),
            }),
            KeyAlgorithm::Rs256 => json!({
                "kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                "n": RSA_N, "e": "AQAB",
            }),
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        let pem = self.private_pem.as_bytes();
        match self.algorithm {
            KeyAlgorithm::Es256 => EncodingKey::from_ec_pem(pem).unwrap(),
            KeyAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem).unwrap(),
            KeyAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        }
    }

    /// A token with exactly these claims, signed by this key and naming it.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm.jwt());
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding_key()).unwrap()
    }

    /// A valid token for `subject` with `roles` (strings, so unknown ones can be tested).
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        self.sign(&claims(subject, roles))
    }

    /// A token made by [`mint`] (ES256 keys only).
    pub fn minted(&self, subject: &str, roles: &[super::Role]) -> String {
        mint(
            &self.private_pem,
            &self.kid,
            ISSUER,
            AUDIENCE,
            subject,
            roles,
            Duration::from_secs(300),
        )
        .unwrap()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims: right issuer and audience, issued now, expiring in five minutes.
pub fn claims(subject: &str, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "roles": roles,
        "iat": now, "nbf": now, "exp": now + 300,
    })
}

/// A JWKS document holding the public halves of `keys`.
pub fn jwks(keys: &[&TestKey]) -> String {
    let keys: Vec<Value> = keys.iter().map(|key| key.jwk()).collect();
    json!({ "keys": keys }).to_string()
}

/// Settings for tests: [`ISSUER`], [`AUDIENCE`], keys at `keys`, checked for changes every
/// `reload_check_ms`.
pub fn settings(keys: &Path, reload_check_ms: u64) -> AuthSettings {
    AuthSettings {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        keys: keys.display().to_string(),
        leeway_s: 30,
        reload_check_ms,
    }
}

/// A verifier trusting exactly `keys`, which never reloads.
pub fn verifier(keys: &[&TestKey]) -> Verifier {
    let settings = settings(Path::new(""), 1_000);
    Verifier::from_jwks_str(&settings, &jwks(keys)).unwrap()
}

/// A fresh directory under the system temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "tandem-auth-{label}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in place.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Writes `name` atomically (a temporary file, then a rename), with a modification time
    /// `bump` seconds in the future so the change is seen even with coarse file times.
    pub fn replace(&self, name: &str, content: &str, bump: u64) -> PathBuf {
        let path = self.0.join(name);
        let staging = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&staging, content).unwrap();
        let file = std::fs::File::options().write(true).open(&staging).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(bump))
            .unwrap();
        drop(file);
        std::fs::rename(&staging, &path).unwrap();
        path
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.0.join(name)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A token whose header is `header` (any JSON) and whose payload is `claims`, with `signature`
/// as its third part: for tokens no library would make.
pub fn hand_made(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A header naming `alg` and, when given, `kid`.
pub fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}
