//! AIP-158 pagination: page sizes and opaque page tokens.
//!
//! A token is the hex-encoded JSON of the last key of the previous page; lists are ordered by
//! that key, so the next page is "key greater than the token's", stable under inserts.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// The page size to use: 0 means the default, larger than the maximum is coerced down.
pub fn page_size(requested: i32) -> Result<i64> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

pub fn encode<K: Serialize>(key: &K) -> Result<String> {
    let json = serde_json::to_vec(key)?;
    Ok(json.iter().map(|b| format!("{b:02x}")).collect())
}

/// The key in `token`, or `None` for the first page.
pub fn decode<K: DeserializeOwned>(token: &str) -> Result<Option<K>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "not a token this list returned");
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| invalid())
}

/// Splits `rows` (fetched with `limit = size + 1`) into the page and the next token.
pub fn page<T, K: Serialize>(
    mut rows: Vec<T>,
    size: i64,
    key: impl Fn(&T) -> K,
) -> Result<(Vec<T>, String)> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if rows.len() <= size {
        return Ok((rows, String::new()));
    }
    rows.truncate(size);
    let token = match rows.last() {
        Some(last) => encode(&key(last))?,
        None => String::new(),
    };
    Ok((rows, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = encode(&("SKU-1", "AMS")).unwrap_or_default();
        let back: Option<(String, String)> = decode(&token).unwrap_or_default();
        assert_eq!(back, Some(("SKU-1".to_owned(), "AMS".to_owned())));
        assert_eq!(decode::<String>("").ok(), Some(None));
        assert!(decode::<String>("zz").is_err());
        assert!(decode::<String>("abc").is_err());
        assert!(decode::<(String, String)>(&encode(&42).unwrap_or_default()).is_err());
    }

    #[test]
    fn page_sizes_default_and_coerce() {
        assert_eq!(page_size(0).ok(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(7).ok(), Some(7));
        assert_eq!(page_size(10_000).ok(), Some(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn a_full_page_has_a_next_token() {
        let (rows, token) = page(vec![1, 2, 3], 2, |n| *n).unwrap_or_default();
        assert_eq!(rows, [1, 2]);
        assert_eq!(decode::<i32>(&token).ok(), Some(Some(2)));
        let (rows, token) = page(vec![1, 2], 2, |n| *n).unwrap_or_default();
        assert_eq!(rows, [1, 2]);
        assert!(token.is_empty());
    }
}
