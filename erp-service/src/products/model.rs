//! Products: what they hold and what makes one valid.

use chrono::{DateTime, Utc};
use tandem_common::validation::FieldViolation;
use tandem_proto::events::erp::ProductUpsertedV1;
use uuid::Uuid;

use crate::money::currency_problem;

/// The fields a caller sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFields {
    pub display_name: String,
    pub description: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub fields: ProductFields,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A partial update: `Some` fields replace the stored ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Price and currency change together.
    pub unit_price: Option<(i64, String)>,
    pub active: Option<bool>,
}

/// Is `sku` 1..=64 of `[A-Za-z0-9._-]`, starting with a letter or digit?
pub fn is_sku(sku: &str) -> bool {
    let mut bytes = sku.bytes();
    sku.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn sku_violation(field: &str, sku: &str) -> Option<FieldViolation> {
    (!is_sku(sku)).then(|| {
        FieldViolation::new(
            field,
            "1..=64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )
    })
}

impl ProductFields {
    /// Every problem, with field paths relative to the product (`display_name`).
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let name = self.display_name.trim().chars().count();
        if name == 0 || name > 200 {
            violations.push(FieldViolation::new("display_name", "1..=200 characters"));
        }
        if self.description.chars().count() > 2000 {
            violations.push(FieldViolation::new(
                "description",
                "at most 2000 characters",
            ));
        }
        violations.extend(crate::text::nul_violation(
            "display_name",
            &self.display_name,
        ));
        violations.extend(crate::text::nul_violation("description", &self.description));
        if self.unit_price_minor < 0 {
            violations.push(FieldViolation::new(
                "unit_price.amount_minor",
                "must not be negative",
            ));
        }
        if let Some(problem) = currency_problem(&self.currency) {
            violations.push(FieldViolation::new("unit_price.currency_code", problem));
        }
        violations
    }

    pub fn normalised(mut self) -> Self {
        self.display_name = self.display_name.trim().to_owned();
        self
    }

    pub fn patched(&self, patch: ProductPatch) -> Self {
        let (unit_price_minor, currency) = patch
            .unit_price
            .unwrap_or_else(|| (self.unit_price_minor, self.currency.clone()));
        Self {
            display_name: patch
                .display_name
                .unwrap_or_else(|| self.display_name.clone()),
            description: patch
                .description
                .unwrap_or_else(|| self.description.clone()),
            unit_price_minor,
            currency,
            active: patch.active.unwrap_or(self.active),
        }
        .normalised()
    }
}

impl Product {
    pub fn upserted_event(&self) -> ProductUpsertedV1 {
        ProductUpsertedV1 {
            product_id: self.id.to_string(),
            sku: self.sku.clone(),
            display_name: self.fields.display_name.clone(),
            description: self.fields.description.clone(),
            unit_price_minor: self.fields.unit_price_minor,
            currency: self.fields.currency.clone(),
            active: self.fields.active,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> ProductFields {
        ProductFields {
            display_name: " Widget ".into(),
            description: String::new(),
            unit_price_minor: 1999,
            currency: "EUR".into(),
            active: true,
        }
    }

    #[test]
    fn skus() {
        assert!(is_sku("W-1"));
        assert!(is_sku("a.b_c-9"));
        assert!(!is_sku(""));
        assert!(!is_sku("-W"));
        assert!(!is_sku("W 1"));
        assert!(!is_sku(&"W".repeat(65)));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert!(fields().violations().is_empty());
        let bad = ProductFields {
            display_name: "  ".into(),
            unit_price_minor: -1,
            currency: "euro".into(),
            ..fields()
        };
        let names: Vec<String> = bad.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(
            names,
            [
                "display_name",
                "unit_price.amount_minor",
                "unit_price.currency_code"
            ]
        );
    }

    #[test]
    fn patches_replace_only_what_they_name() {
        let base = fields().normalised();
        let patched = base.patched(ProductPatch {
            unit_price: Some((2500, "USD".into())),
            active: Some(false),
            ..ProductPatch::default()
        });
        assert_eq!(patched.display_name, "Widget");
        assert_eq!(patched.unit_price_minor, 2500);
        assert_eq!(patched.currency, "USD");
        assert!(!patched.active);
        assert_eq!(base.patched(ProductPatch::default()), base);
    }
}
