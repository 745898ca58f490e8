//! Text the ERP stores or filters by. PostgreSQL cannot hold a NUL character (neither in text
//! nor in JSONB), so one is a bad request naming its field, never a database error.

use tandem_common::validation::FieldViolation;

use crate::error::{Error, Result};

/// The violation of `field` when `value` contains a NUL character.
pub fn nul_violation(field: impl Into<String>, value: &str) -> Option<FieldViolation> {
    value
        .contains('\0')
        .then(|| FieldViolation::new(field, "must not contain NUL characters"))
}

/// Every field of `fields` (path, value) that contains a NUL character.
pub fn nul_violations(fields: &[(&str, &str)]) -> Vec<FieldViolation> {
    fields
        .iter()
        .filter_map(|(field, value)| nul_violation(*field, value))
        .collect()
}

/// `Ok` unless a field of `fields` contains a NUL character.
pub fn check_no_nul(fields: &[(&str, &str)]) -> Result<()> {
    let violations = nul_violations(fields);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_named_by_field() {
        assert!(check_no_nul(&[("a", "plain"), ("b", "")]).is_ok());
        let fields: Vec<String> = nul_violations(&[("a", "x\0y"), ("b", "ok"), ("c", "\0")])
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["a", "c"]);
    }
}
