//! The whole listings that `reconcile` and `resync` compare and repair from: each List RPC read
//! page by page ([`all_pages`]), with its progress shown unless `quiet`. One function per
//! listing, so every command reads an entity the same way.

use tandem_proto::{crm::v1 as crm, erp::v1 as erp};
use tonic::Status;

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::reconcile::{ErpClient, PAGE};
use crate::flows::Flows;

/// Every customer of the CRM.
pub(crate) async fn crm_customers(
    flows: &Flows,
    quiet: bool,
) -> Result<Vec<crm::Customer>, Status> {
    all_pages("CRM customers", quiet, |page_token| {
        let mut crm = flows.crm.clone();
        let request = flows.request(crm::ListCustomersRequest {
            page_size: PAGE,
            page_token,
            ..crm::ListCustomersRequest::default()
        });
        async move {
            let page = crm.list_customers(request).await?.into_inner();
            Ok((page.customers, page.next_page_token))
        }
    })
    .await
}

/// Every order of the CRM.
pub(crate) async fn crm_orders(flows: &Flows, quiet: bool) -> Result<Vec<crm::Order>, Status> {
    all_pages("CRM orders", quiet, |page_token| {
        let mut crm = flows.crm.clone();
        let request = flows.request(crm::ListOrdersRequest {
            page_size: PAGE,
            page_token,
            ..crm::ListOrdersRequest::default()
        });
        async move {
            let page = crm.list_orders(request).await?.into_inner();
            Ok((page.orders, page.next_page_token))
        }
    })
    .await
}

/// Every product of the CRM's catalogue mirror, inactive ones included.
pub(crate) async fn crm_catalogue(flows: &Flows, quiet: bool) -> Result<Vec<crm::Product>, Status> {
    all_pages("CRM catalogue", quiet, |page_token| {
        let mut crm = flows.crm.clone();
        let request = flows.request(crm::ListProductsRequest {
            page_size: PAGE,
            page_token,
            include_inactive: true,
        });
        async move {
            let page = crm.list_products(request).await?.into_inner();
            Ok((page.products, page.next_page_token))
        }
    })
    .await
}

/// Every customer of the ERP (the CRM's profile mirror with the ERP's finance).
pub(crate) async fn erp_customers(
    flows: &Flows,
    erp: &ErpClient,
    quiet: bool,
) -> Result<Vec<erp::Customer>, Status> {
    all_pages("ERP customers", quiet, |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListCustomersRequest {
            page_size: PAGE,
            page_token,
        });
        async move {
            let page = erp.list_customers(request).await?.into_inner();
            Ok((page.customers, page.next_page_token))
        }
    })
    .await
}

/// Every sales order of the ERP.
pub(crate) async fn erp_orders(
    flows: &Flows,
    erp: &ErpClient,
    quiet: bool,
) -> Result<Vec<erp::SalesOrder>, Status> {
    all_pages("ERP orders", quiet, |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListSalesOrdersRequest {
            page_size: PAGE,
            page_token,
            ..erp::ListSalesOrdersRequest::default()
        });
        async move {
            let page = erp.list_sales_orders(request).await?.into_inner();
            Ok((page.orders, page.next_page_token))
        }
    })
    .await
}

/// Every product of the ERP.
pub(crate) async fn erp_products(
    flows: &Flows,
    erp: &ErpClient,
    quiet: bool,
) -> Result<Vec<erp::Product>, Status> {
    all_pages("ERP products", quiet, |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListProductsRequest {
            page_size: PAGE,
            page_token,
            ..erp::ListProductsRequest::default()
        });
        async move {
            let page = erp.list_products(request).await?.into_inner();
            Ok((page.products, page.next_page_token))
        }
    })
    .await
}

/// Every stock level of the ERP (per sku and warehouse).
pub(crate) async fn erp_stock_levels(
    flows: &Flows,
    erp: &ErpClient,
    quiet: bool,
) -> Result<Vec<erp::StockLevel>, Status> {
    all_pages("ERP stock levels", quiet, |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListStockLevelsRequest {
            page_size: PAGE,
            page_token,
            ..erp::ListStockLevelsRequest::default()
        });
        async move {
            let page = erp.list_stock_levels(request).await?.into_inner();
            Ok((page.levels, page.next_page_token))
        }
    })
    .await
}

/// Reads every page of a List RPC: `fetch(page_token)` answers one page and the next token.
pub(crate) async fn all_pages<T, F, Fut>(
    label: &'static str,
    quiet: bool,
    mut fetch: F,
) -> Result<Vec<T>, Status>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), Status>>,
{
    let progress = bar(label, quiet);
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token).await?;
        progress.inc(items.len() as u64);
        all.extend(items);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    progress.finish_and_clear();
    Ok(all)
}

/// A spinner counting what a listing read (hidden when `quiet`).
fn bar(label: &'static str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // Listings read at once each keep a line of their own.
    static LINES: OnceLock<MultiProgress> = OnceLock::new();
    let bar = LINES
        .get_or_init(MultiProgress::new)
        .add(ProgressBar::new_spinner());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} read") {
        bar.set_style(style);
    }
    bar.set_message(label);
    bar
}
