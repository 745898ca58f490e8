//! Checking a bearer token and turning it into a [`Caller`].
//!
//! A token is accepted only if it is a compact JWS whose header names an algorithm equal to the
//! one of the key it names by `kid` (so `alg: none`, HMAC with a public key as the secret and
//! any other algorithm switch are refused before any cryptography), whose signature verifies
//! with that key, and whose claims carry the configured `iss` and `aud`, an `exp` not past, an
//! `nbf` (when present) not in the future, both with the configured leeway, and a non-empty
//! `sub`. A token without `kid` is accepted only while exactly one key is loaded.
//!
//! Every input, however broken, gives an [`AuthError`]; nothing here panics (it is fuzzed).
//!
//! Clients send the same token on every call until it expires, and an ES256 signature check is
//! the costliest step of a call's admission; so a token that verified is remembered (by its
//! SHA-256) with its caller and validity window, and the same bytes are let through again
//! without the signature check while that window lasts and the key set that verified them is
//! still the one loaded (a reload checks every token again).

use std::{
    collections::HashMap,
    fmt,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Validation, errors::ErrorKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    AuthSettings, Caller, KeyAlgorithm, KeySet, KeyStoreError, Role,
    error::{AuthError, printable},
    store::KeyStore,
};

/// Tokens longer than this are refused unread (an HTTP/2 header list is 16 KiB by default).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The largest leeway used, whatever the settings say: more is a misconfiguration.
pub const MAX_LEEWAY_S: u64 = 3_600;
/// Most verified tokens remembered; beyond it the expired ones are dropped, then all.
const REMEMBERED_MAX: usize = 4_096;

/// Checks bearer tokens against the configured keys, issuer and audience. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    leeway: u64,
    store: KeyStore,
    es256: Validation,
    rs256: Validation,
    eddsa: Validation,
    /// Tokens that verified, by their SHA-256.
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

/// A token that verified: who it speaks for, while when, and under which keys.
struct Verified {
    caller: Caller,
    keys: Arc<KeySet>,
    not_before: Option<u64>,
    expires: u64,
}

impl Verified {
    /// Whether the token may be let through again at `now` (seconds since the epoch) under
    /// `keys`: the same key set, and `exp` / `nbf` as the full check reads them, with the leeway.
    fn still_valid(&self, keys: &Arc<KeySet>, now: u64, leeway: u64) -> bool {
        Arc::ptr_eq(&self.keys, keys)
            && now <= self.expires.saturating_add(leeway)
            && self
                .not_before
                .is_none_or(|nbf| nbf <= now.saturating_add(leeway))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("keys", &self.inner.store.keys())
            .finish()
    }
}

/// The claims read after the signature and the registered claims have been checked.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// The header fields read before choosing a key.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

impl Verifier {
    /// Loads the keys named by `settings.keys` and watches them for changes.
    ///
    /// Empty `keys`: a verifier without keys, which refuses every token with
    /// [`AuthError::NoKeysConfigured`]. Keys that cannot be loaded now are an error (a reload
    /// that fails later keeps the previous keys instead).
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, KeyStoreError> {
        let store = if settings.keys.is_empty() {
            tracing::warn!(
                "auth.keys is empty: no token verifies, every call needing a role is refused"
            );
            KeyStore::fixed(KeySet::default())
        } else {
            KeyStore::watch(
                Path::new(&settings.keys),
                Duration::from_millis(settings.reload_check_ms),
            )?
        };
        Ok(Self::with_store(settings, store))
    }

    /// A verifier trusting the keys of the JWKS `document`, which never reload; `settings.keys`
    /// and `reload_check_ms` are ignored. For tests, fuzzing and embedding.
    pub fn from_jwks_str(settings: &AuthSettings, document: &str) -> Result<Self, KeyStoreError> {
        let keys = KeySet::from_jwks(document, Path::new("<inline JWKS>"))?;
        Ok(Self::with_store(settings, KeyStore::fixed(keys)))
    }

    fn with_store(settings: &AuthSettings, store: KeyStore) -> Self {
        let leeway = settings.leeway_s.min(MAX_LEEWAY_S);
        if leeway < settings.leeway_s {
            tracing::warn!(
                configured = settings.leeway_s,
                used = leeway,
                "auth.leeway_s is too large; using the maximum"
            );
        }
        let validation = |algorithm: KeyAlgorithm| {
            let mut validation = Validation::new(algorithm.jwt());
            validation.leeway = leeway;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation
        };
        Self {
            inner: Arc::new(Inner {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                leeway,
                verified: Mutex::new(HashMap::new()),
                es256: validation(KeyAlgorithm::Es256),
                rs256: validation(KeyAlgorithm::Rs256),
                eddsa: validation(KeyAlgorithm::EdDsa),
                store,
            }),
        }
    }

    /// The key ids and algorithms currently trusted.
    pub fn keys(&self) -> Vec<(String, KeyAlgorithm)> {
        self.inner.store.keys().describe()
    }

    /// Checks `token` (the part after `Bearer `) and returns who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        let keys = self.inner.store.keys();
        if keys.is_empty() {
            return Err(AuthError::NoKeysConfigured);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("longer than 8 KiB"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(seen) = self.remembered().get(&digest)
            && seen.still_valid(&keys, now, self.inner.leeway)
        {
            return Ok(seen.caller.clone());
        }
        let (caller, validity) = self.check(token, &keys)?;
        if let Some((not_before, expires)) = validity {
            let mut remembered = self.remembered();
            if remembered.len() >= REMEMBERED_MAX {
                let leeway = self.inner.leeway;
                remembered.retain(|_, seen| seen.still_valid(&keys, now, leeway));
                if remembered.len() >= REMEMBERED_MAX {
                    remembered.clear();
                }
            }
            remembered.insert(
                digest,
                Verified {
                    caller: caller.clone(),
                    keys,
                    not_before,
                    expires,
                },
            );
        }
        Ok(caller)
    }

    /// The tokens that verified lately.
    fn remembered(&self) -> MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The full check of `token` against `keys`: the caller, and the token's `nbf` and `exp`
    /// when they are whole seconds (a token whose are not is checked again on every use).
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        token: &str,
        keys: &KeySet,
    ) -> Result<(Caller, Option<(Option<u64>, u64)>), AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "not three dot-separated parts (header.payload.signature)",
            ));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthError::Malformed("the header is not base64url"))?;
        let header: RawHeader = serde_json::from_slice(&header).map_err(|_| {
            AuthError::Malformed("the header is not a JSON object with string `alg` and `kid`")
        })?;
        let alg = header
            .alg
            .ok_or(AuthError::Malformed("the header has no `alg`"))?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::UnsupportedAlgorithm {
                alg: printable(&alg),
                key_alg: None,
            });
        }
        let (kid, key) = match header.kid.as_deref() {
            Some(kid) => (
                kid,
                keys.get(kid)
                    .ok_or_else(|| AuthError::UnknownKeyId(printable(kid)))?,
            ),
            None => keys
                .single()
                .ok_or(AuthError::MissingKeyId { loaded: keys.len() })?,
        };
        if alg != key.algorithm.name() {
            return Err(AuthError::UnsupportedAlgorithm {
                alg: printable(&alg),
                key_alg: Some(key.algorithm.name()),
            });
        }
        let validation = match key.algorithm {
            KeyAlgorithm::Es256 => &self.inner.es256,
            KeyAlgorithm::Rs256 => &self.inner.rs256,
            KeyAlgorithm::EdDsa => &self.inner.eddsa,
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, validation)
            .map_err(|error| self.refusal(error.kind(), kid, &alg))?;
        let seconds = |claim: &str| data.claims.get(claim).map(serde_json::Value::as_u64);
        let validity = match (seconds("nbf"), seconds("exp")) {
            (None, Some(Some(expires))) => Some((None, expires)),
            (Some(Some(not_before)), Some(Some(expires))) => Some((Some(not_before), expires)),
            _ => None,
        };
        let claims: Claims = serde_json::from_value(data.claims).map_err(|_| {
            AuthError::Malformed("`sub` is not a string or `roles` not an array of strings")
        })?;
        if claims.sub.trim().is_empty() {
            return Err(AuthError::MissingClaim("sub"));
        }
        let mut roles: Vec<Role> = Vec::new();
        for role in claims.roles.unwrap_or_default() {
            if let Ok(role) = role.parse::<Role>()
                && !roles.contains(&role)
            {
                roles.push(role);
            }
        }
        let caller = Caller {
            subject: claims.sub,
            roles,
        };
        Ok((caller, validity))
    }

    /// What a `jsonwebtoken` refusal means for the caller.
    fn refusal(&self, kind: &ErrorKind, kid: &str, alg: &str) -> AuthError {
        match kind {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => AuthError::BadSignature {
                kid: printable(kid),
            },
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
                expected: self.inner.issuer.clone(),
            },
            ErrorKind::InvalidAudience => AuthError::WrongAudience {
                expected: self.inner.audience.clone(),
            },
            ErrorKind::MissingRequiredClaim(claim) => {
                AuthError::MissingClaim(match claim.as_str() {
                    "exp" => "exp",
                    "iss" => "iss",
                    "aud" => "aud",
                    "sub" => "sub",
                    "nbf" => "nbf",
                    _ => "a registered claim",
                })
            }
            ErrorKind::InvalidClaimFormat(claim) => AuthError::Malformed(match claim.as_str() {
                "exp" => "`exp` is not a number of seconds",
                "nbf" => "`nbf` is not a number of seconds",
                "iss" => "`iss` is not a string",
                "aud" => "`aud` is not a string or an array of strings",
                "sub" => "`sub` is not a string",
                _ => "a registered claim has the wrong type",
            }),
            ErrorKind::InvalidAlgorithm
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName => AuthError::UnsupportedAlgorithm {
                alg: printable(alg),
                key_alg: None,
            },
            ErrorKind::Base64(_) => {
                AuthError::Malformed("the payload or the signature is not base64url")
            }
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                AuthError::Malformed("the header or the claims are not a JSON object")
            }
            ErrorKind::InvalidToken => {
                AuthError::Malformed("unsupported header parameters (`crit`, `b64`)")
            }
            _ => AuthError::Malformed("refused by the JWT library"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::auth::test_support::{
        AUDIENCE, ISSUER, TempDir, TestKey, claims, hand_made, header, jwks, now, settings,
        verifier,
    };

    fn refused(verifier: &Verifier, token: &str) -> AuthError {
        verifier.verify(token).unwrap_err()
    }

    #[test]
    fn a_valid_token_yields_subject_and_roles() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let caller = verifier
            .verify(&key.token("alice", &["sales", "read-only", "sales", "wizard"]))
            .unwrap();
        assert_eq!(caller.subject, "alice");
        assert_eq!(caller.roles, vec![Role::Sales, Role::ReadOnly]);
    }

    #[test]
    fn every_key_type_verifies() {
        for key in [
            TestKey::es256("es"),
            TestKey::eddsa("ed"),
            TestKey::rs256("rs"),
        ] {
            let verifier = verifier(&[&key]);
            let caller = verifier.verify(&key.token("bob", &["finance"])).unwrap();
            assert_eq!(caller.roles, vec![Role::Finance], "{:?}", key.algorithm);
        }
    }

    #[test]
    fn a_minted_token_verifies() {
        let key = TestKey::es256("dev");
        let verifier = verifier(&[&key]);
        let caller = verifier
            .verify(&key.minted("carol", &[Role::Warehouse, Role::Admin]))
            .unwrap();
        assert_eq!(caller.subject, "carol");
        assert_eq!(caller.roles, vec![Role::Warehouse, Role::Admin]);
    }

    #[test]
    fn no_token_is_missing() {
        let key = TestKey::es256("k1");
        assert_eq!(refused(&verifier(&[&key]), ""), AuthError::MissingToken);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let good = key.token("alice", &[]);
        let (signed, _) = good.rsplit_once('.').unwrap();
        for token in [
            "garbage".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!!!.b.c".to_owned(),
            format!("{}.b.c", URL_SAFE_NO_PAD.encode("[1,2]")),
            format!("{}.b.c", URL_SAFE_NO_PAD.encode(r#"{"kid":"k1"}"#)),
            format!(
                "{}.b.c",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":7}"#)
            ),
            format!("{signed}.!!!"),
            format!("{signed}.{}", "x".repeat(MAX_TOKEN_LEN)),
        ] {
            assert!(
                matches!(refused(&verifier, &token), AuthError::Malformed(_)),
                "{token:.40}: {:?}",
                verifier.verify(&token)
            );
        }
    }

    #[test]
    fn expired_tokens_are_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let mut claims = claims("alice", &[]);
        claims["exp"] = json!(now() - 120);
        claims["nbf"] = json!(now() - 600);
        assert_eq!(refused(&verifier, &key.sign(&claims)), AuthError::Expired);
        // Within the leeway (30 s) it still passes.
        claims["exp"] = json!(now() - 10);
        assert!(verifier.verify(&key.sign(&claims)).is_ok());
        // `exp` is required.
        claims.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            refused(&verifier, &key.sign(&claims)),
            AuthError::MissingClaim("exp")
        );
    }

    #[test]
    fn tokens_not_yet_valid_are_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let mut claims = claims("alice", &[]);
        claims["nbf"] = json!(now() + 120);
        assert_eq!(
            refused(&verifier, &key.sign(&claims)),
            AuthError::NotYetValid
        );
        claims["nbf"] = json!(now() + 10);
        assert!(verifier.verify(&key.sign(&claims)).is_ok());
        claims.as_object_mut().unwrap().remove("nbf");
        assert!(verifier.verify(&key.sign(&claims)).is_ok());
    }

    #[test]
    fn wrong_audience_is_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let mut claims = claims("alice", &[]);
        claims["aud"] = json!("someone-else");
        assert!(matches!(
            refused(&verifier, &key.sign(&claims)),
            AuthError::WrongAudience { .. }
        ));
        claims["aud"] = json!(["someone-else", AUDIENCE]);
        assert!(verifier.verify(&key.sign(&claims)).is_ok());
        claims.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            refused(&verifier, &key.sign(&claims)),
            AuthError::MissingClaim("aud")
        );
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let mut claims = claims("alice", &[]);
        claims["iss"] = json!("evil");
        assert_eq!(
            refused(&verifier, &key.sign(&claims)),
            AuthError::WrongIssuer {
                expected: ISSUER.into()
            }
        );
        claims.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            refused(&verifier, &key.sign(&claims)),
            AuthError::MissingClaim("iss")
        );
    }

    #[test]
    fn subject_is_required_and_roles_must_be_strings() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let mut sub_claims = claims("alice", &[]);
        sub_claims["sub"] = json!("  ");
        assert_eq!(
            refused(&verifier, &key.sign(&sub_claims)),
            AuthError::MissingClaim("sub")
        );
        sub_claims.as_object_mut().unwrap().remove("sub");
        assert_eq!(
            refused(&verifier, &key.sign(&sub_claims)),
            AuthError::MissingClaim("sub")
        );
        let mut roles_claims = claims("alice", &[]);
        roles_claims["roles"] = json!("admin");
        assert!(matches!(
            refused(&verifier, &key.sign(&roles_claims)),
            AuthError::Malformed(_)
        ));
        roles_claims["roles"] = json!(["admin", 7]);
        assert!(matches!(
            refused(&verifier, &key.sign(&roles_claims)),
            AuthError::Malformed(_)
        ));
        roles_claims.as_object_mut().unwrap().remove("roles");
        let caller = verifier.verify(&key.sign(&roles_claims)).unwrap();
        assert_eq!(caller.roles, vec![]);
    }

    #[test]
    fn a_signature_by_another_key_with_the_same_kid_is_refused() {
        let trusted = TestKey::es256("k1");
        let impostor = TestKey::es256("k1");
        let verifier = verifier(&[&trusted]);
        assert_eq!(
            refused(&verifier, &impostor.token("mallory", &["admin"])),
            AuthError::BadSignature { kid: "k1".into() }
        );
        // A token whose payload was changed after signing.
        let token = trusted.token("alice", &["read-only"]);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims("alice", &["admin"]).to_string());
        parts[1] = &forged;
        assert_eq!(
            refused(&verifier, &parts.join(".")),
            AuthError::BadSignature { kid: "k1".into() }
        );
    }

    #[test]
    fn an_unknown_kid_is_refused() {
        let trusted = TestKey::es256("k1");
        let other = TestKey::es256("k2");
        assert_eq!(
            refused(&verifier(&[&trusted]), &other.token("alice", &[])),
            AuthError::UnknownKeyId("k2".into())
        );
    }

    #[test]
    fn a_token_without_kid_needs_a_single_key() {
        let one = TestKey::es256("k1");
        let two = TestKey::es256("k2");
        let token = one.sign_with_header(&header(Algorithm::ES256, None), &claims("alice", &[]));
        assert!(verifier(&[&one]).verify(&token).is_ok());
        assert_eq!(
            refused(&verifier(&[&one, &two]), &token),
            AuthError::MissingKeyId { loaded: 2 }
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
            let unsigned = hand_made(&header, &claims("mallory", &["admin"]), b"");
            assert!(unsigned.ends_with('.'));
            assert_eq!(
                refused(&verifier, &unsigned),
                AuthError::UnsupportedAlgorithm {
                    alg: alg.into(),
                    key_alg: None
                }
            );
        }
    }

    #[test]
    fn hmac_with_the_public_key_as_secret_is_refused() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let claims = claims("mallory", &["admin"]);
        for secret in [
            key.public_pem().into_bytes(),
            key.jwk().to_string().into_bytes(),
        ] {
            let token = jsonwebtoken::encode(
                &header(Algorithm::HS256, Some("k1")),
                &claims,
                &EncodingKey::from_secret(&secret).unwrap(),
            )
            .unwrap();
            assert_eq!(
                refused(&verifier, &token),
                AuthError::UnsupportedAlgorithm {
                    alg: "HS256".into(),
                    key_alg: Some("ES256")
                }
            );
        }
        // Nor may an RSA key be used as ES256, or the other way round.
        let rsa = TestKey::rs256("k1");
        assert!(matches!(
            refused(&verifier, &rsa.token("mallory", &[])),
            AuthError::UnsupportedAlgorithm { .. }
        ));
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some("k1".into());
        let token = hand_made(&json!(header), &claims, &[0; 96]);
        assert!(matches!(
            refused(&verifier, &token),
            AuthError::UnsupportedAlgorithm { .. }
        ));
    }

    #[test]
    fn rotation_two_keys_both_verify() {
        let old = TestKey::es256("2024");
        let new = TestKey::eddsa("2025");
        let verifier = verifier(&[&old, &new]);
        assert_eq!(verifier.verify(&old.token("a", &[])).unwrap().subject, "a");
        assert_eq!(verifier.verify(&new.token("b", &[])).unwrap().subject, "b");
    }

    #[test]
    fn no_keys_configured_refuses_everything() {
        let verifier = Verifier::from_settings(&AuthSettings::default()).unwrap();
        let key = TestKey::es256("k1");
        assert_eq!(
            refused(&verifier, &key.token("alice", &[])),
            AuthError::NoKeysConfigured
        );
        assert_eq!(refused(&verifier, ""), AuthError::MissingToken);
        assert!(verifier.keys().is_empty());
    }

    #[test]
    fn keys_reload_when_the_jwks_file_changes() {
        let dir = TempDir::new("reload");
        let old = TestKey::es256("old");
        let new = TestKey::es256("new");
        let path = dir.write("keys.json", &jwks(&[&old]));
        let verifier = Verifier::from_settings(&settings(&path, 50)).unwrap();
        assert!(verifier.verify(&old.token("a", &[])).is_ok());
        assert_eq!(
            refused(&verifier, &new.token("a", &[])),
            AuthError::UnknownKeyId("new".into())
        );

        dir.replace("keys.json", &jwks(&[&new]), 10);
        std::thread::sleep(Duration::from_millis(80));
        assert!(verifier.verify(&new.token("a", &[])).is_ok());
        assert_eq!(
            refused(&verifier, &old.token("a", &[])),
            AuthError::UnknownKeyId("old".into())
        );

        // A broken file keeps the keys that were loaded.
        dir.replace("keys.json", "{\"keys\": [", 20);
        std::thread::sleep(Duration::from_millis(80));
        assert!(verifier.verify(&new.token("a", &[])).is_ok());
        // So does a file without keys, and a missing file.
        dir.replace("keys.json", "{\"keys\": []}", 30);
        std::thread::sleep(Duration::from_millis(80));
        assert!(verifier.verify(&new.token("a", &[])).is_ok());
        dir.remove("keys.json");
        std::thread::sleep(Duration::from_millis(80));
        assert!(verifier.verify(&new.token("a", &[])).is_ok());
        // And a fixed file is picked up again.
        dir.replace("keys.json", &jwks(&[&old, &new]), 40);
        std::thread::sleep(Duration::from_millis(80));
        assert!(verifier.verify(&old.token("a", &[])).is_ok());
        assert_eq!(verifier.keys().len(), 2);
    }

    #[test]
    fn a_token_that_verified_is_remembered_and_a_bad_one_is_not() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let token = key.token("alice", &["sales"]);
        let first = verifier.verify(&token).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), first);
        assert_eq!(verifier.remembered().len(), 1);
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(verifier.verify(&forged).is_err());
        assert!(verifier.verify(&forged).is_err());
        assert_eq!(verifier.remembered().len(), 1);
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let key = TestKey::es256("k1");
        let settings = AuthSettings {
            leeway_s: 0,
            ..settings(Path::new(""), 1_000)
        };
        let verifier = Verifier::from_jwks_str(&settings, &jwks(&[&key])).unwrap();
        let mut claims = claims("alice", &[]);
        claims["exp"] = json!(now() + 1);
        let token = key.sign(&claims);
        assert!(verifier.verify(&token).is_ok());
        assert!(verifier.verify(&token).is_ok());
        std::thread::sleep(Duration::from_millis(2_100));
        assert_eq!(refused(&verifier, &token), AuthError::Expired);
    }

    #[test]
    fn a_remembered_token_is_checked_again_after_a_key_reload() {
        let dir = TempDir::new("reload-remembered");
        let old = TestKey::es256("old");
        let new = TestKey::es256("new");
        let path = dir.write("keys.json", &jwks(&[&old]));
        let verifier = Verifier::from_settings(&settings(&path, 50)).unwrap();
        let token = old.token("a", &[]);
        assert!(verifier.verify(&token).is_ok());
        assert!(verifier.verify(&token).is_ok());
        dir.replace("keys.json", &jwks(&[&new]), 10);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            refused(&verifier, &token),
            AuthError::UnknownKeyId("old".into())
        );
    }

    #[test]
    fn keys_are_not_checked_more_often_than_reload_check_ms() {
        let dir = TempDir::new("throttle");
        let old = TestKey::es256("old");
        let new = TestKey::es256("new");
        let path = dir.write("keys.json", &jwks(&[&old]));
        let verifier = Verifier::from_settings(&settings(&path, 3_600_000)).unwrap();
        dir.replace("keys.json", &jwks(&[&new]), 10);
        assert!(verifier.verify(&old.token("a", &[])).is_ok());
        assert_eq!(
            refused(&verifier, &new.token("a", &[])),
            AuthError::UnknownKeyId("new".into())
        );
    }

    #[test]
    fn a_pem_directory_works_end_to_end() {
        let dir = TempDir::new("pem-verify");
        let es = TestKey::es256("es");
        let rs = TestKey::rs256("rs");
        dir.write("es.pem", &es.public_pem());
        dir.write("rs.pem", &rs.public_pem());
        let verifier = Verifier::from_settings(&settings(dir.path(), 0)).unwrap();
        assert!(verifier.verify(&es.token("a", &[])).is_ok());
        assert!(verifier.verify(&rs.token("a", &[])).is_ok());
        // A renamed copy of the RSA key: the key id is the file name.
        let renamed = rs.renamed("rs2");
        assert_eq!(
            refused(&verifier, &renamed.token("a", &[])),
            AuthError::UnknownKeyId("rs2".into())
        );
    }

    #[test]
    fn huge_leeway_is_clamped_without_overflow() {
        let key = TestKey::es256("k1");
        let mut settings = settings(Path::new(""), 1_000);
        settings.leeway_s = u64::MAX;
        let verifier = Verifier::from_jwks_str(&settings, &jwks(&[&key])).unwrap();
        let mut claims = claims("alice", &[]);
        claims["exp"] = json!(1);
        claims["nbf"] = json!(u64::MAX);
        assert!(verifier.verify(&key.sign(&claims)).is_err());
    }

    #[test]
    fn error_messages_never_echo_the_token() {
        let key = TestKey::es256("k1");
        let verifier = verifier(&[&key]);
        let token = key.token("alice", &["sales"]);
        let signature = token.rsplit('.').next().unwrap().to_owned();
        let mut tampered = token.clone();
        tampered.push('A');
        for token in [tampered, TestKey::es256("k1").token("alice", &[])] {
            let message = refused(&verifier, &token).to_string();
            assert!(!message.contains(&signature), "{message}");
            assert!(!message.contains(&token), "{message}");
        }
    }

    // A copy of `fuzz/fuzz_targets/verify_token.rs` (which cannot be built here: cargo-fuzz and
    // libFuzzer), so its code type-checks and runs with every test run. Keep the two in step.
    mod fuzz_target_copy {
        use std::sync::LazyLock;

        use crate::auth::{AuthSettings, Verifier, fixtures::TEST_JWKS};

        pub static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
            Verifier::from_jwks_str(&AuthSettings::default(), TEST_JWKS)
                .expect("the fixed test keys load")
        });

        /// base64url without padding (RFC 4648 §5), so the target needs no more dependencies.
        pub fn base64url(bytes: &[u8]) -> String {
            const ALPHABET: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
            for chunk in bytes.chunks(3) {
                let bits = chunk.iter().enumerate().fold(0u32, |acc, (i, byte)| {
                    acc | (u32::from(*byte) << (16 - 8 * i))
                });
                for i in 0..=chunk.len() {
                    out.push(char::from(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize]));
                }
            }
            out
        }

        pub fn fuzz_one(data: &[u8]) {
            if let Ok(token) = std::str::from_utf8(data) {
                let _ = VERIFIER.verify(token);
            }
            let third = data.len() / 3;
            let (header, rest) = data.split_at(third);
            let (payload, signature) = rest.split_at(third);
            let token = format!(
                "{}.{}.{}",
                base64url(header),
                base64url(payload),
                base64url(signature)
            );
            let _ = VERIFIER.verify(&token);
        }
    }

    #[test]
    fn the_fuzz_targets_base64url_matches_the_base64_crate() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        for len in 0..bytes.len() {
            assert_eq!(
                fuzz_target_copy::base64url(&bytes[..len]),
                URL_SAFE_NO_PAD.encode(&bytes[..len])
            );
        }
    }

    #[test]
    fn the_fuzz_target_body_does_not_panic_on_odd_inputs() {
        assert_eq!(fuzz_target_copy::VERIFIER.keys().len(), 3);
        let mut inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"..".to_vec(),
            b"....".to_vec(),
            "é.é.é".as_bytes().to_vec(),
            vec![0xff; 64],
            br#"{"alg":"ES256","kid":"fuzz-es256"}{"exp":1}x"#.to_vec(),
            br#"{"alg":"RS256","kid":"fuzz-rs256"}{"sub":"a"}xy"#.to_vec(),
            br#"{"alg":"EdDSA","kid":"fuzz-eddsa"}{"exp":1e400}xyz"#.to_vec(),
            br#"{"alg":"HS256","kid":"fuzz-es256"}{"exp":-1}abc"#.to_vec(),
            br#"{"alg":"ES256","crit":["b64"],"b64":false}{"a":[[[[[[]]]]]]}abcd"#.to_vec(),
        ];
        for depth in [10, 200, 5_000] {
            let nested = format!(
                r#"{{"alg":"ES256","kid":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            inputs.push(nested.into_bytes());
        }
        // Every key, a real signature over junk claims: reaches claim parsing.
        let rsa = TestKey::rs256("fuzz-rs256");
        for junk in [
            json!(null),
            json!([1]),
            json!({"exp": "soon"}),
            json!({"exp": u64::MAX, "nbf": -5, "iss": 3, "aud": {}, "sub": []}),
        ] {
            inputs.push(rsa.sign(&junk).into_bytes());
        }
        for input in &inputs {
            fuzz_target_copy::fuzz_one(input);
        }
        // Every key id with every algorithm name and signatures of odd sizes: reaches each
        // verifier with garbage.
        let verifier = &*fuzz_target_copy::VERIFIER;
        let claims = claims("alice", &["admin"]);
        for kid in ["fuzz-es256", "fuzz-eddsa", "fuzz-rs256", "", "nope"] {
            for alg in [
                "ES256", "RS256", "EdDSA", "PS256", "ES384", "HS256", "none", "",
            ] {
                for len in [0, 1, 63, 64, 65, 255, 256, 257, 2048] {
                    let header = json!({"alg": alg, "kid": kid});
                    let token = hand_made(&header, &claims, &vec![0x5a; len]);
                    assert!(verifier.verify(&token).is_err(), "{alg} {kid} {len}");
                }
            }
        }
    }
}
