//! [`Event`]: what makes a payload type one of Tandem's events. The payload says which kind of
//! event it is (and so its type name, schema version, topic and aggregate type) and which
//! aggregate it is about, so a producer hands over the payload alone.

use serde::{Serialize, de::DeserializeOwned};

use super::{EventKind, crm, erp, integration};

/// A payload (`data`) of one or more of Tandem's event kinds.
pub trait Event: Serialize + DeserializeOwned {
    /// Every kind that carries this payload.
    const KINDS: &'static [EventKind];

    /// The kind this payload is published as (one of [`Event::KINDS`]).
    fn kind(&self) -> EventKind;

    /// `aggregate_id` in the envelope: the entity this payload is the state of.
    fn aggregate_id(&self) -> String;
}

/// Payloads with one kind each.
macro_rules! one_kind {
    ($($payload:ty => $kind:ident, |$p:ident| $id:expr;)*) => {$(
        impl Event for $payload {
            const KINDS: &'static [EventKind] = &[EventKind::$kind];

            fn kind(&self) -> EventKind {
                EventKind::$kind
            }

            fn aggregate_id(&self) -> String {
                let $p = self;
                $id.clone()
            }
        }
    )*};
}

one_kind! {
    erp::ProductUpsertedV1 => ErpProductUpserted, |p| p.sku;
    erp::StockChangedV1 => ErpStockChanged, |p| p.sku;
    erp::OrderStatusChangedV1 => ErpOrderStatusChanged, |p| p.crm_order_id;
    erp::CustomerFinanceChangedV1 => ErpCustomerFinanceChanged, |p| p.customer_id;
    integration::CustomerUpsertedV1 => IntegrationCustomerUpserted, |p| p.external_ref;
    integration::OrderPlacedV1 => IntegrationOrderPlaced, |p| p.order_ref;
    integration::StockCountedV1 => IntegrationStockCounted, |p| p.sku;
}

/// A customer's full profile: `crm.customer.archived` once archived, else
/// `crm.customer.upserted`.
impl Event for crm::CustomerUpsertedV1 {
    const KINDS: &'static [EventKind] = &[
        EventKind::CrmCustomerUpserted,
        EventKind::CrmCustomerArchived,
    ];

    fn kind(&self) -> EventKind {
        match self.status {
            super::CustomerStatus::Archived => EventKind::CrmCustomerArchived,
            super::CustomerStatus::Active => EventKind::CrmCustomerUpserted,
        }
    }

    fn aggregate_id(&self) -> String {
        self.customer_id.clone()
    }
}

/// An order as the CRM owns it: `crm.order.cancel_requested` once its cancellation is asked
/// for, else `crm.order.submitted`.
impl Event for crm::OrderV1 {
    const KINDS: &'static [EventKind] = &[
        EventKind::CrmOrderSubmitted,
        EventKind::CrmOrderCancelRequested,
    ];

    fn kind(&self) -> EventKind {
        match self.status {
            crm::OrderStatus::CancelRequested | crm::OrderStatus::Cancelled => {
                EventKind::CrmOrderCancelRequested
            }
            crm::OrderStatus::Draft | crm::OrderStatus::Submitted => EventKind::CrmOrderSubmitted,
        }
    }

    fn aggregate_id(&self) -> String {
        self.order_id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind has exactly one payload type, and each payload's kinds are its own.
    #[test]
    fn every_kind_has_one_payload() {
        let payloads: [&[EventKind]; 9] = [
            crm::CustomerUpsertedV1::KINDS,
            crm::OrderV1::KINDS,
            erp::ProductUpsertedV1::KINDS,
            erp::StockChangedV1::KINDS,
            erp::OrderStatusChangedV1::KINDS,
            erp::CustomerFinanceChangedV1::KINDS,
            integration::CustomerUpsertedV1::KINDS,
            integration::OrderPlacedV1::KINDS,
            integration::StockCountedV1::KINDS,
        ];
        for kind in EventKind::ALL {
            let carriers = payloads
                .iter()
                .filter(|kinds| kinds.contains(&kind))
                .count();
            assert_eq!(
                carriers, 1,
                "{kind:?} is carried by {carriers} payload types"
            );
        }
    }
}
