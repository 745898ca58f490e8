//! Who a caller is ([`Caller`], [`Role`]) and who may call what ([`Access`], [`AccessTable`]).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A role granted by a token's `roles` claim.
///
/// Roles are not ranked: [`Role::Admin`] may call only what an access table grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `sales`
    Sales,
    /// `warehouse`
    Warehouse,
    /// `finance`
    Finance,
    /// `admin`
    Admin,
    /// `read-only`
    ReadOnly,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 5] = [
        Role::Sales,
        Role::Warehouse,
        Role::Finance,
        Role::Admin,
        Role::ReadOnly,
    ];

    /// The string form used in tokens and settings, e.g. `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sales => "sales",
            Role::Warehouse => "warehouse",
            Role::Finance => "finance",
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role`]'s string forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected one of sales, warehouse, finance, admin, read-only)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The authenticated caller of a request: the token's `sub` and the roles it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub` claim (never empty).
    pub subject: String,
    /// The known roles of the token's `roles` claim, without duplicates; unknown names are
    /// dropped.
    pub roles: Vec<Role>,
}

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the caller holds at least one of `allowed`.
    pub fn has_any_role(&self, allowed: &[Role]) -> bool {
        allowed.iter().any(|role| self.has_role(*role))
    }

    /// The roles as text, e.g. `sales, finance`, or `no roles`.
    pub fn roles_text(&self) -> String {
        if self.roles.is_empty() {
            return "no roles".to_owned();
        }
        self.roles
            .iter()
            .map(|role| role.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Who may call one gRPC method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed, e.g. health checks and server reflection.
    Anyone,
    /// A valid token holding at least one of these roles. An empty list allows nobody.
    Roles(&'static [Role]),
}

/// Each service's list of `(full gRPC path, access)`, e.g.
/// `("/tandem.crm.v1.CrmService/CreateCustomer", Access::Roles(&[Role::Sales]))`.
///
/// A path may also name every method of a service as `/<package>.<Service>/*`; an exact entry
/// wins over such a wildcard. A method in neither is refused (deny by default).
pub type AccessTable = &'static [(&'static str, Access)];

/// The entry of `table` governing the method at `path`, if any.
pub fn lookup(table: AccessTable, path: &str) -> Option<Access> {
    if let Some((_, access)) = table.iter().find(|(entry, _)| *entry == path) {
        return Some(*access);
    }
    let (service, method) = path.rsplit_once('/')?;
    if service.is_empty() || method.is_empty() {
        return None;
    }
    table
        .iter()
        .find(|(entry, _)| {
            entry
                .strip_suffix("/*")
                .is_some_and(|wildcard| wildcard == service)
        })
        .map(|(_, access)| *access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_string_forms() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
        assert_eq!("read-only".parse::<Role>(), Ok(Role::ReadOnly));
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn lookup_prefers_exact_entries_and_denies_the_rest() {
        const SALES: &[Role] = &[Role::Sales];
        const TABLE: AccessTable = &[
            ("/grpc.health.v1.Health/*", Access::Anyone),
            (
                "/tandem.crm.v1.CrmService/*",
                Access::Roles(&[Role::ReadOnly]),
            ),
            (
                "/tandem.crm.v1.CrmService/CreateCustomer",
                Access::Roles(SALES),
            ),
        ];
        assert_eq!(
            lookup(TABLE, "/grpc.health.v1.Health/Check"),
            Some(Access::Anyone)
        );
        assert_eq!(
            lookup(TABLE, "/tandem.crm.v1.CrmService/CreateCustomer"),
            Some(Access::Roles(SALES))
        );
        assert_eq!(
            lookup(TABLE, "/tandem.crm.v1.CrmService/GetCustomer"),
            Some(Access::Roles(&[Role::ReadOnly]))
        );
        assert_eq!(lookup(TABLE, "/tandem.erp.v1.ErpService/AcceptOrder"), None);
        assert_eq!(lookup(TABLE, "/grpc.health.v1.Health/"), None);
        assert_eq!(lookup(TABLE, "/grpc.health.v1.Health"), None);
        assert_eq!(lookup(TABLE, ""), None);
        assert_eq!(lookup(TABLE, "/*"), None);
    }

    #[test]
    fn admin_is_not_implicitly_allowed() {
        let admin = Caller {
            subject: "root".into(),
            roles: vec![Role::Admin],
        };
        assert!(!admin.has_any_role(&[Role::Sales, Role::Finance]));
        assert!(admin.has_any_role(&[Role::Admin]));
        assert_eq!(admin.roles_text(), "admin");
    }
}
