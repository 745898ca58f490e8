//! `google.rpc.ErrorInfo` reasons the services put on a FAILED_PRECONDITION, which the bridge
//! (and any other client) acts on: part of the contract between them, so defined once here, as
//! one enum. On the wire a reason is its [`Reason::as_str`] spelling.

/// Why a FAILED_PRECONDITION was refused, in terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The request names a customer the service does not know (yet).
    UnknownCustomer,
    /// The request names skus the service does not know (yet), or (CRM) not active.
    UnknownSku,
    /// The request names a warehouse the ERP does not know.
    UnknownWarehouse,
    /// A state transition the order's current status does not allow.
    IllegalTransition,
    /// Not enough stock for the movement.
    InsufficientStock,
    /// A count below what is reserved in that warehouse.
    CountBelowReserved,
    /// The customer is ARCHIVED and cannot order.
    CustomerArchived,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 7] = [
        Self::UnknownCustomer,
        Self::UnknownSku,
        Self::UnknownWarehouse,
        Self::IllegalTransition,
        Self::InsufficientStock,
        Self::CountBelowReserved,
        Self::CustomerArchived,
    ];

    /// The wire spelling (`ErrorInfo.reason`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCustomer => "UNKNOWN_CUSTOMER",
            Self::UnknownSku => "UNKNOWN_SKU",
            Self::UnknownWarehouse => "UNKNOWN_WAREHOUSE",
            Self::IllegalTransition => "ILLEGAL_TRANSITION",
            Self::InsufficientStock => "INSUFFICIENT_STOCK",
            Self::CountBelowReserved => "COUNT_BELOW_RESERVED",
            Self::CustomerArchived => "CUSTOMER_ARCHIVED",
        }
    }

    /// The reason spelled `text`, if it is one of these.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }

    /// Whether something the request refers to is missing (it may appear later: the bridge
    /// heals or retries before giving up).
    pub const fn is_missing_dependency(self) -> bool {
        match self {
            Self::UnknownCustomer | Self::UnknownSku | Self::UnknownWarehouse => true,
            Self::IllegalTransition
            | Self::InsufficientStock
            | Self::CountBelowReserved
            | Self::CustomerArchived => false,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_from_its_spelling() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("unknown_customer"), None);
        let missing: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| r.is_missing_dependency())
            .collect();
        assert_eq!(
            missing,
            [
                Reason::UnknownCustomer,
                Reason::UnknownSku,
                Reason::UnknownWarehouse
            ]
        );
    }
}
