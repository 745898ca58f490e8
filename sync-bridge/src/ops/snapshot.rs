//! `tandemctl snapshot`: asks the CRM, then the ERP, to republish every current entity (the
//! initial load of a consumer). Each `Republish` call works for a bounded time and answers a
//! token to go on with; this calls again until none comes back, summing the counts and
//! showing them as they grow.

use indicatif::{ProgressBar, ProgressStyle};
use tandem_proto::{
    crm::v1::{self as crm, crm_sync_client::CrmSyncClient},
    erp::v1::{self as erp, erp_sync_client::ErpSyncClient},
};
use tonic::{Status, transport::Channel};

/// Republishes everything on both sides; returns the summed counts of each.
pub async fn snapshot(
    mut crm_sync: CrmSyncClient<Channel>,
    mut erp_sync: ErpSyncClient<Channel>,
    quiet: bool,
) -> Result<(crm::RepublishResponse, erp::RepublishResponse), Status> {
    let progress = spinner(quiet);
    let mut crm_done = crm::RepublishResponse::default();
    loop {
        let page = crm_sync
            .republish(crm::RepublishRequest {
                page_token: crm_done.next_page_token.clone(),
            })
            .await?
            .into_inner();
        crm_done.customers += page.customers;
        crm_done.orders += page.orders;
        crm_done.next_page_token = page.next_page_token;
        progress.set_message(format!(
            "CRM: {} customers, {} orders",
            crm_done.customers, crm_done.orders
        ));
        if crm_done.next_page_token.is_empty() {
            break;
        }
    }
    let mut erp_done = erp::RepublishResponse::default();
    loop {
        let page = erp_sync
            .republish(erp::RepublishRequest {
                page_token: erp_done.next_page_token.clone(),
            })
            .await?
            .into_inner();
        erp_done.products += page.products;
        erp_done.stock_levels += page.stock_levels;
        erp_done.orders += page.orders;
        erp_done.customers += page.customers;
        erp_done.next_page_token = page.next_page_token;
        progress.set_message(format!(
            "ERP: {} products, {} stock levels, {} orders, {} finance",
            erp_done.products, erp_done.stock_levels, erp_done.orders, erp_done.customers
        ));
        if erp_done.next_page_token.is_empty() {
            break;
        }
    }
    progress.finish_and_clear();
    Ok((crm_done, erp_done))
}

/// A line counting what was republished (hidden when `quiet`).
fn spinner(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} republished {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
