//! Field rules shared by the CRM's domains (pure, no I/O). Each check returns the problem as
//! text, or `None` when the value is fine; callers attach the field path.

/// Officially assigned ISO 3166-1 alpha-2 country codes.
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

pub const SKU_MAX: usize = 64;

/// Blank optional text becomes `None`; the rest is trimmed.
pub fn blank_to_none(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A required single-line text of at most `max` characters.
pub fn required_text(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        Some("required".to_owned())
    } else {
        optional_text(value, max)
    }
}

/// An optional single-line text of at most `max` characters (checked when present).
pub fn optional_text(value: &str, max: usize) -> Option<String> {
    if value.chars().count() > max {
        Some(format!("at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

pub const EMAIL_MAX: usize = 254;

pub fn email_problem(email: &str) -> Option<String> {
    if email.is_empty() {
        return Some("required".to_owned());
    }
    if email.len() > EMAIL_MAX {
        return Some(format!("at most {EMAIL_MAX} characters"));
    }
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != ',')
    });
    (!well_formed).then(|| "not a valid e-mail address (expected name@domain.tld)".to_owned())
}

pub const PHONE_MAX: usize = 32;

pub fn phone_problem(phone: &str) -> Option<String> {
    if phone.len() > PHONE_MAX {
        return Some(format!("at most {PHONE_MAX} characters"));
    }
    let allowed = phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    if !allowed || digits < 3 {
        return Some("digits, spaces and +-(). only, at least 3 digits".to_owned());
    }
    None
}

/// ASCII letters, digits and the characters in `extra`, at most `max` characters.
pub fn token_problem(value: &str, max: usize, extra: &str) -> Option<String> {
    if value.chars().count() > max {
        return Some(format!("at most {max} characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    {
        return Some(format!("letters, digits and {extra:?} only"));
    }
    None
}

pub fn sku_problem(sku: &str) -> Option<String> {
    if sku.is_empty() {
        return Some("required".to_owned());
    }
    token_problem(sku, SKU_MAX, "-_.")
}

pub fn country_code_problem(code: &str) -> Option<String> {
    if code.is_empty() {
        Some("required".to_owned())
    } else if COUNTRY_CODES.binary_search(&code).is_err() {
        Some("not an ISO 3166-1 alpha-2 country code (e.g. DE, US)".to_owned())
    } else {
        None
    }
}

/// The currency rule both services share (`tandem_proto::money`): an ISO 4217 code with minor
/// units, not withdrawn.
pub fn currency_problem(code: &str) -> Option<String> {
    tandem_proto::money::currency_problem(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists_are_sorted_so_binary_search_works() {
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(COUNTRY_CODES.len(), 249);
    }

    #[test]
    fn country_and_currency_codes() {
        for good in ["DE", "US", "GB", "ZW"] {
            assert_eq!(country_code_problem(good), None, "{good}");
        }
        for bad in ["", "de", "UK", "DEU", "XX"] {
            assert!(country_code_problem(bad).is_some(), "{bad} accepted");
        }
        for good in ["EUR", "USD", "JPY", "CHF"] {
            assert_eq!(currency_problem(good), None, "{good}");
        }
        for bad in ["", "eur", "EU", "EURO", "XXX", "XTS", "HRK"] {
            assert!(currency_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn email_shapes() {
        for bad in [
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "a@.b.com",
            "a@b.com.",
        ] {
            assert!(email_problem(bad).is_some(), "{bad} accepted");
        }
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(email_problem(good).is_none(), "{good} rejected");
        }
    }

    #[test]
    fn skus_and_texts() {
        assert_eq!(sku_problem("WIDGET-1.a_b"), None);
        assert!(sku_problem("").is_some());
        assert!(sku_problem("has space").is_some());
        assert!(sku_problem(&"x".repeat(SKU_MAX + 1)).is_some());
        assert!(required_text("", 5).is_some());
        assert!(required_text("abcdef", 5).is_some());
        assert!(optional_text("a\nb", 5).is_some());
        assert_eq!(optional_text("", 5), None);
    }
}
