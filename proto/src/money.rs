//! The one currency rule of both services: a money amount is an integer count of the minor
//! units of an ISO 4217 currency (cents of EUR, yen of JPY, fils of BHD). The codes and their
//! minor units come from the `iso_currency` crate's table, kept up to date with ISO 4217's
//! amendments (e.g. BGN withdrawn for EUR in 2026, XCG replacing ANG).
//!
//! Accepted: every current code that has minor units, funds included (CLF, UYW, ...).
//! Refused: unknown codes, lower case, codes withdrawn from ISO 4217 (HRK, SLL, ...: the
//! message names the successor) and the special codes without minor units or legal tender
//! (precious metals, drawing rights, bond units, XTS for testing, XXX for "no currency").

use iso_currency::Currency;

/// An accepted currency, from its code.
fn currency(code: &str) -> Result<Currency, String> {
    if code.is_empty() {
        return Err("required".to_owned());
    }
    let currency = Currency::from_code(code)
        .ok_or_else(|| "not an ISO 4217 currency code (e.g. EUR, USD)".to_owned())?;
    if let Some(successor) = currency.is_superseded() {
        return Err(format!(
            "{code} was withdrawn from ISO 4217; use {}",
            successor.code()
        ));
    }
    if currency.is_special() || currency.exponent().is_none() {
        return Err(format!(
            "{code} is not a currency for prices (a precious metal, a drawing right, a test \
             or a \"no currency\" code)"
        ));
    }
    Ok(currency)
}

/// What is wrong with `code` as the currency of an amount, if anything (the text of a
/// `FieldViolation`).
pub fn currency_problem(code: &str) -> Option<String> {
    currency(code).err()
}

/// Whether `code` is an accepted currency.
pub fn is_currency(code: &str) -> bool {
    currency(code).is_ok()
}

/// Digits after the decimal point of `code`'s amounts (2 for EUR, 0 for JPY, 3 for BHD): an
/// amount of `n` minor units is `n / 10^minor_units` of the currency. `None` for a code that
/// is not accepted.
pub fn minor_units(code: &str) -> Option<u16> {
    currency(code).ok()?.exponent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_codes_with_minor_units_are_accepted() {
        for (code, digits) in [
            ("EUR", 2),
            ("USD", 2),
            ("CHF", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("BHD", 3),
            ("KWD", 3),
            ("CLF", 4),
            ("XCG", 2),
            ("ZWG", 2),
        ] {
            assert_eq!(currency_problem(code), None, "{code}");
            assert_eq!(minor_units(code), Some(digits), "{code}");
        }
    }

    #[test]
    fn unknown_withdrawn_and_special_codes_are_refused_with_a_reason() {
        for bad in ["", "eur", "EU", "EURO", "E1R", "ABC", "ANG"] {
            assert!(currency_problem(bad).is_some(), "{bad:?} accepted");
            assert_eq!(minor_units(bad), None, "{bad:?}");
        }
        assert_eq!(
            currency_problem("HRK").as_deref(),
            Some("HRK was withdrawn from ISO 4217; use EUR")
        );
        assert!(currency_problem("BGN").is_some_and(|p| p.ends_with("use EUR")));
        for special in ["XXX", "XTS", "XAU", "XDR"] {
            assert!(
                currency_problem(special).is_some_and(|p| p.contains("not a currency for prices")),
                "{special}"
            );
        }
    }
}
