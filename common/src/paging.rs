//! Page tokens for List RPCs (AIP-158): opaque to clients, keyset-based (the last key seen, so
//! pages stay stable while rows are added), bound to the query's filters (a token from another
//! query is refused instead of silently paging something else) and tamper-evident.
//!
//! A token is base64url of: an 8-byte fingerprint of the filters, the JSON of the last key of
//! the previous page, and a 16-byte HMAC-SHA256 tag over both, keyed by the process's page-token
//! key ([`set_key`]; every replica of a service must share it, or a token from one replica is
//! refused by another). Lists are ordered by that key; the next page is "key greater than the
//! token's".

use std::sync::OnceLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;

use crate::validation::FieldViolation;

/// The page size when a request asks for none (`page_size` 0).
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// The longest token accepted; ours are far shorter.
const MAX_TOKEN_LEN: usize = 4096;

/// The fingerprint's share of a token, in bytes.
const FINGERPRINT_LEN: usize = 8;

/// The tag's share of a token, in bytes (HMAC-SHA256 truncated to 128 bits).
const TAG_LEN: usize = 16;

static KEY: OnceLock<Vec<u8>> = OnceLock::new();

/// Sets the key that signs page tokens, once, at start-up (later calls are ignored: tokens
/// already handed out must stay valid). Without it, a random key is drawn on first use, so
/// tokens do not survive a restart and are not accepted by another replica.
pub fn set_key(key: &[u8]) {
    if KEY.set(key.to_vec()).is_err() {
        tracing::debug!("page-token key already set");
    }
}

/// Why the page-token key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the page-token key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the page-token key in {path} is shorter than 16 bytes")]
    Short { path: String },
}

/// Sets the key from `path` (trimmed); an empty path keeps a random key per process.
pub fn load_key(path: &str) -> Result<(), KeyError> {
    if path.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let key = text.trim();
    if key.len() < 16 {
        return Err(KeyError::Short {
            path: path.to_owned(),
        });
    }
    set_key(key.as_bytes());
    Ok(())
}

fn key() -> &'static [u8] {
    KEY.get_or_init(|| rand::random::<[u8; 32]>().to_vec())
}

/// The HMAC of `body` under the page-token key (HMAC takes keys of any length, so this fails
/// only if that ever changed).
fn mac(body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key()).ok()?;
    mac.update(body);
    Some(mac)
}

fn tag(body: &[u8]) -> Option<[u8; TAG_LEN]> {
    let full = mac(body)?.finalize().into_bytes();
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(full.get(..TAG_LEN)?);
    Some(tag)
}

/// The page sizes of one List RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    /// Used when the request asks for 0.
    pub default: i64,
    /// Larger requests are coerced down to this.
    pub max: i64,
}

impl PageSizes {
    /// [`DEFAULT_PAGE_SIZE`] by default, at most `max`.
    pub const fn up_to(max: i64) -> Self {
        Self {
            default: DEFAULT_PAGE_SIZE,
            max,
        }
    }
}

/// What one List call asks for: at most `size` rows with keys after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<K> {
    pub size: i64,
    pub after: Option<K>,
    fingerprint: u64,
}

impl<K: Serialize + DeserializeOwned> Page<K> {
    /// Reads `page_size` (0 = the default, negative = refused, larger than the maximum = the
    /// maximum) and `page_token`, which must come from the same query: the same `filters`, a
    /// text that names the list and every filter of the request (e.g. `products|true`).
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: &str,
        sizes: PageSizes,
    ) -> Result<Self, FieldViolation> {
        let size = match i64::from(page_size) {
            n if n < 0 => {
                return Err(FieldViolation::new("page_size", "must not be negative"));
            }
            0 => sizes.default,
            n => n.min(sizes.max),
        };
        let fingerprint = fnv1a(filters.as_bytes());
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, fingerprint).ok_or_else(|| {
                FieldViolation::new(
                    "page_token",
                    "not a page token of this query; start again without one",
                )
            })?)
        };
        Ok(Self {
            size,
            after,
            fingerprint,
        })
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts `rows` (fetched with [`Page::fetch_limit`]) to the page and returns the token of
    /// the next page, empty when this is the last one.
    pub fn finish<T>(
        &self,
        rows: &mut Vec<T>,
        key: impl Fn(&T) -> K,
    ) -> Result<String, serde_json::Error> {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() <= size {
            return Ok(String::new());
        }
        rows.truncate(size);
        match rows.last() {
            Some(last) => encode(&key(last), self.fingerprint),
            None => Ok(String::new()),
        }
    }
}

/// The token to continue a long operation (a republish) after `key`, bound to `operation`
/// and signed like a page token.
pub fn resume_token<K: Serialize>(operation: &str, key: &K) -> Result<String, serde_json::Error> {
    encode(key, fnv1a(operation.as_bytes()))
}

/// Reads a [`resume_token`] of `operation` (`None` when `token` is empty: start at the
/// beginning); anything else is refused as `page_token`.
pub fn resume_from<K: DeserializeOwned>(
    operation: &str,
    token: &str,
) -> Result<Option<K>, FieldViolation> {
    if token.is_empty() {
        return Ok(None);
    }
    decode(token, fnv1a(operation.as_bytes()))
        .map(Some)
        .ok_or_else(|| {
            FieldViolation::new(
                "page_token",
                "not a token of this operation; start again without one",
            )
        })
}

fn encode<K: Serialize>(key: &K, fingerprint: u64) -> Result<String, serde_json::Error> {
    let mut body = fingerprint.to_be_bytes().to_vec();
    body.extend(serde_json::to_vec(key)?);
    // HMAC accepts keys of any length; `tag` fails only if that ever changed.
    let tag = tag(&body).unwrap_or_default();
    body.extend(tag);
    Ok(URL_SAFE_NO_PAD.encode(body))
}

fn decode<K: DeserializeOwned>(token: &str, fingerprint: u64) -> Option<K> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() <= FINGERPRINT_LEN + TAG_LEN {
        return None;
    }
    let (body, given) = bytes.split_at(bytes.len() - TAG_LEN);
    // Constant-time comparison of the truncated tag.
    mac(body)?.verify_truncated_left(given).ok()?;
    let (head, json) = body.split_at(FINGERPRINT_LEN);
    if u64::from_be_bytes(head.try_into().ok()?) != fingerprint {
        return None;
    }
    serde_json::from_slice(json).ok()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_token_goes_on_only_with_its_own_operation() {
        let token = resume_token("crm.republish", &("orders", 42)).unwrap();
        let resumed: Option<(String, i64)> = resume_from("crm.republish", &token).unwrap();
        assert_eq!(resumed, Some(("orders".to_owned(), 42)));
        assert_eq!(
            resume_from::<(String, i64)>("crm.republish", "").unwrap(),
            None
        );
        let other = resume_from::<(String, i64)>("erp.republish", &token).unwrap_err();
        assert_eq!(other.field, "page_token");
        assert!(resume_from::<(String, i64)>("crm.republish", "garbage").is_err());
    }

    const SIZES: PageSizes = PageSizes::up_to(1_000);

    #[test]
    fn sizes_default_cap_and_refuse_negatives() {
        let size = |n| Page::<String>::parse(n, "", "", SIZES).map(|p| p.size);
        assert_eq!(size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(size(7), Ok(7));
        assert_eq!(size(5_000), Ok(1_000));
        assert_eq!(
            Page::<String>::parse(5_000, "", "", PageSizes::up_to(500)).map(|p| p.size),
            Ok(500)
        );
        assert_eq!(size(-1).map_err(|v| v.field), Err("page_size".to_owned()));
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filters() {
        let page = Page::<String>::parse(2, "", "status=ACTIVE", SIZES).unwrap();
        let mut rows = vec!["a", "b", "c"];
        let token = page.finish(&mut rows, |r| (*r).to_owned()).unwrap();
        assert_eq!(rows, ["a", "b"]);
        let next = Page::<String>::parse(2, &token, "status=ACTIVE", SIZES).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        let other = Page::<String>::parse(2, &token, "status=ARCHIVED", SIZES);
        assert_eq!(other.map_err(|v| v.field), Err("page_token".to_owned()));
        for garbage in [
            "x",
            "zz",
            &token[..17],
            "0123456789abcdefzz",
            "nonsense",
            "a b",
        ] {
            assert!(
                Page::<String>::parse(2, garbage, "status=ACTIVE", SIZES).is_err(),
                "{garbage}"
            );
        }

        let mut last = vec!["a", "b"];
        assert_eq!(page.finish(&mut last, |r| (*r).to_owned()).unwrap(), "");
        assert_eq!(last.len(), 2);
    }

    #[test]
    fn a_key_file_must_exist_and_be_long_enough() {
        assert!(load_key("").is_ok(), "no file: a random key");
        assert!(matches!(
            load_key("/nonexistent/page-token.key"),
            Err(KeyError::Read { .. })
        ));
        let path = std::env::temp_dir().join(format!("tandem-page-key-{}", std::process::id()));
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            load_key(&path.display().to_string()),
            Err(KeyError::Short { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let page = Page::<i64>::parse(1, "", "orders", SIZES).unwrap();
        let mut rows = vec![10_i64, 20];
        let token = page.finish(&mut rows, |r| *r).unwrap();
        assert!(!token.contains("10"), "opaque: {token}");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        // The key's JSON is `10`: make it `90` and keep everything else.
        let at = FINGERPRINT_LEN;
        assert_eq!(bytes[at], b'1');
        bytes[at] = b'9';
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert!(Page::<i64>::parse(1, &forged, "orders", SIZES).is_err());
        assert_eq!(
            Page::<i64>::parse(1, &token, "orders", SIZES)
                .unwrap()
                .after,
            Some(10)
        );
    }

    #[test]
    fn keys_are_typed() {
        let page = Page::<(String, String)>::parse(1, "", "levels", SIZES).unwrap();
        let mut rows = vec![("SKU-1", "AMS"), ("SKU-1", "BER")];
        let token = page
            .finish(&mut rows, |(s, w)| ((*s).to_owned(), (*w).to_owned()))
            .unwrap();
        let next = Page::<(String, String)>::parse(1, &token, "levels", SIZES).unwrap();
        assert_eq!(next.after, Some(("SKU-1".to_owned(), "AMS".to_owned())));
        // A token whose key has another type is refused, not misread.
        assert!(Page::<i64>::parse(1, &token, "levels", SIZES).is_err());
    }
}
