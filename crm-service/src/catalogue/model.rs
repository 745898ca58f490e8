//! The catalogue mirror: products and available stock as the ERP reports them (pure, no I/O).

use chrono::{DateTime, Utc};
use tandem_common::validation::FieldViolation;

use crate::validation::{currency_problem, required_text, sku_problem};

pub const NAME_MAX: usize = 200;
pub const STOCK_BATCH_MAX: usize = 1_000;
pub const AVAILABILITY_SKUS_MAX: usize = 500;

/// A product as the ERP owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductData {
    pub sku: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub active: bool,
}

/// One row of the mirror. `product_version` 0 means only a stock level arrived so far: the
/// product has no name or price yet and cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub data: ProductData,
    pub product_version: i64,
    pub available: i64,
    pub stock_version: i64,
    pub update_time: DateTime<Utc>,
}

impl Product {
    /// Can an order line quote this product?
    pub fn orderable(&self) -> bool {
        self.product_version > 0 && self.data.active
    }
}

/// The available quantity of one sku at one ERP version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub sku: String,
    pub available: i64,
    pub source_version: i64,
}

impl ProductData {
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let mut check = |field: &str, problem: Option<String>| {
            if let Some(description) = problem {
                violations.push(FieldViolation::new(field, description));
            }
        };
        check("sku", sku_problem(&self.sku));
        check("name", required_text(&self.name, NAME_MAX));
        check(
            "unit_price.amount_minor",
            (self.unit_price_minor < 0).then(|| "must not be negative".to_owned()),
        );
        check("unit_price.currency_code", currency_problem(&self.currency));
        violations
    }
}

/// Every rule a batch of stock levels breaks, with `levels[i].field` paths.
pub fn stock_violations(levels: &[StockLevel]) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if levels.is_empty() {
        violations.push(FieldViolation::new("levels", "at least one level"));
    }
    if levels.len() > STOCK_BATCH_MAX {
        violations.push(FieldViolation::new(
            "levels",
            format!("at most {STOCK_BATCH_MAX} levels per call"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, level) in levels.iter().enumerate() {
        if let Some(problem) = sku_problem(&level.sku) {
            violations.push(FieldViolation::new(format!("levels[{i}].sku"), problem));
        } else if !seen.insert(level.sku.as_str()) {
            violations.push(FieldViolation::new(
                format!("levels[{i}].sku"),
                "appears more than once in this batch",
            ));
        }
        if level.available < 0 {
            violations.push(FieldViolation::new(
                format!("levels[{i}].available"),
                "must not be negative",
            ));
        }
        if level.source_version <= 0 {
            violations.push(FieldViolation::new(
                format!("levels[{i}].source_version"),
                "must be positive",
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(sku: &str, available: i64, version: i64) -> StockLevel {
        StockLevel {
            sku: sku.into(),
            available,
            source_version: version,
        }
    }

    #[test]
    fn product_data_rules() {
        let good = ProductData {
            sku: "W-1".into(),
            name: "Widget".into(),
            unit_price_minor: 1999,
            currency: "EUR".into(),
            active: true,
        };
        assert!(good.violations().is_empty());
        let bad = ProductData {
            sku: String::new(),
            name: String::new(),
            unit_price_minor: -5,
            currency: "EURO".into(),
            active: false,
        };
        let fields: Vec<String> = bad.violations().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "sku",
                "name",
                "unit_price.amount_minor",
                "unit_price.currency_code"
            ]
        );
    }

    #[test]
    fn stock_batches_refuse_duplicates_negatives_and_empty() {
        assert!(stock_violations(&[level("A", 0, 1), level("B", 5, 9)]).is_empty());
        let fields: Vec<String> =
            stock_violations(&[level("A", -1, 1), level("A", 1, 0), level("b c", 1, 1)])
                .into_iter()
                .map(|v| v.field)
                .collect();
        assert_eq!(
            fields,
            [
                "levels[0].available",
                "levels[1].sku",
                "levels[1].source_version",
                "levels[2].sku"
            ]
        );
        assert_eq!(stock_violations(&[])[0].field, "levels");
    }

    #[test]
    fn only_known_active_products_are_orderable() {
        let mut product = Product {
            data: ProductData {
                sku: "W-1".into(),
                name: "Widget".into(),
                unit_price_minor: 1,
                currency: "EUR".into(),
                active: true,
            },
            product_version: 1,
            available: 0,
            stock_version: 0,
            update_time: Utc::now(),
        };
        assert!(
            product.orderable(),
            "out of stock is still orderable (backorder)"
        );
        product.data.active = false;
        assert!(!product.orderable());
        product.data.active = true;
        product.product_version = 0;
        assert!(!product.orderable());
    }
}
