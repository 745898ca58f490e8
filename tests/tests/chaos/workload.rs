//! The chaos workload: clients of the CRM, the ERP and the integrator topics, each recording
//! every call in the shared [`Ledger`] with what it was told (acknowledged with ids, versions
//! and amounts; refused with the code; unknown).
//!
//! Every creating or stock- or money-moving call (create a customer or an order, submit,
//! receive stock, ship, invoice, record a payment) carries a request id (AIP-155) that its
//! retries repeat, so each is retried after any failure that is not a definite answer: a
//! retry of an attempt that did apply gets that attempt's answer, and an outcome stays
//! unknown only when every attempt went unanswered. The other version-gated updates
//! (customer e-mail, cancellation request) and credit terms (absolute values) are retried
//! after any failure too. A version- or state-gated retry refused after an ambiguous
//! attempt is resolved by reading: if the read shows this client's own change, the earlier
//! attempt applied it (every customer and order belongs to one client).

use std::{sync::Arc, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use tandem_proto::{
    crm::v1::{self as crm, crm_service_client::CrmServiceClient},
    erp::v1::{self as erp, erp_service_client::ErpServiceClient},
    events::topics,
};
use tandem_tests::security::Authed;
use tandem_tests::{
    TestProducer,
    outcomes::{Attempted, CallPolicy, Failure, Ledger, Operation, Retry, Told, call},
};
use tonic::Response;

use crate::support::eur;

/// A fresh request id: one per logical call, repeated by each of its retries.
fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The skus orders and receipts use.
pub const SKUS: [&str; 4] = ["CH-A", "CH-B", "CH-C", "CH-D"];
/// The sku of the WMS counts, which takes no orders and no receipts: its final on hand is the
/// last count applied.
pub const COUNT_SKU: &str = "CH-W";
pub const WAREHOUSE: &str = "MAIN";
/// On hand of every sku after the set-up (reference `initial`).
pub const INITIAL_STOCK: i64 = 200;
pub const PRICE: i64 = 1_000;
/// The reason every cancellation request gives.
pub const CANCEL_REASON: &str = "chaos";

/// One call of the workload.
#[derive(Debug, Clone)]
pub enum Op {
    CreateCustomer {
        name: String,
        email: String,
    },
    SetCredit {
        customer: String,
    },
    UpdateEmail {
        customer: String,
        email: String,
    },
    CreateOrder {
        customer: String,
        sku: &'static str,
        quantity: i64,
    },
    SubmitOrder {
        order: String,
    },
    CancelOrder {
        order: String,
    },
    ShipOrder {
        order: String,
    },
    InvoiceOrder {
        order: String,
        customer: String,
    },
    ReceiveStock {
        sku: &'static str,
        quantity: i64,
        reference: String,
    },
    CountStock {
        event_id: String,
        quantity: i64,
    },
    BadMessage {
        payload: String,
    },
    RecordPayment {
        customer: String,
        amount: i64,
        reference: String,
    },
}

impl Operation for Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::CreateCustomer { .. } => "create_customer",
            Op::SetCredit { .. } => "set_credit",
            Op::UpdateEmail { .. } => "update_email",
            Op::CreateOrder { .. } => "create_order",
            Op::SubmitOrder { .. } => "submit_order",
            Op::CancelOrder { .. } => "cancel_order",
            Op::ShipOrder { .. } => "ship_order",
            Op::InvoiceOrder { .. } => "invoice_order",
            Op::ReceiveStock { .. } => "receive_stock",
            Op::CountStock { .. } => "count_stock",
            Op::BadMessage { .. } => "bad_message",
            Op::RecordPayment { .. } => "record_payment",
        }
    }
}

/// What an acknowledgement said (the fields its answer has; the others stay default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    /// The id the server assigned (customer, draft order).
    pub id: String,
    /// The entity's version after the call (customer, order, sales order, finance).
    pub version: i64,
    /// The order total (create order), the invoice amount (invoice).
    pub amount: i64,
    /// The (partition, offset) the broker acknowledged (integrator messages).
    pub position: (i32, i64),
}

pub type WorkLedger = Ledger<Op, Ack>;

struct Customer {
    id: String,
    /// The version this client last saw; `None` after an unknown update (read it again).
    version: Option<i64>,
}

struct Order {
    id: String,
    customer: String,
    version: i64,
}

/// One client's share of the workload.
pub struct Worker {
    seed: u64,
    rng: StdRng,
    crm: CrmServiceClient<Authed>,
    erp: ErpServiceClient<Authed>,
    producer: Arc<TestProducer>,
    ledger: Arc<WorkLedger>,
    policy: CallPolicy,
    customers: Vec<Customer>,
    /// Submitted orders not cancelled by this client.
    orders: Vec<Order>,
}

impl Worker {
    pub fn new(
        seed: u64,
        crm: CrmServiceClient<Authed>,
        erp: ErpServiceClient<Authed>,
        producer: Arc<TestProducer>,
        ledger: Arc<WorkLedger>,
    ) -> Self {
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            crm,
            erp,
            producer,
            ledger,
            policy: CallPolicy::default(),
            customers: Vec::new(),
            orders: Vec::new(),
        }
    }

    /// Runs `ops` steps; returns how many did something (a step with nothing to act on, or
    /// whose preparatory read failed, does not count).
    pub async fn run(mut self, ops: usize) -> usize {
        let mut done = 0;
        for n in 0..ops {
            let roll = self.rng.random_range(0..100);
            let did = match roll {
                0..15 => self.create_customer(n).await,
                15..30 if !self.customers.is_empty() => self.update_email(n).await,
                30..60 if !self.customers.is_empty() => self.order(n).await,
                60..65 if !self.orders.is_empty() => self.cancel().await,
                65..80 if !self.orders.is_empty() => self.ship_or_invoice().await,
                80..90 => self.receive(n).await,
                90..95 => self.count().await,
                95..97 => self.bad_message(n).await,
                97..100 if !self.customers.is_empty() => self.payment(n).await,
                _ => false,
            };
            done += usize::from(did);
        }
        done
    }

    fn record<T>(&self, op: Op, done: &Attempted<T>, ack: impl FnOnce(&T) -> Ack) {
        let told = match &done.result {
            Ok(value) => Told::Acknowledged(ack(value)),
            Err(Failure::Refused(status)) => Told::Refused(status.code()),
            Err(Failure::Unknown(why)) => Told::Unknown(why.clone()),
        };
        self.ledger.record(op, told, done.attempts, false);
    }

    /// A version- or state-gated call refused after an ambiguous attempt: `read` tells
    /// whether that attempt applied (and what it said); the outcome is recorded either way.
    fn record_gated<T>(
        &self,
        op: Op,
        done: &Attempted<T>,
        ack: impl FnOnce(&T) -> Ack,
        read: ReadBack,
    ) {
        match (&done.result, read) {
            (Err(Failure::Refused(_)), ReadBack::Applied(ack)) if done.ambiguous_before => {
                self.ledger
                    .record(op, Told::Acknowledged(ack), done.attempts, true);
            }
            (Err(Failure::Refused(_)), ReadBack::Failed) if done.ambiguous_before => {
                self.ledger.record(
                    op,
                    Told::Unknown("refused after an ambiguous attempt; the read failed".into()),
                    done.attempts,
                    false,
                );
            }
            _ => self.record(op, done, ack),
        }
    }

    fn needs_read_back<T>(done: &Attempted<T>) -> bool {
        done.ambiguous_before && matches!(done.result, Err(Failure::Refused(_)))
    }

    async fn create_customer(&mut self, n: usize) -> bool {
        let name = format!("Chaos {}-{n}", self.seed);
        let email = format!("c{}x{n}@example.com", self.seed);
        let request = crm::CreateCustomerRequest {
            request_id: request_id(),
            customer: Some(crm::Customer {
                display_name: name.clone(),
                email: email.clone(),
                ..crm::Customer::default()
            }),
        };
        let crm = self.crm.clone();
        let done = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let request = request.clone();
            async move { crm.create_customer(request).await.map(Response::into_inner) }
        })
        .await;
        self.record(Op::CreateCustomer { name, email }, &done, |c| Ack {
            id: c.id.clone(),
            version: c.version,
            ..Ack::default()
        });
        let Ok(created) = done.result else {
            return true;
        };
        // Credit terms need the customer in the ERP: wait for the bridge.
        for _ in 0..200 {
            let request = erp::GetCustomerRequest {
                id: created.id.clone(),
            };
            if self.erp.get_customer(request).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let credit = erp::SetCreditTermsRequest {
            version: None,
            customer_id: created.id.clone(),
            credit_limit: eur(100_000_000),
            payment_terms_days: 30,
            credit_hold: false,
            update_mask: None,
        };
        let erp = self.erp.clone();
        let set = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let credit = credit.clone();
            async move { erp.set_credit_terms(credit).await.map(Response::into_inner) }
        })
        .await;
        self.record(
            Op::SetCredit {
                customer: created.id.clone(),
            },
            &set,
            |f| Ack {
                version: f.version,
                ..Ack::default()
            },
        );
        self.customers.push(Customer {
            id: created.id,
            version: Some(created.version),
        });
        true
    }

    /// Reads a customer of the CRM (retried: reads change nothing).
    async fn read_customer(&self, id: &str) -> Option<crm::Customer> {
        let crm = self.crm.clone();
        let read = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let request = crm::GetCustomerRequest { id: id.to_owned() };
            async move { crm.get_customer(request).await.map(Response::into_inner) }
        })
        .await;
        read.result.ok()
    }

    async fn update_email(&mut self, n: usize) -> bool {
        let at = self.rng.random_range(0..self.customers.len());
        let id = self.customers[at].id.clone();
        let version = match self.customers[at].version {
            Some(version) => version,
            None => match self.read_customer(&id).await {
                Some(customer) => customer.version,
                None => return false,
            },
        };
        let email = format!("u{}x{n}@example.com", self.seed);
        let request = crm::UpdateCustomerRequest {
            customer: Some(crm::Customer {
                id: id.clone(),
                email: email.clone(),
                version,
                ..crm::Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
        };
        let crm = self.crm.clone();
        let done = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let request = request.clone();
            async move { crm.update_customer(request).await.map(Response::into_inner) }
        })
        .await;
        let read = if Self::needs_read_back(&done) {
            match self.read_customer(&id).await {
                Some(c) if c.email == email => ReadBack::Applied(Ack {
                    version: c.version,
                    ..Ack::default()
                }),
                Some(_) => ReadBack::NotApplied,
                None => ReadBack::Failed,
            }
        } else {
            ReadBack::NotApplied
        };
        let seen = match (&done.result, &read) {
            (Ok(c), _) => Some(c.version),
            (_, ReadBack::Applied(ack)) => Some(ack.version),
            _ => None,
        };
        self.record_gated(
            Op::UpdateEmail {
                customer: id,
                email,
            },
            &done,
            |c| Ack {
                version: c.version,
                ..Ack::default()
            },
            read,
        );
        self.customers[at].version = seen;
        true
    }

    async fn read_order(&self, id: &str) -> Option<crm::Order> {
        let crm = self.crm.clone();
        let read = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let request = crm::GetOrderRequest { id: id.to_owned() };
            async move { crm.get_order(request).await.map(Response::into_inner) }
        })
        .await;
        read.result.ok()
    }

    /// Creates a draft and submits it.
    async fn order(&mut self, _n: usize) -> bool {
        let customer = self.customers[self.rng.random_range(0..self.customers.len())]
            .id
            .clone();
        let sku = SKUS[self.rng.random_range(0..SKUS.len())];
        let quantity = self.rng.random_range(1..4);
        let request = crm::CreateOrderRequest {
            request_id: request_id(),
            order: Some(crm::Order {
                customer_id: customer.clone(),
                currency_code: "EUR".into(),
                lines: vec![crm::OrderLine {
                    sku: sku.into(),
                    quantity,
                    ..crm::OrderLine::default()
                }],
                ..crm::Order::default()
            }),
        };
        let crm = self.crm.clone();
        let created = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let request = request.clone();
            async move { crm.create_order(request).await.map(Response::into_inner) }
        })
        .await;
        self.record(
            Op::CreateOrder {
                customer: customer.clone(),
                sku,
                quantity,
            },
            &created,
            |o| Ack {
                id: o.id.clone(),
                version: o.version,
                amount: o.total.as_ref().map_or(0, |t| t.amount_minor),
                ..Ack::default()
            },
        );
        let Ok(draft) = created.result else {
            return true;
        };
        let submit = crm::SubmitOrderRequest {
            request_id: request_id(),
            id: draft.id.clone(),
            version: draft.version,
        };
        let done = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let submit = submit.clone();
            async move { crm.submit_order(submit).await.map(Response::into_inner) }
        })
        .await;
        let read = if Self::needs_read_back(&done) {
            match self.read_order(&draft.id).await {
                Some(o) if o.status() != crm::OrderStatus::Draft => ReadBack::Applied(Ack {
                    version: o.version,
                    ..Ack::default()
                }),
                Some(_) => ReadBack::NotApplied,
                None => ReadBack::Failed,
            }
        } else {
            ReadBack::NotApplied
        };
        let submitted = match (&done.result, &read) {
            (Ok(o), _) => Some(o.version),
            (_, ReadBack::Applied(ack)) => Some(ack.version),
            _ => None,
        };
        self.record_gated(
            Op::SubmitOrder {
                order: draft.id.clone(),
            },
            &done,
            |o| Ack {
                version: o.version,
                ..Ack::default()
            },
            read,
        );
        if let Some(version) = submitted {
            self.orders.push(Order {
                id: draft.id,
                customer,
                version,
            });
        }
        true
    }

    async fn cancel(&mut self) -> bool {
        let order = self
            .orders
            .swap_remove(self.rng.random_range(0..self.orders.len()));
        let request = crm::RequestOrderCancellationRequest {
            id: order.id.clone(),
            version: order.version,
            reason: CANCEL_REASON.into(),
        };
        let crm = self.crm.clone();
        let done = call(Retry::Always, self.policy, || {
            let mut crm = crm.clone();
            let request = request.clone();
            async move {
                crm.request_order_cancellation(request)
                    .await
                    .map(Response::into_inner)
            }
        })
        .await;
        let read = if Self::needs_read_back(&done) {
            match self.read_order(&order.id).await {
                Some(o) if o.cancellation_reason == CANCEL_REASON => ReadBack::Applied(Ack {
                    version: o.version,
                    ..Ack::default()
                }),
                Some(_) => ReadBack::NotApplied,
                None => ReadBack::Failed,
            }
        } else {
            ReadBack::NotApplied
        };
        self.record_gated(
            Op::CancelOrder { order: order.id },
            &done,
            |o| Ack {
                version: o.version,
                ..Ack::default()
            },
            read,
        );
        true
    }

    async fn read_sales_order(&self, id: &str) -> Option<erp::SalesOrder> {
        let erp = self.erp.clone();
        let read = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let request = erp::GetSalesOrderRequest { id: id.to_owned() };
            async move { erp.get_sales_order(request).await.map(Response::into_inner) }
        })
        .await;
        read.result.ok()
    }

    /// The warehouse ships, or finance invoices, what is ready of one of this client's
    /// customers.
    async fn ship_or_invoice(&mut self) -> bool {
        let customer = self.orders[self.rng.random_range(0..self.orders.len())]
            .customer
            .clone();
        let ship = self.rng.random_bool(0.5);
        let status = if ship {
            erp::SalesOrderStatus::Reserved
        } else {
            erp::SalesOrderStatus::Shipped
        };
        let erp = self.erp.clone();
        let list = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let request = erp::ListSalesOrdersRequest {
                status: status as i32,
                customer_id: customer.clone(),
                page_size: 5,
                ..erp::ListSalesOrdersRequest::default()
            };
            async move {
                erp.list_sales_orders(request)
                    .await
                    .map(Response::into_inner)
            }
        })
        .await;
        let Ok(list) = list.result else {
            return false;
        };
        for order in list.orders {
            if ship {
                self.ship(order).await;
            } else {
                self.invoice(order).await;
            }
        }
        true
    }

    async fn ship(&mut self, order: erp::SalesOrder) {
        let erp = self.erp.clone();
        let ship_id = request_id();
        let done = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let request = erp::ShipOrderRequest {
                request_id: ship_id.clone(),
                id: order.id.clone(),
            };
            async move { erp.ship_order(request).await.map(Response::into_inner) }
        })
        .await;
        let read = if Self::needs_read_back(&done) {
            match self.read_sales_order(&order.id).await {
                Some(o)
                    if matches!(
                        o.status(),
                        erp::SalesOrderStatus::Shipped | erp::SalesOrderStatus::Invoiced
                    ) =>
                {
                    ReadBack::Applied(Ack {
                        id: o.id,
                        version: o.version,
                        ..Ack::default()
                    })
                }
                Some(_) => ReadBack::NotApplied,
                None => ReadBack::Failed,
            }
        } else {
            ReadBack::NotApplied
        };
        self.record_gated(
            Op::ShipOrder {
                order: order.crm_order_id.clone(),
            },
            &done,
            |o| Ack {
                id: o.id.clone(),
                version: o.version,
                ..Ack::default()
            },
            read,
        );
    }

    async fn invoice(&mut self, order: erp::SalesOrder) {
        let erp = self.erp.clone();
        let invoice_id = request_id();
        let done = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let request = erp::InvoiceOrderRequest {
                request_id: invoice_id.clone(),
                id: order.id.clone(),
            };
            async move { erp.invoice_order(request).await.map(Response::into_inner) }
        })
        .await;
        let invoiced = |o: &erp::SalesOrder| Ack {
            id: o.id.clone(),
            version: o.version,
            amount: o
                .invoice
                .as_ref()
                .and_then(|i| i.amount.as_ref())
                .map_or(0, |a| a.amount_minor),
            ..Ack::default()
        };
        let read = if Self::needs_read_back(&done) {
            match self.read_sales_order(&order.id).await {
                Some(o) if o.status() == erp::SalesOrderStatus::Invoiced => {
                    ReadBack::Applied(invoiced(&o))
                }
                Some(_) => ReadBack::NotApplied,
                None => ReadBack::Failed,
            }
        } else {
            ReadBack::NotApplied
        };
        self.record_gated(
            Op::InvoiceOrder {
                order: order.crm_order_id.clone(),
                customer: order.customer_id.clone(),
            },
            &done,
            invoiced,
            read,
        );
    }

    async fn receive(&mut self, n: usize) -> bool {
        let sku = SKUS[self.rng.random_range(0..SKUS.len())];
        let quantity = self.rng.random_range(1..10);
        let reference = format!("po-{}-{n}", self.seed);
        let request = erp::ReceiveStockRequest {
            request_id: request_id(),
            sku: sku.into(),
            warehouse: WAREHOUSE.into(),
            quantity,
            reference: reference.clone(),
        };
        let erp = self.erp.clone();
        let done = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let request = request.clone();
            async move { erp.receive_stock(request).await.map(Response::into_inner) }
        })
        .await;
        self.record(
            Op::ReceiveStock {
                sku,
                quantity,
                reference,
            },
            &done,
            |r| Ack {
                id: r
                    .movements
                    .first()
                    .map(|m| m.id.to_string())
                    .unwrap_or_default(),
                ..Ack::default()
            },
        );
        true
    }

    /// A WMS count through the integration topic, on the count sku.
    async fn count(&mut self) -> bool {
        let event_id = uuid::Uuid::now_v7().to_string();
        let quantity = self.rng.random_range(20..80);
        let event = json!({
            "id": event_id, "type": "integration.stock.counted",
            "schema_version": 1, "source": "wms", "aggregate_type": "stock",
            "aggregate_id": COUNT_SKU, "aggregate_version": 1,
            "occurred_at": "2026-11-26T10:00:00Z",
            "data": {"sku": COUNT_SKU, "warehouse": WAREHOUSE, "counted_quantity": quantity}
        });
        let sent = self
            .producer
            .send(
                topics::INTEGRATION_STOCK,
                Some(COUNT_SKU),
                event.to_string().as_bytes(),
                &[],
            )
            .await;
        self.record_send(Op::CountStock { event_id, quantity }, sent);
        true
    }

    /// A bad integrator message, on purpose (each one different): it must end in the
    /// dead-letter topic.
    async fn bad_message(&mut self, n: usize) -> bool {
        let payload = format!("{{not json {}-{n}", self.seed);
        let sent = self
            .producer
            .send(
                topics::INTEGRATION_ORDERS,
                Some("bad"),
                payload.as_bytes(),
                &[],
            )
            .await;
        self.record_send(Op::BadMessage { payload }, sent);
        true
    }

    fn record_send(&self, op: Op, sent: anyhow::Result<(i32, i64)>) {
        let told = match sent {
            Ok(position) => Told::Acknowledged(Ack {
                position,
                ..Ack::default()
            }),
            // The producer gave up (its own retries are idempotent): the record may be there.
            Err(error) => Told::Unknown(error.to_string()),
        };
        self.ledger.record(op, told, 1, false);
    }

    async fn payment(&mut self, n: usize) -> bool {
        let customer = self.customers[self.rng.random_range(0..self.customers.len())]
            .id
            .clone();
        let amount = self.rng.random_range(1..500);
        let reference = format!("pay-{}-{n}", self.seed);
        let request = erp::RecordPaymentRequest {
            request_id: request_id(),
            customer_id: customer.clone(),
            amount: eur(amount),
            reference: reference.clone(),
        };
        let erp = self.erp.clone();
        // Idempotent by (customer, reference): a repeat with the same amount changes nothing.
        let done = call(Retry::Always, self.policy, || {
            let mut erp = erp.clone();
            let request = request.clone();
            async move { erp.record_payment(request).await.map(Response::into_inner) }
        })
        .await;
        self.record(
            Op::RecordPayment {
                customer,
                amount,
                reference,
            },
            &done,
            |f| Ack {
                version: f.version,
                ..Ack::default()
            },
        );
        true
    }
}

/// What a read after a refused retry showed.
enum ReadBack {
    /// This client's change is there: the ambiguous attempt applied it.
    Applied(Ack),
    NotApplied,
    Failed,
}
