//! Why a token was refused ([`AuthError`]) and why keys could not be loaded ([`KeyStoreError`]).
//!
//! Messages name what was wrong and never contain a token or key material: they end up in gRPC
//! statuses and logs. The few token fields they quote (`kid`, `alg`) are cut short and stripped
//! of anything but printable ASCII.

use std::path::PathBuf;

/// Why a bearer token was refused, or a development token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token (expected the header `authorization: Bearer <token>`)")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    #[error("unknown key id {0:?}")]
    UnknownKeyId(String),
    #[error("the token names no key id (`kid`) and {loaded} keys are loaded")]
    MissingKeyId { loaded: usize },
    #[error("bad signature (key {kid:?})")]
    BadSignature { kid: String },
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (`nbf` is in the future)")]
    NotYetValid,
    #[error("wrong issuer (expected {expected:?})")]
    WrongIssuer { expected: String },
    #[error("wrong audience (expected {expected:?})")]
    WrongAudience { expected: String },
    #[error("unsupported algorithm {alg:?}{}", key_note(.key_alg))]
    UnsupportedAlgorithm {
        alg: String,
        key_alg: Option<&'static str>,
    },
    #[error("no token keys configured (auth.keys is empty or unusable)")]
    NoKeysConfigured,
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

/// Why the key file or directory could not be loaded. On a reload the previous keys stay.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a JWKS file (*.json) nor a directory of <kid>.pem public keys")]
    UnknownSource { path: PathBuf },
    #[error("{path} is not a JWKS document: {reason}")]
    Jwks { path: PathBuf, reason: String },
    #[error("key {kid:?} in {path}: {reason}")]
    Key {
        path: PathBuf,
        kid: String,
        reason: String,
    },
    #[error("key id {kid:?} appears twice in {path}")]
    DuplicateKid { path: PathBuf, kid: String },
    #[error("{path} holds no signature keys")]
    NoKeys { path: PathBuf },
}

fn key_note(key_alg: &Option<&'static str>) -> String {
    key_alg
        .map(|alg| format!(" (the key expects {alg})"))
        .unwrap_or_default()
}

/// At most 64 characters of `text`, with anything but printable ASCII replaced by `?`: safe to
/// put into a status message or a log line.
pub(crate) fn printable(text: &str) -> String {
    printable_up_to(text, 64)
}

/// Like [`printable`], with room for `limit` characters.
pub(crate) fn printable_up_to(text: &str, limit: usize) -> String {
    let mut out: String = text
        .chars()
        .take(limit)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(limit).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_cuts_and_cleans() {
        assert_eq!(printable("key-1"), "key-1");
        assert_eq!(printable("a\nb\u{1b}[31m"), "a?b?[31m");
        let long = "x".repeat(100);
        assert_eq!(printable(&long), format!("{}…", "x".repeat(64)));
    }

    #[test]
    fn messages_name_the_reason() {
        let error = AuthError::UnsupportedAlgorithm {
            alg: "HS256".into(),
            key_alg: Some("ES256"),
        };
        assert_eq!(
            error.to_string(),
            "unsupported algorithm \"HS256\" (the key expects ES256)"
        );
        let error = AuthError::UnsupportedAlgorithm {
            alg: "none".into(),
            key_alg: None,
        };
        assert_eq!(error.to_string(), "unsupported algorithm \"none\"");
    }
}
