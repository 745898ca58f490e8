//! Customer profiles and their validation rules (pure, no I/O).

use chrono::{DateTime, Utc};
use tandem_common::grpc::FieldViolation;
use tandem_proto::events::{CustomerStatus, crm::CustomerUpsertedV1};
use uuid::Uuid;

pub const DISPLAY_NAME_MAX: usize = 200;
pub const EMAIL_MAX: usize = 254;
pub const PHONE_MAX: usize = 32;
pub const TAX_ID_MAX: usize = 32;
pub const EXTERNAL_REF_MAX: usize = 100;

/// The profile fields the CRM owns. Optional text is `None`, never an empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub tax_id: Option<String>,
    pub status: CustomerStatus,
    pub external_ref: Option<String>,
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: Uuid,
    pub profile: Profile,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// Changes to a profile: `Some` replaces the field (for optional fields, `Some(None)` clears).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<Option<String>>,
    pub tax_id: Option<Option<String>>,
    pub status: Option<CustomerStatus>,
    pub external_ref: Option<Option<String>>,
}

impl Profile {
    /// Trims every field and turns blank optional fields into `None`.
    pub fn normalised(self) -> Self {
        Self {
            display_name: self.display_name.trim().to_owned(),
            email: self.email.trim().to_owned(),
            phone: blank_to_none(self.phone),
            tax_id: blank_to_none(self.tax_id),
            status: self.status,
            external_ref: blank_to_none(self.external_ref),
        }
    }

    /// Every rule the profile breaks, with the field it concerns.
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let mut check = |field: &str, problem: Option<String>| {
            if let Some(description) = problem {
                violations.push(FieldViolation::new(field, description));
            }
        };
        check(
            "display_name",
            required_text(&self.display_name, DISPLAY_NAME_MAX),
        );
        check("email", email_problem(&self.email));
        check("phone", self.phone.as_deref().and_then(phone_problem));
        check(
            "tax_id",
            self.tax_id
                .as_deref()
                .and_then(|t| token_problem(t, TAX_ID_MAX, " -./")),
        );
        check(
            "external_ref",
            self.external_ref
                .as_deref()
                .and_then(|r| token_problem(r, EXTERNAL_REF_MAX, "-_.:/")),
        );
        violations
    }

    /// This profile with `patch` applied.
    pub fn patched(&self, patch: ProfilePatch) -> Self {
        Self {
            display_name: patch
                .display_name
                .unwrap_or_else(|| self.display_name.clone()),
            email: patch.email.unwrap_or_else(|| self.email.clone()),
            phone: patch.phone.unwrap_or_else(|| self.phone.clone()),
            tax_id: patch.tax_id.unwrap_or_else(|| self.tax_id.clone()),
            status: patch.status.unwrap_or(self.status),
            external_ref: patch
                .external_ref
                .unwrap_or_else(|| self.external_ref.clone()),
        }
        .normalised()
    }
}

impl Customer {
    /// The `crm.customer.upserted` v1 payload: every owned field.
    pub fn upserted_event(&self) -> CustomerUpsertedV1 {
        CustomerUpsertedV1 {
            customer_id: self.id.to_string(),
            display_name: self.profile.display_name.clone(),
            email: self.profile.email.clone(),
            phone: self.profile.phone.clone(),
            tax_id: self.profile.tax_id.clone(),
            status: self.profile.status,
            external_ref: self.profile.external_ref.clone(),
        }
    }
}

fn blank_to_none(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn required_text(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        Some("required".to_owned())
    } else if value.chars().count() > max {
        Some(format!("at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

fn email_problem(email: &str) -> Option<String> {
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

fn phone_problem(phone: &str) -> Option<String> {
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

fn token_problem(value: &str, max: usize, extra: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Profile {
        Profile {
            display_name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            phone: Some("+44 20 7946 0958".into()),
            tax_id: Some("GB123456789".into()),
            status: CustomerStatus::Active,
            external_ref: Some("shop:42".into()),
        }
    }

    fn fields(profile: &Profile) -> Vec<String> {
        profile.violations().into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_complete_profile_is_valid() {
        assert!(valid().violations().is_empty());
    }

    #[test]
    fn missing_name_and_bad_email_are_both_reported() {
        let profile = Profile {
            display_name: "   ".into(),
            email: "not-an-email".into(),
            ..valid()
        }
        .normalised();
        assert_eq!(fields(&profile), ["display_name", "email"]);
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
    fn lengths_are_enforced() {
        let profile = Profile {
            display_name: "x".repeat(DISPLAY_NAME_MAX + 1),
            phone: Some("1".repeat(PHONE_MAX + 1)),
            ..valid()
        };
        assert_eq!(fields(&profile), ["display_name", "phone"]);
    }

    #[test]
    fn blank_optionals_become_none_and_patches_apply() {
        let profile = Profile {
            phone: Some("  ".into()),
            ..valid()
        }
        .normalised();
        assert_eq!(profile.phone, None);
        let patched = profile.patched(ProfilePatch {
            email: Some(" new@example.com ".into()),
            tax_id: Some(None),
            ..ProfilePatch::default()
        });
        assert_eq!(patched.email, "new@example.com");
        assert_eq!(patched.tax_id, None);
        assert_eq!(patched.display_name, "Ada Lovelace");
    }
}
