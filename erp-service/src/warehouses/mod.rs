//! Warehouses: where stock is kept. Identified by a short code the caller chooses.

pub(crate) mod store;

use chrono::{DateTime, Utc};
use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    paging::Page,
    validation::FieldViolation,
};

use crate::{
    PAGE_SIZES,
    error::{Error, Result},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warehouse {
    pub code: String,
    pub display_name: String,
    pub create_time: DateTime<Utc>,
}

/// Is `code` 1..=32 of `[A-Z0-9_-]`, starting with a letter or digit?
pub fn is_code(code: &str) -> bool {
    let mut bytes = code.bytes();
    code.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// The problem with `code` as a reference to a warehouse: missing, or a code no warehouse can
/// have (a bad request, not an unknown warehouse).
pub fn code_violation(field: &str, code: &str) -> Option<FieldViolation> {
    if code.is_empty() {
        Some(FieldViolation::new(field, "required"))
    } else if !is_code(code) {
        Some(FieldViolation::new(
            field,
            "1..=32 of A-Z 0-9 _ -, starting with a letter or digit",
        ))
    } else {
        None
    }
}

#[derive(Clone)]
pub struct Warehouses {
    pool: Db,
}

impl Warehouses {
    pub fn new(pool: Db) -> Self {
        Self { pool }
    }

    /// Creates a warehouse; with `once`, at most once per request id (a retry replays).
    #[tracing::instrument(skip(self, once))]
    pub async fn create(
        &self,
        code: &str,
        display_name: &str,
        once: Option<&Once<Warehouse>>,
    ) -> Result<Answer<Warehouse>> {
        let display_name = display_name.trim();
        let mut violations = Vec::new();
        if !is_code(code) {
            violations.push(FieldViolation::new(
                "warehouse.code",
                "1..=32 of A-Z 0-9 _ -, starting with a letter or digit",
            ));
        }
        let length = display_name.chars().count();
        if length == 0 || length > 200 {
            violations.push(FieldViolation::new(
                "warehouse.display_name",
                "1..=200 characters",
            ));
        }
        violations.extend(crate::text::nul_violation(
            "warehouse.display_name",
            display_name,
        ));
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut tx = self.pool.begin().await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        let warehouse = store::insert(&mut tx, code, display_name)
            .await
            .map_err(|error| {
                if tandem_common::db::is_unique_violation(&error) {
                    Error::AlreadyExists(format!("warehouse {code} already exists"))
                } else {
                    Error::Database(error)
                }
            })?;
        idempotency::remember(&mut tx, once, &warehouse).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(warehouse))
    }

    #[tracing::instrument(skip(self))]
    pub async fn list(&self, page_size: i32, page_token: &str) -> Result<(Vec<Warehouse>, String)> {
        let page: Page<String> = Page::parse(page_size, page_token, "warehouses", PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::list(&mut conn, page.after.as_deref(), page.fetch_limit()).await?;
        let next = page.finish(&mut rows, |w| w.code.clone())?;
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(is_code("AMS-1"));
        assert!(is_code("W_2"));
        assert!(!is_code("ams"));
        assert!(!is_code("-A"));
        assert!(!is_code(""));
        assert!(!is_code(&"A".repeat(33)));
    }
}
