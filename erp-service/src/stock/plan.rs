//! Reservation planning: pure, so it is unit-tested without a database.
//!
//! An order reserves all its lines or nothing. Each line takes its whole quantity from the
//! first warehouse (by code) that has it available; failing that, it is split over the
//! warehouses with the most available first, so it touches as few warehouses as possible.

use std::collections::BTreeMap;

/// What is available, by (sku, warehouse).
pub type Availability = BTreeMap<(String, String), i64>;

/// One order line's demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub line_number: i32,
    pub sku: String,
    pub quantity: i64,
}

/// Part of a line reserved in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub line_number: i32,
    pub sku: String,
    pub warehouse: String,
    pub quantity: i64,
}

/// The parts that reserve every need, or `None` when some need cannot be met in full (lines
/// of the same sku draw from the same stock).
pub fn plan(needs: &[Need], available: &Availability) -> Option<Vec<Part>> {
    let mut left = available.clone();
    let mut parts = Vec::new();
    for need in needs {
        if need.quantity <= 0 {
            return None;
        }
        let mut stock: Vec<(String, i64)> = left
            .range((need.sku.clone(), String::new())..)
            .take_while(|((sku, _), _)| *sku == need.sku)
            .filter(|(_, available)| **available > 0)
            .map(|((_, warehouse), available)| (warehouse.clone(), *available))
            .collect();
        if stock.iter().map(|(_, a)| *a).sum::<i64>() < need.quantity {
            return None;
        }
        let whole = stock
            .iter()
            .find(|(_, available)| *available >= need.quantity)
            .cloned();
        let takes: Vec<(String, i64)> = match whole {
            Some((warehouse, _)) => vec![(warehouse, need.quantity)],
            None => {
                // Most available first; ties by code, so the plan is deterministic.
                stock.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let mut missing = need.quantity;
                let mut takes = Vec::new();
                for (warehouse, available) in stock {
                    if missing == 0 {
                        break;
                    }
                    let take = available.min(missing);
                    missing -= take;
                    takes.push((warehouse, take));
                }
                takes
            }
        };
        for (warehouse, quantity) in takes {
            if let Some(available) = left.get_mut(&(need.sku.clone(), warehouse.clone())) {
                *available -= quantity;
            }
            parts.push(Part {
                line_number: need.line_number,
                sku: need.sku.clone(),
                warehouse,
                quantity,
            });
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(entries: &[(&str, &str, i64)]) -> Availability {
        entries
            .iter()
            .map(|(s, w, a)| (((*s).to_owned(), (*w).to_owned()), *a))
            .collect()
    }

    fn need(line_number: i32, sku: &str, quantity: i64) -> Need {
        Need {
            line_number,
            sku: sku.into(),
            quantity,
        }
    }

    fn part(line_number: i32, sku: &str, warehouse: &str, quantity: i64) -> Part {
        Part {
            line_number,
            sku: sku.into(),
            warehouse: warehouse.into(),
            quantity,
        }
    }

    #[test]
    fn a_line_takes_the_first_warehouse_that_has_it_all() {
        let available = stock(&[("A", "W1", 3), ("A", "W2", 10), ("B", "W1", 5)]);
        let parts = plan(&[need(1, "A", 5), need(2, "B", 5)], &available);
        assert_eq!(
            parts,
            Some(vec![part(1, "A", "W2", 5), part(2, "B", "W1", 5)])
        );
    }

    #[test]
    fn a_line_splits_over_the_fullest_warehouses_when_none_has_it_all() {
        let available = stock(&[("A", "W1", 3), ("A", "W2", 4), ("A", "W3", 2)]);
        let parts = plan(&[need(1, "A", 8)], &available);
        assert_eq!(
            parts,
            Some(vec![
                part(1, "A", "W2", 4),
                part(1, "A", "W1", 3),
                part(1, "A", "W3", 1)
            ])
        );
    }

    #[test]
    fn all_or_nothing_and_lines_of_one_sku_share_stock() {
        let available = stock(&[("A", "W1", 5), ("B", "W1", 1)]);
        assert_eq!(plan(&[need(1, "A", 5), need(2, "B", 2)], &available), None);
        assert_eq!(plan(&[need(1, "A", 3), need(2, "A", 3)], &available), None);
        assert_eq!(
            plan(&[need(1, "A", 3), need(2, "A", 2)], &available),
            Some(vec![part(1, "A", "W1", 3), part(2, "A", "W1", 2)])
        );
        assert_eq!(plan(&[need(1, "C", 1)], &available), None, "unknown sku");
        assert_eq!(plan(&[need(1, "A", 0)], &available), None, "no empty lines");
        assert_eq!(plan(&[], &available), Some(vec![]));
    }

    #[test]
    fn a_plan_never_takes_more_than_is_available() {
        let available = stock(&[("A", "W1", 7), ("A", "W2", 0), ("A", "W3", 6)]);
        for quantity in 1..=14 {
            let parts = plan(&[need(1, "A", quantity)], &available);
            if quantity > 13 {
                assert_eq!(parts, None);
                continue;
            }
            let parts = parts.unwrap_or_default();
            assert_eq!(parts.iter().map(|p| p.quantity).sum::<i64>(), quantity);
            for p in &parts {
                assert!(p.quantity > 0);
                assert!(p.quantity <= available[&(p.sku.clone(), p.warehouse.clone())]);
            }
        }
    }
}
