//! Customer profiles, their contacts and addresses, and their validation rules (pure, no I/O).

use chrono::{DateTime, Utc};
use tandem_common::validation::FieldViolation;
use tandem_proto::events::{
    CustomerStatus,
    crm::{AddressKind, AddressV1, ContactV1, CustomerUpsertedV1},
};
use uuid::Uuid;

use crate::{
    finance::Finance,
    validation::{
        blank_to_none, country_code_problem, email_problem, optional_text, phone_problem,
        required_text, token_problem,
    },
};

pub const DISPLAY_NAME_MAX: usize = 200;
pub const EMAIL_MAX: usize = crate::validation::EMAIL_MAX;
pub const PHONE_MAX: usize = crate::validation::PHONE_MAX;
pub const TAX_ID_MAX: usize = 32;
pub const EXTERNAL_REF_MAX: usize = 100;
pub const CONTACTS_MAX: usize = 50;
pub const CONTACT_NAME_MAX: usize = 200;
pub const ROLE_MAX: usize = 100;
pub const ADDRESSES_MAX: usize = 20;
pub const ADDRESS_LINE_MAX: usize = 200;
pub const CITY_MAX: usize = 100;
pub const POSTAL_CODE_MAX: usize = 20;
pub const REGION_MAX: usize = 100;

/// The profile fields the CRM owns. Optional text is `None`, never an empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub tax_id: Option<String>,
    pub status: CustomerStatus,
    pub external_ref: Option<String>,
    pub contacts: Vec<Contact>,
    pub addresses: Vec<Address>,
}

/// A person to talk to at the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
}

/// A postal address of the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub kind: AddressKind,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: Option<String>,
    pub region: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country_code: String,
}

/// A stored customer, with the ERP's finance view when one was mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: Uuid,
    pub profile: Profile,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub finance: Option<Finance>,
}

/// Changes to a profile: `Some` replaces the field (for optional fields, `Some(None)` clears;
/// lists are replaced whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<Option<String>>,
    pub tax_id: Option<Option<String>>,
    pub status: Option<CustomerStatus>,
    pub external_ref: Option<Option<String>>,
    pub contacts: Option<Vec<Contact>>,
    pub addresses: Option<Vec<Address>>,
}

/// Filters of ListCustomers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    pub display_name_contains: Option<String>,
    pub email: Option<String>,
    pub status: Option<CustomerStatus>,
    /// Exact match.
    pub external_ref: Option<String>,
}

impl CustomerFilter {
    /// A stable description, which binds page tokens to the filters.
    pub fn fingerprint(&self) -> String {
        format!(
            "customers|{:?}|{:?}|{:?}|{:?}",
            self.display_name_contains,
            self.email.as_ref().map(|e| e.to_lowercase()),
            self.status.map(CustomerStatus::as_str),
            self.external_ref
        )
    }
}

/// A customer's state as an integrator reports it (`CrmSync.UpsertCustomerByExternalRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationUpsert {
    /// The full profile; `external_ref` is the key. Its `status` is used only when `status`
    /// is `None` and the customer is new.
    pub profile: Profile,
    /// `None`: ACTIVE for a new customer, unchanged for an existing one.
    pub status: Option<CustomerStatus>,
    /// The integrator, e.g. `webshop`.
    pub source: Option<String>,
    /// The integrator's version of this customer; gates the upsert.
    pub source_version: i64,
}

impl IntegrationUpsert {
    /// Trims the profile (see [`Profile::normalised`]).
    pub fn normalised(self) -> Self {
        Self {
            profile: self.profile.normalised(),
            source: blank_to_none(self.source),
            ..self
        }
    }

    /// Every rule the upsert breaks: the profile's (paths relative to the customer, e.g.
    /// `email`) plus a required `external_ref`. The source version is the caller's to check.
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = self.profile.violations();
        if self.profile.external_ref.is_none() {
            violations.push(FieldViolation::new(
                "external_ref",
                "required: the integrator's key of the customer",
            ));
        }
        violations
    }
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
            contacts: self.contacts.into_iter().map(Contact::normalised).collect(),
            addresses: self
                .addresses
                .into_iter()
                .map(Address::normalised)
                .collect(),
        }
    }

    /// Every rule the profile breaks, with the field it concerns.
    pub fn violations(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let mut check = |field: String, problem: Option<String>| {
            if let Some(description) = problem {
                violations.push(FieldViolation::new(field, description));
            }
        };
        check(
            "display_name".into(),
            required_text(&self.display_name, DISPLAY_NAME_MAX),
        );
        check("email".into(), email_problem(&self.email));
        check(
            "phone".into(),
            self.phone.as_deref().and_then(phone_problem),
        );
        check(
            "tax_id".into(),
            self.tax_id
                .as_deref()
                .and_then(|t| token_problem(t, TAX_ID_MAX, " -./")),
        );
        check(
            "external_ref".into(),
            self.external_ref
                .as_deref()
                .and_then(|r| token_problem(r, EXTERNAL_REF_MAX, "-_.:/")),
        );
        if self.contacts.len() > CONTACTS_MAX {
            check(
                "contacts".into(),
                Some(format!("at most {CONTACTS_MAX} contacts")),
            );
        }
        for (i, contact) in self.contacts.iter().enumerate() {
            let at = |field: &str| format!("contacts[{i}].{field}");
            check(at("name"), required_text(&contact.name, CONTACT_NAME_MAX));
            check(
                at("email"),
                contact.email.as_deref().and_then(email_problem),
            );
            check(
                at("phone"),
                contact.phone.as_deref().and_then(phone_problem),
            );
            check(
                at("role"),
                contact
                    .role
                    .as_deref()
                    .and_then(|r| optional_text(r, ROLE_MAX)),
            );
        }
        if self.addresses.len() > ADDRESSES_MAX {
            check(
                "addresses".into(),
                Some(format!("at most {ADDRESSES_MAX} addresses")),
            );
        }
        let mut billing_seen = false;
        for (i, address) in self.addresses.iter().enumerate() {
            let at = |field: &str| format!("addresses[{i}].{field}");
            if address.kind == AddressKind::Billing {
                if billing_seen {
                    check(
                        at("kind"),
                        Some("at most one BILLING address per customer".into()),
                    );
                }
                billing_seen = true;
            }
            check(at("line1"), required_text(&address.line1, ADDRESS_LINE_MAX));
            check(
                at("line2"),
                address
                    .line2
                    .as_deref()
                    .and_then(|l| optional_text(l, ADDRESS_LINE_MAX)),
            );
            check(at("city"), required_text(&address.city, CITY_MAX));
            check(
                at("postal_code"),
                address
                    .postal_code
                    .as_deref()
                    .and_then(|p| token_problem(p, POSTAL_CODE_MAX, " -")),
            );
            check(
                at("region"),
                address
                    .region
                    .as_deref()
                    .and_then(|r| optional_text(r, REGION_MAX)),
            );
            check(
                at("country_code"),
                country_code_problem(&address.country_code),
            );
        }
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
            contacts: patch.contacts.unwrap_or_else(|| self.contacts.clone()),
            addresses: patch.addresses.unwrap_or_else(|| self.addresses.clone()),
        }
        .normalised()
    }
}

impl Contact {
    pub fn normalised(self) -> Self {
        Self {
            name: self.name.trim().to_owned(),
            email: blank_to_none(self.email),
            phone: blank_to_none(self.phone),
            role: blank_to_none(self.role),
        }
    }
}

impl Address {
    pub fn normalised(self) -> Self {
        Self {
            kind: self.kind,
            line1: self.line1.trim().to_owned(),
            line2: blank_to_none(self.line2),
            city: self.city.trim().to_owned(),
            postal_code: blank_to_none(self.postal_code),
            region: blank_to_none(self.region),
            country_code: self.country_code.trim().to_ascii_uppercase(),
        }
    }
}

impl Customer {
    /// The `crm.customer.upserted` (and `crm.customer.archived`) v1 payload: every owned field.
    pub fn upserted_event(&self) -> CustomerUpsertedV1 {
        self.profile.upserted_event(self.id)
    }
}

impl Profile {
    /// The `crm.customer.upserted` (and `crm.customer.archived`) v1 payload of customer `id`
    /// with this profile.
    pub fn upserted_event(&self, id: Uuid) -> CustomerUpsertedV1 {
        let profile = self;
        CustomerUpsertedV1 {
            customer_id: id.to_string(),
            display_name: profile.display_name.clone(),
            email: profile.email.clone(),
            phone: profile.phone.clone(),
            tax_id: profile.tax_id.clone(),
            status: profile.status,
            external_ref: profile.external_ref.clone(),
            contacts: profile
                .contacts
                .iter()
                .map(|c| ContactV1 {
                    name: c.name.clone(),
                    email: c.email.clone(),
                    phone: c.phone.clone(),
                    role: c.role.clone(),
                })
                .collect(),
            addresses: profile
                .addresses
                .iter()
                .map(|a| AddressV1 {
                    kind: a.kind,
                    line1: a.line1.clone(),
                    line2: a.line2.clone(),
                    city: a.city.clone(),
                    postal_code: a.postal_code.clone(),
                    region: a.region.clone(),
                    country_code: a.country_code.clone(),
                })
                .collect(),
        }
    }
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
            contacts: vec![Contact {
                name: "Charles Babbage".into(),
                email: Some("charles@example.com".into()),
                phone: None,
                role: Some("engineering".into()),
            }],
            addresses: vec![
                address(AddressKind::Billing),
                address(AddressKind::Shipping),
            ],
        }
    }

    fn address(kind: AddressKind) -> Address {
        Address {
            kind,
            line1: "12 St James's Square".into(),
            line2: None,
            city: "London".into(),
            postal_code: Some("SW1Y 4LB".into()),
            region: None,
            country_code: "GB".into(),
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
    fn lengths_are_enforced() {
        let profile = Profile {
            display_name: "x".repeat(DISPLAY_NAME_MAX + 1),
            phone: Some("1".repeat(PHONE_MAX + 1)),
            ..valid()
        };
        assert_eq!(fields(&profile), ["display_name", "phone"]);
        let many = Profile {
            contacts: vec![valid().contacts[0].clone(); CONTACTS_MAX + 1],
            ..valid()
        };
        assert_eq!(fields(&many), ["contacts"]);
    }

    #[test]
    fn contacts_and_addresses_name_the_faulty_entry() {
        let mut profile = valid();
        profile.contacts.push(Contact {
            name: String::new(),
            email: Some("nope".into()),
            phone: None,
            role: None,
        });
        profile.addresses.push(Address {
            country_code: "XX".into(),
            city: String::new(),
            ..address(AddressKind::Billing)
        });
        assert_eq!(
            fields(&profile),
            [
                "contacts[1].name",
                "contacts[1].email",
                "addresses[2].kind",
                "addresses[2].city",
                "addresses[2].country_code",
            ]
        );
    }

    #[test]
    fn country_codes_are_upper_cased_before_checking() {
        let profile = Profile {
            addresses: vec![Address {
                country_code: " de ".into(),
                ..address(AddressKind::Shipping)
            }],
            ..valid()
        }
        .normalised();
        assert_eq!(profile.addresses[0].country_code, "DE");
        assert!(profile.violations().is_empty());
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
            contacts: Some(Vec::new()),
            ..ProfilePatch::default()
        });
        assert_eq!(patched.email, "new@example.com");
        assert_eq!(patched.tax_id, None);
        assert!(patched.contacts.is_empty());
        assert_eq!(patched.addresses.len(), 2, "unpatched list kept");
        assert_eq!(patched.display_name, "Ada Lovelace");
    }

    #[test]
    fn the_event_carries_contacts_and_addresses() {
        let customer = Customer {
            id: Uuid::now_v7(),
            profile: valid(),
            version: 3,
            create_time: Utc::now(),
            update_time: Utc::now(),
            finance: None,
        };
        let event = customer.upserted_event();
        assert_eq!(event.contacts[0].name, "Charles Babbage");
        assert_eq!(event.addresses[1].kind, AddressKind::Shipping);
        assert_eq!(event.addresses[0].country_code, "GB");
    }
}
