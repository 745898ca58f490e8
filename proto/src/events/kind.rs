//! Every event type Tandem knows, as one enum. Its type name, schema version, topic, aggregate
//! and payload schema come from exhaustive matches, so a new variant that lacks one of them
//! does not compile; and the bridge routes by matching on it, so neither does a new event
//! type without a route.

use super::{aggregates, crm, erp, integration, schemas, topics, types};

/// One event type at one schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    CrmCustomerUpserted,
    CrmCustomerArchived,
    CrmOrderSubmitted,
    CrmOrderCancelRequested,
    ErpProductUpserted,
    ErpStockChanged,
    ErpOrderStatusChanged,
    ErpCustomerFinanceChanged,
    IntegrationCustomerUpserted,
    IntegrationOrderPlaced,
    IntegrationStockCounted,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 11] = [
        Self::CrmCustomerUpserted,
        Self::CrmCustomerArchived,
        Self::CrmOrderSubmitted,
        Self::CrmOrderCancelRequested,
        Self::ErpProductUpserted,
        Self::ErpStockChanged,
        Self::ErpOrderStatusChanged,
        Self::ErpCustomerFinanceChanged,
        Self::IntegrationCustomerUpserted,
        Self::IntegrationOrderPlaced,
        Self::IntegrationStockCounted,
    ];

    /// `type` in the envelope.
    pub const fn type_name(self) -> &'static str {
        match self {
            Self::CrmCustomerUpserted => types::CRM_CUSTOMER_UPSERTED,
            Self::CrmCustomerArchived => types::CRM_CUSTOMER_ARCHIVED,
            Self::CrmOrderSubmitted => types::CRM_ORDER_SUBMITTED,
            Self::CrmOrderCancelRequested => types::CRM_ORDER_CANCEL_REQUESTED,
            Self::ErpProductUpserted => types::ERP_PRODUCT_UPSERTED,
            Self::ErpStockChanged => types::ERP_STOCK_CHANGED,
            Self::ErpOrderStatusChanged => types::ERP_ORDER_STATUS_CHANGED,
            Self::ErpCustomerFinanceChanged => types::ERP_CUSTOMER_FINANCE_CHANGED,
            Self::IntegrationCustomerUpserted => types::INTEGRATION_CUSTOMER_UPSERTED,
            Self::IntegrationOrderPlaced => types::INTEGRATION_ORDER_PLACED,
            Self::IntegrationStockCounted => types::INTEGRATION_STOCK_COUNTED,
        }
    }

    /// `schema_version` in the envelope.
    pub const fn schema_version(self) -> u32 {
        match self {
            Self::CrmCustomerUpserted
            | Self::CrmCustomerArchived
            | Self::CrmOrderSubmitted
            | Self::CrmOrderCancelRequested
            | Self::ErpProductUpserted
            | Self::ErpStockChanged
            | Self::ErpOrderStatusChanged
            | Self::ErpCustomerFinanceChanged
            | Self::IntegrationCustomerUpserted
            | Self::IntegrationOrderPlaced
            | Self::IntegrationStockCounted => 1,
        }
    }

    /// The topic events of this kind are published on (and only accepted from).
    pub const fn topic(self) -> &'static str {
        match self {
            Self::CrmCustomerUpserted | Self::CrmCustomerArchived => topics::CRM_CUSTOMERS,
            Self::CrmOrderSubmitted | Self::CrmOrderCancelRequested => topics::CRM_ORDERS,
            Self::ErpProductUpserted => topics::ERP_PRODUCTS,
            Self::ErpStockChanged => topics::ERP_STOCK,
            Self::ErpOrderStatusChanged => topics::ERP_ORDERS,
            Self::ErpCustomerFinanceChanged => topics::ERP_CUSTOMERS,
            Self::IntegrationCustomerUpserted => topics::INTEGRATION_CUSTOMERS,
            Self::IntegrationOrderPlaced => topics::INTEGRATION_ORDERS,
            Self::IntegrationStockCounted => topics::INTEGRATION_STOCK,
        }
    }

    /// `aggregate_type` in the envelope as Tandem writes it (integrators name their own
    /// aggregates; the bridge does not read theirs).
    pub const fn aggregate(self) -> &'static str {
        match self {
            Self::CrmCustomerUpserted | Self::CrmCustomerArchived => aggregates::CUSTOMER,
            Self::CrmOrderSubmitted | Self::CrmOrderCancelRequested => crm::aggregates::ORDER,
            Self::ErpProductUpserted => erp::aggregates::PRODUCT,
            Self::ErpStockChanged => erp::aggregates::STOCK,
            Self::ErpOrderStatusChanged => erp::aggregates::SALES_ORDER,
            Self::ErpCustomerFinanceChanged => erp::aggregates::CUSTOMER_FINANCE,
            Self::IntegrationCustomerUpserted => aggregates::CUSTOMER,
            Self::IntegrationOrderPlaced => crm::aggregates::ORDER,
            Self::IntegrationStockCounted => erp::aggregates::STOCK,
        }
    }

    /// The JSON Schema of the payload (`data`).
    pub fn schema(self) -> &'static str {
        let (name, version) = (self.type_name(), self.schema_version());
        let found = match self {
            Self::CrmCustomerUpserted
            | Self::CrmCustomerArchived
            | Self::CrmOrderSubmitted
            | Self::CrmOrderCancelRequested => crm::schema_for(name, version),
            Self::ErpProductUpserted
            | Self::ErpStockChanged
            | Self::ErpOrderStatusChanged
            | Self::ErpCustomerFinanceChanged => erp::schema_for(name, version),
            Self::IntegrationCustomerUpserted
            | Self::IntegrationOrderPlaced
            | Self::IntegrationStockCounted => integration::schema_for(name, version),
        };
        // Every kind has its schema (a unit test reads each one).
        found.unwrap_or(schemas::ENVELOPE)
    }

    /// The kind of `type_name` at `schema_version`, if Tandem knows it.
    pub fn of(type_name: &str, schema_version: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.type_name() == type_name && k.schema_version() == schema_version)
    }

    /// A kind named `type_name`, at any schema version (for the topic it belongs on).
    pub fn named(type_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == type_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_found_by_its_name() {
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(EventKind::ALL.iter().filter(|k| **k == kind).count(), 1);
            assert_eq!(
                EventKind::of(kind.type_name(), kind.schema_version()),
                Some(kind),
                "#{i}"
            );
        }
        assert_eq!(EventKind::of(types::CRM_CUSTOMER_UPSERTED, 2), None);
        assert_eq!(EventKind::of("crm.customer.deleted", 1), None);
    }

    #[test]
    fn every_kind_has_its_own_schema_and_a_change_topic() {
        for kind in EventKind::ALL {
            assert_ne!(
                kind.schema(),
                schemas::ENVELOPE,
                "{kind:?} has no payload schema"
            );
            assert!(topics::CHANGE_EVENTS.contains(&kind.topic()), "{kind:?}");
        }
    }

    #[test]
    fn the_lists_of_each_source_are_the_kinds() {
        let listed: Vec<(&str, u32)> = crm::EVENT_TYPES
            .iter()
            .chain(erp::EVENT_TYPES)
            .chain(integration::EVENT_TYPES)
            .copied()
            .collect();
        let kinds: Vec<(&str, u32)> = EventKind::ALL
            .iter()
            .map(|k| (k.type_name(), k.schema_version()))
            .collect();
        assert_eq!(listed, kinds);
    }
}
