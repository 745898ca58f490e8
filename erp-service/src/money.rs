//! Money: integer minor units of an ISO 4217 currency.

/// Three upper-case ASCII letters, e.g. `EUR`. (The code is not checked against the ISO list:
/// new codes appear; the shape is what the database and the schemas enforce.)
pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert!(is_currency("EUR"));
        assert!(!is_currency("eur"));
        assert!(!is_currency("EURO"));
        assert!(!is_currency(""));
        assert!(!is_currency("E1R"));
    }
}
