//! Products and warehouses: domain values to messages and back.

use prost_types::FieldMask;
use tandem_common::grpc::timestamp;
use tandem_proto::erp::v1 as pb;

use crate::{
    error::Error,
    products::{Product, ProductFields, ProductPatch},
    warehouses::Warehouse,
};

use super::{mask_paths, money};

pub(in crate::grpc) fn product(product: &Product) -> pb::Product {
    pb::Product {
        id: product.id.to_string(),
        sku: product.sku.clone(),
        display_name: product.fields.display_name.clone(),
        description: product.fields.description.clone(),
        unit_price: money(&product.fields.currency, product.fields.unit_price_minor),
        active: product.fields.active,
        version: product.version,
        create_time: Some(timestamp(product.create_time)),
        update_time: Some(timestamp(product.update_time)),
    }
}

pub(in crate::grpc) fn product_fields(
    product: &pb::Product,
    active: bool,
) -> Result<ProductFields, Error> {
    let price = product
        .unit_price
        .as_ref()
        .ok_or_else(|| Error::invalid("product.unit_price", "required"))?;
    Ok(ProductFields {
        display_name: product.display_name.clone(),
        description: product.description.clone(),
        unit_price_minor: price.amount_minor,
        currency: price.currency_code.clone(),
        active,
    })
}

pub(in crate::grpc) fn product_patch(
    product: &pb::Product,
    mask: Option<&FieldMask>,
) -> Result<ProductPatch, Error> {
    let mut patch = ProductPatch::default();
    for path in mask_paths(
        mask,
        &["display_name", "description", "unit_price", "active"],
    )? {
        match path {
            "display_name" => patch.display_name = Some(product.display_name.clone()),
            "description" => patch.description = Some(product.description.clone()),
            "unit_price" => {
                let price = product
                    .unit_price
                    .as_ref()
                    .ok_or_else(|| Error::invalid("product.unit_price", "required by the mask"))?;
                patch.unit_price = Some((price.amount_minor, price.currency_code.clone()));
            }
            _ => patch.active = Some(product.active),
        }
    }
    Ok(patch)
}

pub(in crate::grpc) fn warehouse(warehouse: &Warehouse) -> pb::Warehouse {
    pb::Warehouse {
        code: warehouse.code.clone(),
        display_name: warehouse.display_name.clone(),
        create_time: Some(timestamp(warehouse.create_time)),
    }
}
