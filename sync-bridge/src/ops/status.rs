//! `tandemctl status TYPE ID`: one entity as each side sees it: versions, what the mirror last
//! applied, whether changes are pending, and its dead letters.

use rdkafka::Message;
use tandem_common::kafka::KafkaSettings;
use tandem_proto::{crm::v1 as crm, erp::v1 as erp, events::topics};
use tonic::transport::Channel;

use crate::flows::Flows;

/// The kinds of entity `status` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EntityType {
    Customer,
    Order,
    Product,
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    out.push_str(&format!("{label:<28} {value}\n"));
}

fn when(at: Option<&prost_types::Timestamp>) -> String {
    at.map(|t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .map(|d| d.to_rfc3339())
            .unwrap_or_default()
    })
    .unwrap_or_else(|| "-".to_owned())
}

/// The status report of one entity.
pub async fn status(
    flows: &Flows,
    erp_client: &mut erp::erp_service_client::ErpServiceClient<Channel>,
    kafka: &KafkaSettings,
    kind: EntityType,
    id: &str,
) -> anyhow::Result<String> {
    let mut out = String::new();
    match kind {
        EntityType::Customer => {
            let owner = flows
                .crm
                .clone()
                .get_customer(flows.request(crm::GetCustomerRequest { id: id.to_owned() }))
                .await;
            let mirror = erp_client
                .get_customer(flows.request(erp::GetCustomerRequest { id: id.to_owned() }))
                .await;
            let owner_version = owner.as_ref().map(|c| c.get_ref().version).unwrap_or(0);
            let mirror_version = mirror
                .as_ref()
                .map(|c| c.get_ref().profile_version)
                .unwrap_or(0);
            line(&mut out, "profile version in the CRM", owner_version);
            line(&mut out, "profile version in the ERP", mirror_version);
            line(
                &mut out,
                "profile last applied (ERP)",
                when(
                    mirror
                        .as_ref()
                        .ok()
                        .and_then(|c| c.get_ref().profile_update_time.as_ref()),
                ),
            );
            line(
                &mut out,
                "profile versions pending",
                (owner_version - mirror_version).max(0),
            );
            let erp_finance = mirror
                .as_ref()
                .ok()
                .and_then(|c| c.get_ref().finance.clone());
            let crm_finance = owner
                .as_ref()
                .ok()
                .and_then(|c| c.get_ref().finance.clone());
            let owner_finance = erp_finance.as_ref().map(|f| f.version).unwrap_or(0);
            let mirror_finance = crm_finance.as_ref().map(|f| f.source_version).unwrap_or(0);
            line(&mut out, "finance version in the ERP", owner_finance);
            line(&mut out, "finance version in the CRM", mirror_finance);
            line(
                &mut out,
                "finance last applied (CRM)",
                when(crm_finance.as_ref().and_then(|f| f.update_time.as_ref())),
            );
            line(
                &mut out,
                "finance versions pending",
                (owner_finance - mirror_finance).max(0),
            );
        }
        EntityType::Order => {
            let owner = flows
                .crm
                .clone()
                .get_order(flows.request(crm::GetOrderRequest { id: id.to_owned() }))
                .await?
                .into_inner();
            let fulfilment = owner.fulfilment.clone().unwrap_or_default();
            let sales = erp_client
                .list_sales_orders(flows.request(erp::ListSalesOrdersRequest {
                    crm_order_id: id.to_owned(),
                    ..erp::ListSalesOrdersRequest::default()
                }))
                .await?
                .into_inner()
                .orders
                .into_iter()
                .next();
            line(
                &mut out,
                "order in the CRM",
                format!("{:?} v{}", owner.status(), owner.version),
            );
            line(
                &mut out,
                "order in the ERP",
                sales
                    .as_ref()
                    .map(|s| format!("{:?} v{}", s.status(), s.version))
                    .unwrap_or_else(|| "not accepted yet".to_owned()),
            );
            line(
                &mut out,
                "fulfilment mirrored (CRM)",
                format!("{:?} v{}", fulfilment.status(), fulfilment.source_version),
            );
            line(
                &mut out,
                "fulfilment last applied",
                when(fulfilment.update_time.as_ref()),
            );
            let erp_version = sales.as_ref().map(|s| s.version).unwrap_or(0);
            line(
                &mut out,
                "status versions pending",
                (erp_version - fulfilment.source_version).max(0),
            );
        }
        EntityType::Product => {
            let owner = erp_client
                .list_products(flows.request(erp::ListProductsRequest {
                    sku_prefix: id.to_owned(),
                    page_size: 1_000,
                    ..erp::ListProductsRequest::default()
                }))
                .await?
                .into_inner()
                .products
                .into_iter()
                .find(|p| p.sku == id);
            let availability = flows
                .crm
                .clone()
                .get_availability(flows.request(crm::GetAvailabilityRequest {
                    skus: vec![id.to_owned()],
                }))
                .await
                .ok()
                .and_then(|r| r.into_inner().availability.into_iter().next());
            line(
                &mut out,
                "product version in the ERP",
                owner.as_ref().map(|p| p.version).unwrap_or(0),
            );
            line(
                &mut out,
                "stock mirrored (CRM)",
                availability
                    .as_ref()
                    .map(|a| format!("available {} v{}", a.available, a.source_version))
                    .unwrap_or_else(|| "-".to_owned()),
            );
            line(
                &mut out,
                "stock last applied (CRM)",
                when(availability.as_ref().and_then(|a| a.update_time.as_ref())),
            );
        }
    }
    let dead = super::read_all(kafka, topics::DEAD_LETTER)?
        .into_iter()
        .filter(|m| m.key() == Some(id.as_bytes()))
        .count();
    line(&mut out, "dead-lettered events", dead);
    Ok(out)
}
