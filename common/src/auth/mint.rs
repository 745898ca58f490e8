//! Development tokens: ES256 signing keys, tokens signed with them, and their public halves in
//! the forms the verifiers load (a JWKS document, or a PEM for a `<kid>.pem` directory).
//!
//! Used by `tandemctl token` and the test kit. A deployment's real tokens come from its
//! identity provider; these helpers never read or write files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::{AuthError, Role};

/// The claims of a minted token.
#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    roles: Vec<&'static str>,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// A new ES256 (P-256) signing key, as a PKCS#8 PEM (`PRIVATE KEY`). Keep it secret.
pub fn generate_signing_key() -> Result<String, AuthError> {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map(|pair| pair.serialize_pem())
        .map_err(|error| AuthError::Mint(format!("cannot generate a P-256 key: {error}")))
}

/// An ES256 token for `subject` with `roles`, naming its key `kid`, valid from now for `ttl`
/// (at least a second), with `iat`, `nbf` and `exp`.
///
/// `signing_key_pem` is a PKCS#8 EC P-256 private key (`-----BEGIN PRIVATE KEY-----`).
pub fn mint(
    signing_key_pem: &str,
    kid: &str,
    issuer: &str,
    audience: &str,
    subject: &str,
    roles: &[Role],
    ttl: Duration,
) -> Result<String, AuthError> {
    if kid.is_empty() {
        return Err(AuthError::Mint("the key id is empty".into()));
    }
    if subject.trim().is_empty() {
        return Err(AuthError::Mint("the subject is empty".into()));
    }
    if ttl.as_secs() == 0 {
        return Err(AuthError::Mint("the lifetime is under a second".into()));
    }
    let key = EncodingKey::from_ec_pem(signing_key_pem.as_bytes()).map_err(|_| {
        AuthError::Mint("the signing key is not a PKCS#8 EC private key PEM".into())
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AuthError::Mint("the clock is before 1970".into()))?
        .as_secs();
    let exp = now
        .checked_add(ttl.as_secs())
        .ok_or_else(|| AuthError::Mint("the lifetime is too long".into()))?;
    let mut names: Vec<&'static str> = Vec::with_capacity(roles.len());
    for role in roles {
        if !names.contains(&role.as_str()) {
            names.push(role.as_str());
        }
    }
    let claims = MintedClaims {
        iss: issuer,
        aud: audience,
        sub: subject,
        roles: names,
        iat: now,
        nbf: now,
        exp,
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &key).map_err(|error| {
        // The library's errors name a kind (e.g. InvalidEcdsaKey), never key material.
        AuthError::Mint(format!("signing failed ({error}); is it a P-256 key?"))
    })
}

/// The P-256 key pair in `signing_key_pem`, refused if it is any other kind of key.
fn p256_pair(signing_key_pem: &str) -> Result<rcgen::KeyPair, AuthError> {
    let pair = rcgen::KeyPair::from_pem(signing_key_pem)
        .map_err(|_| AuthError::Mint("the signing key is not a PKCS#8 private key PEM".into()))?;
    if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(AuthError::Mint(
            "the signing key is not an EC P-256 key".into(),
        ));
    }
    Ok(pair)
}

/// The public half of `signing_key_pem` as a PEM `PUBLIC KEY`, for a `<kid>.pem` file.
pub fn public_key_pem(signing_key_pem: &str) -> Result<String, AuthError> {
    Ok(p256_pair(signing_key_pem)?.public_key_pem())
}

/// The public half of `signing_key_pem` as a JWK (`kty` EC, `crv` P-256, `alg` ES256, `use`
/// sig) named `kid`.
pub fn public_jwk(signing_key_pem: &str, kid: &str) -> Result<serde_json::Value, AuthError> {
    let pair = p256_pair(signing_key_pem)?;
    // An uncompressed SEC1 point: 0x04 || x || y, 32 bytes each.
    let (x, y) = match pair.public_key_raw() {
        [0x04, coordinates @ ..] if coordinates.len() == 64 => coordinates.split_at(32),
        _ => {
            return Err(AuthError::Mint(
                "unexpected P-256 public key encoding".into(),
            ));
        }
    };
    Ok(serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
    }))
}

/// A JWKS document with the public halves of `signing_keys`, given as `(kid, PKCS#8 PEM)`:
/// what `auth.keys` may point at. List several for a rotation.
pub fn public_jwks(signing_keys: &[(&str, &str)]) -> Result<String, AuthError> {
    let keys = signing_keys
        .iter()
        .map(|(kid, pem)| public_jwk(pem, kid))
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_string_pretty(&serde_json::json!({ "keys": keys }))
        .map_err(|error| AuthError::Mint(format!("cannot write the JWKS: {error}")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::{
        KeySet, Verifier,
        test_support::{AUDIENCE, ISSUER, TempDir, TestKey, settings},
    };

    #[test]
    fn minted_tokens_verify_against_the_published_jwks_and_pem() {
        let private = generate_signing_key().unwrap();
        let jwks = public_jwks(&[("dev-1", &private)]).unwrap();
        let verifier = Verifier::from_jwks_str(&settings(Path::new(""), 0), &jwks).unwrap();
        let token = mint(
            &private,
            "dev-1",
            ISSUER,
            AUDIENCE,
            "tandemctl",
            &[Role::Admin, Role::Admin, Role::Finance],
            Duration::from_secs(60),
        )
        .unwrap();
        let caller = verifier.verify(&token).unwrap();
        assert_eq!(caller.subject, "tandemctl");
        assert_eq!(caller.roles, vec![Role::Admin, Role::Finance]);

        let dir = TempDir::new("mint-pem");
        dir.write("dev-1.pem", &public_key_pem(&private).unwrap());
        let set = KeySet::from_pem_dir(dir.path()).unwrap();
        assert_eq!(set.len(), 1);
        let verifier = Verifier::from_settings(&settings(dir.path(), 0)).unwrap();
        assert!(verifier.verify(&token).is_ok());
    }

    #[test]
    fn minted_tokens_carry_iat_nbf_exp_and_the_kid() {
        let key = TestKey::es256("k");
        let token = mint(
            &key.private_pem,
            "k",
            "iss",
            "aud",
            "sub",
            &[],
            Duration::from_secs(90),
        )
        .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("k"));
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["nbf"].as_u64(), Some(iat));
        assert_eq!(claims["exp"].as_u64(), Some(iat + 90));
        assert_eq!(claims["roles"], serde_json::json!([]));
    }

    #[test]
    fn minting_refuses_bad_input() {
        let key = TestKey::es256("k");
        let ed = TestKey::eddsa("e");
        let mint_with = |pem: &str, kid: &str, subject: &str, ttl: u64| {
            mint(pem, kid, "i", "a", subject, &[], Duration::from_secs(ttl))
        };
        for result in [
            mint_with("not a pem", "k", "s", 60),
            mint_with(&ed.private_pem, "k", "s", 60),
            mint_with(&key.public_pem(), "k", "s", 60),
            mint_with(&key.private_pem, "", "s", 60),
            mint_with(&key.private_pem, "k", " ", 60),
            mint_with(&key.private_pem, "k", "s", 0),
            mint_with(&key.private_pem, "k", "s", u64::MAX),
        ] {
            let error = result.unwrap_err();
            assert!(matches!(error, AuthError::Mint(_)), "{error}");
            assert!(!error.to_string().contains("BEGIN"), "{error}");
        }
        assert!(public_jwk(&ed.private_pem, "e").is_err());
        assert!(public_key_pem("junk").is_err());
    }
}
