//! Every entity of a kind, read page by page through the public APIs.

use std::collections::BTreeMap;

use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
};
use tandem_tests::security::Authed;

pub async fn crm_customers(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Customer> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .clone()
            .list_customers(crm::ListCustomersRequest {
                page_size: 1000,
                page_token,
                ..crm::ListCustomersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.customers.into_iter().map(|c| (c.id.clone(), c)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

pub async fn crm_orders(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Order> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .clone()
            .list_orders(crm::ListOrdersRequest {
                page_size: 1000,
                page_token,
                ..crm::ListOrdersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.orders.into_iter().map(|o| (o.id.clone(), o)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

pub async fn erp_customers(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::Customer> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_customers(erp::ListCustomersRequest {
                page_size: 500,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(
            page.customers
                .into_iter()
                .map(|c| (c.profile.as_ref().unwrap().id.clone(), c)),
        );
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

pub async fn erp_orders(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::SalesOrder> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_sales_orders(erp::ListSalesOrdersRequest {
                page_size: 500,
                page_token,
                ..erp::ListSalesOrdersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.orders.into_iter().map(|o| (o.crm_order_id.clone(), o)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

pub async fn erp_products(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::Product> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_products(erp::ListProductsRequest {
                page_size: 500,
                page_token,
                ..erp::ListProductsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.products.into_iter().map(|p| (p.sku.clone(), p)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Available per sku, summed over warehouses.
pub async fn erp_available(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, i64> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = erp
            .clone()
            .list_stock_levels(erp::ListStockLevelsRequest {
                page_size: 500,
                page_token,
                ..erp::ListStockLevelsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        for level in page.levels {
            *all.entry(level.sku).or_insert(0) += level.available;
        }
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

pub async fn crm_catalogue(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Product> {
    let mut all = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = crm
            .clone()
            .list_products(crm::ListProductsRequest {
                page_size: 1000,
                page_token,
                include_inactive: true,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.products.into_iter().map(|p| (p.sku.clone(), p)));
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}
