//! Catalogue messages <-> the catalogue mirror.

use tandem_common::grpc::timestamp;
use tandem_proto::crm::v1 as pb;

use super::money;
use crate::catalogue::Product;

pub(super) fn to_proto(product: &Product) -> pb::Product {
    let data = &product.data;
    pb::Product {
        sku: data.sku.clone(),
        name: data.name.clone(),
        unit_price: Some(money(&data.currency, data.unit_price_minor)),
        active: data.active,
        available: product.available,
        product_version: product.product_version,
        stock_version: product.stock_version,
        update_time: Some(timestamp(product.update_time)),
    }
}

pub(super) fn availability(product: &Product) -> pb::Availability {
    pb::Availability {
        sku: product.data.sku.clone(),
        available: product.available,
        source_version: product.stock_version,
        update_time: Some(timestamp(product.update_time)),
    }
}
