//! Page tokens for List RPCs (AIP-158): opaque to clients, bound to the query's filters, and
//! keyset-based (the last key seen), so pages stay stable while rows are added.

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1_000;

/// What one List call asks for: at most `size` rows with keys after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    pub after: Option<String>,
    fingerprint: u64,
}

impl Page {
    /// Reads `page_size` (0 = default, larger than the maximum = the maximum) and
    /// `page_token`, which must come from the same query (same `filters`).
    pub fn parse(page_size: i32, page_token: &str, filters: &str) -> Result<Self> {
        let size = match i64::from(page_size) {
            n if n < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let fingerprint = fnv1a(filters.as_bytes());
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, fingerprint).ok_or_else(|| {
                Error::invalid(
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
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() <= size {
            return String::new();
        }
        rows.truncate(size);
        rows.last()
            .map(|last| encode(&key(last), self.fingerprint))
            .unwrap_or_default()
    }
}

fn encode(key: &str, fingerprint: u64) -> String {
    let mut token = format!("{fingerprint:016x}");
    for byte in key.bytes() {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

fn decode(token: &str, fingerprint: u64) -> Option<String> {
    if token.len() < 18 || !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let (head, key) = token.split_at(16);
    if u64::from_str_radix(head, 16).ok()? != fingerprint {
        return None;
    }
    let bytes = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_refuse_negatives() {
        assert_eq!(Page::parse(0, "", "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(Page::parse(7, "", "").unwrap().size, 7);
        assert_eq!(Page::parse(5_000, "", "").unwrap().size, MAX_PAGE_SIZE);
        assert!(matches!(Page::parse(-1, "", ""), Err(Error::Invalid(_))));
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_filters() {
        let page = Page::parse(2, "", "status=ACTIVE").unwrap();
        let mut rows = vec!["a", "b", "c"];
        let token = page.finish(&mut rows, |r| (*r).to_owned());
        assert_eq!(rows, ["a", "b"]);
        let next = Page::parse(2, &token, "status=ACTIVE").unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        assert!(Page::parse(2, &token, "status=ARCHIVED").is_err());
        for garbage in ["x", "zz", &token[..17], "0123456789abcdefzz"] {
            assert!(
                Page::parse(2, garbage, "status=ACTIVE").is_err(),
                "{garbage}"
            );
        }

        let mut last = vec!["a", "b"];
        assert_eq!(page.finish(&mut last, |r| (*r).to_owned()), "");
        assert_eq!(last.len(), 2);
    }
}
