//! Every entity of a kind, read page by page through the public APIs.

use std::{collections::BTreeMap, future::Future};

use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
};
use tandem_tests::security::Authed;

/// Every item of a paged List call: `page(token)` answers one page's items and the next
/// page's token (empty after the last page).
async fn all_pages<T, F, Fut>(mut page: F) -> Vec<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (Vec<T>, String)>,
{
    let (mut all, mut token) = (Vec::new(), String::new());
    loop {
        let (items, next) = page(token).await;
        all.extend(items);
        if next.is_empty() {
            return all;
        }
        token = next;
    }
}

pub async fn crm_customers(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Customer> {
    all_pages(|page_token| async move {
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
        (page.customers, page.next_page_token)
    })
    .await
    .into_iter()
    .map(|c| (c.id.clone(), c))
    .collect()
}

pub async fn crm_orders(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Order> {
    all_pages(|page_token| async move {
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
        (page.orders, page.next_page_token)
    })
    .await
    .into_iter()
    .map(|o| (o.id.clone(), o))
    .collect()
}

pub async fn erp_customers(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::Customer> {
    all_pages(|page_token| async move {
        let page = erp
            .clone()
            .list_customers(erp::ListCustomersRequest {
                page_size: 500,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        (page.customers, page.next_page_token)
    })
    .await
    .into_iter()
    .map(|c| (c.profile.as_ref().unwrap().id.clone(), c))
    .collect()
}

pub async fn erp_orders(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::SalesOrder> {
    all_pages(|page_token| async move {
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
        (page.orders, page.next_page_token)
    })
    .await
    .into_iter()
    .map(|o| (o.crm_order_id.clone(), o))
    .collect()
}

pub async fn erp_products(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, erp::Product> {
    all_pages(|page_token| async move {
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
        (page.products, page.next_page_token)
    })
    .await
    .into_iter()
    .map(|p| (p.sku.clone(), p))
    .collect()
}

/// Available per sku, summed over warehouses.
pub async fn erp_available(erp: &ErpServiceClient<Authed>) -> BTreeMap<String, i64> {
    let levels = all_pages(|page_token| async move {
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
        (page.levels, page.next_page_token)
    })
    .await;
    let mut all = BTreeMap::new();
    for level in levels {
        *all.entry(level.sku).or_insert(0) += level.available;
    }
    all
}

pub async fn crm_catalogue(crm: &CrmServiceClient<Authed>) -> BTreeMap<String, crm::Product> {
    all_pages(|page_token| async move {
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
        (page.products, page.next_page_token)
    })
    .await
    .into_iter()
    .map(|p| (p.sku.clone(), p))
    .collect()
}
