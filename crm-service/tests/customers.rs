//! Customers over real gRPC, a real PostgreSQL database of their own and a real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use crm_service::customers;
use support::{Crm, customer, mask, money, violated_fields};
use tandem_proto::{
    crm::v1::{
        Address, AddressKind, ApplyCustomerFinanceRequest, ArchiveCustomerRequest, Contact,
        CreateCustomerRequest, Customer, CustomerStatus, GetCustomerRequest, ListCustomersRequest,
        UpdateCustomerRequest,
    },
    events::{CustomerStatus as EventStatus, topics},
};
use tandem_tests::{assert_valid_event, read_topic};
use tonic::Code;
use tonic_types::StatusExt;

fn ada() -> Customer {
    Customer {
        display_name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        phone: "+44 20 7946 0958".into(),
        external_ref: "shop:ada".into(),
        ..Customer::default()
    }
}

#[tokio::test]
async fn create_then_get_returns_the_stored_customer_and_publishes_it() {
    let mut crm = Crm::start().await;
    let created = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(ada()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.version, 1);
    assert_eq!(created.status(), CustomerStatus::Active);
    assert_eq!(created.display_name, "Ada Lovelace");

    let fetched = crm.customer(&created.id).await;
    assert_eq!(fetched, created);

    let records = read_topic(
        &crm.broker.brokers,
        topics::CRM_CUSTOMERS,
        1,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.key.as_deref(), Some(created.id.as_str()));
    let event = &record.payload;
    assert_valid_event(event);
    assert_eq!(event["type"], "crm.customer.upserted");
    assert_eq!(event["schema_version"], 1);
    assert_eq!(event["source"], "crm");
    assert_eq!(event["aggregate_type"], "customer");
    assert_eq!(event["aggregate_id"], created.id);
    assert_eq!(event["aggregate_version"], 1);
    assert_eq!(event["data"]["email"], "ada@example.com");
    assert_eq!(event["data"]["tax_id"], serde_json::Value::Null);
    assert_eq!(event["data"]["status"], "ACTIVE");
    crm.stop().await;
}

#[tokio::test]
async fn invalid_input_names_every_field_and_writes_nothing() {
    let mut crm = Crm::start().await;
    let status = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(Customer {
                display_name: String::new(),
                email: "ada@".into(),
                ..ada()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["customer.display_name", "customer.email"]);

    let missing = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);

    let not_a_uuid = crm
        .client
        .get_customer(GetCustomerRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(not_a_uuid.code(), Code::InvalidArgument);
    let unknown = crm
        .client
        .get_customer(GetCustomerRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    assert_eq!(crm.count("customers").await, 0);
    assert_eq!(crm.count("outbox").await, 0);
    crm.stop().await;
}

#[tokio::test]
async fn updates_bump_the_version_and_stale_writes_are_aborted() {
    let mut crm = Crm::start().await;
    let created = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(ada()),
        })
        .await
        .unwrap()
        .into_inner();

    let updated = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: created.id.clone(),
                email: "ada@analytical.engine".into(),
                version: 1,
                ..Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.email, "ada@analytical.engine");
    assert_eq!(updated.display_name, "Ada Lovelace", "unmasked field kept");

    let stale = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: created.id.clone(),
                display_name: "Stale".into(),
                version: 1,
                ..Customer::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let duplicate_ref = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(Customer {
                email: "other@example.com".into(),
                ..ada()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate_ref.code(), Code::AlreadyExists);

    let current = crm.customer(&created.id).await;
    assert_eq!(current, updated);

    let records = read_topic(
        &crm.broker.brokers,
        topics::CRM_CUSTOMERS,
        2,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let versions: Vec<i64> = records
        .iter()
        .map(|r| r.payload["aggregate_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "one event per committed change, in order");
    crm.stop().await;
}

#[tokio::test]
async fn a_rolled_back_transaction_publishes_nothing() {
    let crm = Crm::start().await;
    let profile = |name: &str| customers::Profile {
        display_name: name.into(),
        email: format!("{}@example.com", name.to_lowercase()),
        phone: None,
        tax_id: None,
        status: EventStatus::Active,
        external_ref: None,
        contacts: vec![customers::Contact {
            name: "Someone".into(),
            email: None,
            phone: None,
            role: None,
        }],
        addresses: Vec::new(),
    };

    // A waker of its own: the relay under test is never woken, it must poll.
    let outbox = tandem_common::outbox::OutboxWaker::default();
    let db = tandem_common::pool::Db::new(crm.pool.clone(), Duration::from_secs(1));
    let mut tx = outbox.begin(&db).await.unwrap();
    let rolled_back = customers::insert_with_event(&mut tx, profile("Ghost"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = outbox.begin(&db).await.unwrap();
    let committed = customers::insert_with_event(&mut tx, profile("Real"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The relay finds the committed row by polling (nothing woke it).
    let records = read_topic(
        &crm.broker.brokers,
        topics::CRM_CUSTOMERS,
        1,
        Duration::from_millis(1_000),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = records.iter().filter_map(|r| r.key.as_deref()).collect();
    assert_eq!(ids, [committed.id.to_string().as_str()]);
    assert!(!ids.contains(&rolled_back.id.to_string().as_str()));
    assert_eq!(crm.count("customers").await, 1);
    assert_eq!(
        crm.count("customer_contacts").await,
        1,
        "the ghost's contact rolled back"
    );
    assert_eq!(crm.count("outbox").await, 1);
    crm.stop().await;
}

fn billing(country: &str) -> Address {
    Address {
        kind: AddressKind::Billing as i32,
        line1: "Unter den Linden 1".into(),
        city: "Berlin".into(),
        postal_code: "10117".into(),
        country_code: country.into(),
        ..Address::default()
    }
}

fn shipping() -> Address {
    Address {
        kind: AddressKind::Shipping as i32,
        line1: "Dock 4".into(),
        line2: "Gate B".into(),
        city: "Hamburg".into(),
        country_code: "de".into(),
        ..Address::default()
    }
}

/// UpdateCustomer of both lists at `version`.
async fn replace_lists(
    crm: &mut Crm,
    id: &str,
    version: i64,
    contacts: Vec<Contact>,
    addresses: Vec<Address>,
) -> Customer {
    crm.client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: id.to_owned(),
                contacts,
                addresses,
                version,
                ..Customer::default()
            }),
            update_mask: mask(&["contacts", "addresses"]),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn contacts_and_addresses_are_stored_validated_replaced_and_published() {
    let mut crm = Crm::start().await;
    let created = crm
        .create_customer(Customer {
            contacts: vec![
                Contact {
                    name: "Charles Babbage".into(),
                    email: "charles@example.com".into(),
                    role: "engineering".into(),
                    ..Contact::default()
                },
                Contact {
                    name: "Mary Somerville".into(),
                    phone: "+44 20 1234".into(),
                    ..Contact::default()
                },
            ],
            addresses: vec![billing("DE"), shipping()],
            ..ada()
        })
        .await;
    assert_eq!(created.contacts.len(), 2);
    assert_eq!(created.contacts[1].name, "Mary Somerville");
    assert_eq!(created.addresses.len(), 2);
    assert_eq!(created.addresses[1].country_code, "DE", "upper-cased");
    assert_eq!(created.addresses[1].line2, "Gate B");
    let fetched = crm.customer(&created.id).await;
    assert_eq!(fetched, created);
    assert_eq!(crm.count("customer_contacts").await, 2);
    assert_eq!(crm.count("customer_addresses").await, 2);

    // Bad entries are named by position, and nothing is written.
    let refused = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(Customer {
                external_ref: "shop:other".into(),
                contacts: vec![Contact {
                    email: "nope".into(),
                    ..Contact::default()
                }],
                addresses: vec![billing("XX"), billing("DE")],
                ..ada()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        [
            "customer.contacts[0].name",
            "customer.contacts[0].email",
            "customer.addresses[0].country_code",
            "customer.addresses[1].kind",
        ]
    );
    let no_kind = crm
        .client
        .create_customer(CreateCustomerRequest {
            request_id: String::new(),
            customer: Some(Customer {
                external_ref: "shop:other".into(),
                addresses: vec![Address {
                    kind: AddressKind::Unspecified as i32,
                    ..billing("DE")
                }],
                ..ada()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_kind), ["customer.addresses[0].kind"]);
    assert_eq!(crm.count("customers").await, 1);

    // Updating the addresses replaces the list; the contacts stay.
    let updated = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: created.id.clone(),
                addresses: vec![shipping()],
                version: 1,
                ..Customer::default()
            }),
            update_mask: mask(&["addresses"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.addresses.len(), 1);
    assert_eq!(updated.addresses[0].kind(), AddressKind::Shipping);
    assert_eq!(updated.contacts, created.contacts);
    assert_eq!(crm.count("customer_addresses").await, 1);

    // Growing a list and reordering another: every position written, none left over.
    let grown = replace_lists(
        &mut crm,
        &created.id,
        2,
        vec![
            created.contacts[1].clone(),
            created.contacts[0].clone(),
            Contact {
                name: "Grace Hopper".into(),
                role: "navy".into(),
                ..Contact::default()
            },
        ],
        vec![
            billing("FR"),
            shipping(),
            Address {
                city: "Bremen".into(),
                ..shipping()
            },
        ],
    )
    .await;
    assert_eq!(grown.version, 3);
    let names: Vec<&str> = grown.contacts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["Mary Somerville", "Charles Babbage", "Grace Hopper"]
    );
    assert_eq!(grown.contacts[0].phone, "+44 20 1234");
    assert_eq!(
        grown.contacts[1].phone, "",
        "a position written over keeps nothing of before"
    );
    let cities: Vec<&str> = grown.addresses.iter().map(|a| a.city.as_str()).collect();
    assert_eq!(cities, ["Berlin", "Hamburg", "Bremen"]);
    assert_eq!(grown.addresses[0].country_code, "FR");
    assert_eq!(
        grown.addresses[0].line2, "",
        "a position written over keeps nothing of before"
    );
    let fetched = crm.customer(&created.id).await;
    assert_eq!(fetched, grown, "the answer is what is stored");
    assert_eq!(crm.count("customer_contacts").await, 3);
    assert_eq!(crm.count("customer_addresses").await, 3);

    // Shrinking both to nothing.
    let emptied = replace_lists(&mut crm, &created.id, 3, vec![], vec![]).await;
    assert_eq!(emptied.version, 4);
    assert!(emptied.contacts.is_empty() && emptied.addresses.is_empty());
    assert_eq!(crm.count("customer_contacts").await, 0);
    assert_eq!(crm.count("customer_addresses").await, 0);

    let records = crm.events(topics::CRM_CUSTOMERS, 4).await;
    assert_eq!(records.len(), 4);
    let first = &records[0].payload["data"];
    assert_eq!(first["contacts"][0]["name"], "Charles Babbage");
    assert_eq!(first["contacts"][0]["phone"], serde_json::Value::Null);
    assert_eq!(first["addresses"][0]["kind"], "BILLING");
    assert_eq!(first["addresses"][1]["country_code"], "DE");
    let second = &records[1].payload["data"];
    assert_eq!(second["addresses"].as_array().unwrap().len(), 1);
    assert_eq!(second["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(records[1].payload["aggregate_version"], 2);
    let third = &records[2].payload["data"];
    assert_eq!(records[2].payload["aggregate_version"], 3);
    assert_eq!(third["contacts"][2]["name"], "Grace Hopper");
    assert_eq!(third["addresses"][0]["country_code"], "FR");
    assert_eq!(records[3].payload["aggregate_version"], 4);
    assert_eq!(
        records[3].payload["data"]["contacts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    crm.stop().await;
}

#[tokio::test]
async fn listing_pages_through_every_customer_in_a_stable_order_with_filters() {
    let mut crm = Crm::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let created = crm
            .create_customer(customer(&format!(
                "Firm {i} {}",
                if i % 2 == 0 { "Even" } else { "Odd" }
            )))
            .await;
        ids.push(created.id);
    }
    // Archive one, so the status filter has something to tell apart.
    crm.client
        .archive_customer(ArchiveCustomerRequest {
            id: ids[1].clone(),
            version: 0,
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = crm
            .client
            .list_customers(ListCustomersRequest {
                page_size: 3,
                page_token: token.clone(),
                ..ListCustomersRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.customers.len() <= 3);
        seen.extend(page.customers.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every customer once, in creation order");

    let list = |request: ListCustomersRequest| {
        let mut client = crm.client.clone();
        async move {
            client
                .list_customers(request)
                .await
                .unwrap()
                .into_inner()
                .customers
                .into_iter()
                .map(|c| c.display_name)
                .collect::<Vec<_>>()
        }
    };
    let odd = list(ListCustomersRequest {
        display_name_contains: "odd".into(),
        ..ListCustomersRequest::default()
    })
    .await;
    assert_eq!(odd, ["Firm 1 Odd", "Firm 3 Odd", "Firm 5 Odd"]);
    let active_odd = list(ListCustomersRequest {
        display_name_contains: "ODD".into(),
        status: CustomerStatus::Active as i32,
        ..ListCustomersRequest::default()
    })
    .await;
    assert_eq!(active_odd, ["Firm 3 Odd", "Firm 5 Odd"]);
    let archived = list(ListCustomersRequest {
        status: CustomerStatus::Archived as i32,
        ..ListCustomersRequest::default()
    })
    .await;
    assert_eq!(archived, ["Firm 1 Odd"]);
    let by_email = list(ListCustomersRequest {
        email: "FIRM.4.EVEN@example.com".into(),
        ..ListCustomersRequest::default()
    })
    .await;
    assert_eq!(by_email, ["Firm 4 Even"]);
    let wildcard = list(ListCustomersRequest {
        display_name_contains: "%".into(),
        ..ListCustomersRequest::default()
    })
    .await;
    assert!(wildcard.is_empty(), "LIKE wildcards are matched literally");

    // A token is bound to its query; garbage and negative sizes are refused.
    let first = crm
        .client
        .list_customers(ListCustomersRequest {
            page_size: 2,
            ..ListCustomersRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let other_query = crm
        .client
        .list_customers(ListCustomersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            status: CustomerStatus::Active as i32,
            ..ListCustomersRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&other_query), ["page_token"]);
    let garbage = crm
        .client
        .list_customers(ListCustomersRequest {
            page_token: "not-a-token".into(),
            ..ListCustomersRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&garbage), ["page_token"]);
    let negative = crm
        .client
        .list_customers(ListCustomersRequest {
            page_size: -1,
            ..ListCustomersRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&negative), ["page_size"]);
    crm.stop().await;
}

#[tokio::test]
async fn archiving_publishes_the_archived_event_once() {
    let mut crm = Crm::start().await;
    let created = crm.create_customer(ada()).await;

    let stale = crm
        .client
        .archive_customer(ArchiveCustomerRequest {
            id: created.id.clone(),
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let archived = crm
        .client
        .archive_customer(ArchiveCustomerRequest {
            id: created.id.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.status(), CustomerStatus::Archived);
    assert_eq!(archived.version, 2);
    assert_eq!(archived.display_name, created.display_name);

    // Again: nothing changes, nothing is published.
    let again = crm
        .client
        .archive_customer(ArchiveCustomerRequest {
            id: created.id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, archived);

    let unknown = crm
        .client
        .archive_customer(ArchiveCustomerRequest {
            id: uuid::Uuid::now_v7().to_string(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_id = crm
        .client
        .archive_customer(ArchiveCustomerRequest {
            id: "x".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_id), ["id"]);

    let records = crm.events(topics::CRM_CUSTOMERS, 2).await;
    let types: Vec<&str> = records
        .iter()
        .map(|r| r.payload["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["crm.customer.upserted", "crm.customer.archived"]);
    let event = &records[1].payload;
    assert_eq!(event["aggregate_version"], 2);
    assert_eq!(event["data"]["status"], "ARCHIVED");
    assert_eq!(event["data"]["email"], "ada@example.com");
    assert_eq!(records[1].key.as_deref(), Some(created.id.as_str()));
    assert_eq!(crm.count("outbox").await, 2);
    crm.stop().await;
}

#[tokio::test]
async fn of_ten_concurrent_updates_at_one_version_exactly_one_wins() {
    let mut crm = Crm::start().await;
    let created = crm.create_customer(ada()).await;
    let calls = (0..10).map(|i| {
        let mut client = crm.client.clone();
        let id = created.id.clone();
        tokio::spawn(async move {
            client
                .update_customer(UpdateCustomerRequest {
                    customer: Some(Customer {
                        id,
                        display_name: format!("Writer {i}"),
                        version: 1,
                        ..Customer::default()
                    }),
                    update_mask: mask(&["display_name"]),
                })
                .await
        })
    });
    let results = futures_join(calls).await;
    let winners: Vec<&Customer> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one write wins");
    assert_eq!(winners[0].version, 2);
    let aborted = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::Aborted))
        .count();
    assert_eq!(aborted, 9, "{results:?}");

    let current = crm.customer(&created.id).await;
    assert_eq!(current.version, 2);
    assert_eq!(current.display_name, winners[0].display_name);
    assert_eq!(
        crm.count("outbox").await,
        2,
        "one event per committed change"
    );
    let records = crm.events(topics::CRM_CUSTOMERS, 2).await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[1].payload["data"]["display_name"],
        current.display_name
    );
    crm.stop().await;
}

async fn futures_join<T: std::fmt::Debug>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<Result<tonic::Response<T>, tonic::Status>>>,
) -> Vec<Result<T, tonic::Status>> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await.unwrap().map(tonic::Response::into_inner));
    }
    results
}

#[tokio::test]
async fn a_failed_write_leaves_neither_row_nor_event() {
    let mut crm = Crm::start().await;
    let first = crm.create_customer(ada()).await;
    let second = crm
        .create_customer(Customer {
            external_ref: "shop:babbage".into(),
            contacts: vec![Contact {
                name: "Kept".into(),
                ..Contact::default()
            }],
            ..customer("Charles Babbage")
        })
        .await;
    // Taking the first customer's external_ref fails at the unique index.
    let duplicate = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: second.id.clone(),
                external_ref: first.external_ref.clone(),
                contacts: Vec::new(),
                ..Customer::default()
            }),
            update_mask: mask(&["external_ref", "contacts"]),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    // The outbox insert, the last write of the transaction, fails: the customer row and the
    // contacts already written in that transaction roll back with it.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN            IF NEW.payload->'data'->>'display_name' = 'Poison' THEN              RAISE EXCEPTION 'outbox refused';            END IF; RETURN NEW; END $$;          CREATE TRIGGER refuse_poison BEFORE INSERT ON outbox            FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&crm.pool)
    .await
    .unwrap();
    let refused = crm
        .client
        .update_customer(UpdateCustomerRequest {
            customer: Some(Customer {
                id: second.id.clone(),
                display_name: "Poison".into(),
                contacts: Vec::new(),
                ..Customer::default()
            }),
            update_mask: mask(&["display_name", "contacts"]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Internal);
    assert!(
        !refused.message().contains("outbox refused"),
        "details are not leaked"
    );
    let unchanged = crm.customer(&second.id).await;
    assert_eq!(unchanged, second);
    // A create without a request id is one statement: refused at its outbox row, it leaves
    // neither the customer nor the contacts and addresses written before it.
    for request_id in ["", "0190d1f4-6c1e-7f3a-9b52-3f1c2d4e5a6b"] {
        let refused = crm
            .client
            .create_customer(CreateCustomerRequest {
                request_id: request_id.into(),
                customer: Some(Customer {
                    contacts: vec![Contact {
                        name: "Lost".into(),
                        ..Contact::default()
                    }],
                    addresses: vec![shipping()],
                    ..customer("Poison")
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::Internal,
            "{request_id:?}: {refused:?}"
        );
    }
    assert_eq!(crm.count("customers").await, 2);
    assert_eq!(crm.count("customer_contacts").await, 1);
    assert_eq!(crm.count("customer_addresses").await, 0);
    assert_eq!(crm.count("outbox").await, 2);
    let records = crm.events(topics::CRM_CUSTOMERS, 2).await;
    assert_eq!(records.len(), 2, "only the two creates were published");
    crm.stop().await;
}

#[tokio::test]
async fn the_finance_view_is_mirrored_version_gated_and_never_published() {
    let mut crm = Crm::start().await;
    let created = crm.create_customer(ada()).await;
    assert_eq!(created.finance, None);
    let apply = |version: i64, limit: i64| ApplyCustomerFinanceRequest {
        customer_id: created.id.clone(),
        credit_limit: Some(money("EUR", limit)),
        payment_terms: "NET30".into(),
        open_balance: Some(money("EUR", 12_500)),
        credit_hold: version > 2,
        source_version: version,
        event_id: uuid::Uuid::now_v7().to_string(),
        repair: false,
    };
    let first = crm
        .sync
        .apply_customer_finance(apply(3, 500_000))
        .await
        .unwrap()
        .into_inner();
    assert!(first.applied);
    assert_eq!(first.current_version, 3);
    for stale in [3, 2] {
        let response = crm
            .sync
            .apply_customer_finance(apply(stale, 1))
            .await
            .unwrap()
            .into_inner();
        assert!(!response.applied, "version {stale} applied over 3");
        assert_eq!(response.current_version, 3);
    }
    let customer = crm.customer(&created.id).await;
    let finance = customer.finance.unwrap();
    assert_eq!(finance.credit_limit, Some(money("EUR", 500_000)));
    assert_eq!(finance.open_balance, Some(money("EUR", 12_500)));
    assert_eq!(finance.payment_terms, "NET30");
    assert!(finance.credit_hold);
    assert_eq!(finance.source_version, 3);
    assert_eq!(customer.version, 1, "the mirror is not a CRM change");

    let newer = crm
        .sync
        .apply_customer_finance(apply(4, 600_000))
        .await
        .unwrap()
        .into_inner();
    assert!(newer.applied);
    assert_eq!(newer.current_version, 4);

    let unknown = crm
        .sync
        .apply_customer_finance(ApplyCustomerFinanceRequest {
            customer_id: uuid::Uuid::now_v7().to_string(),
            ..apply(9, 1)
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad = crm
        .sync
        .apply_customer_finance(ApplyCustomerFinanceRequest {
            credit_limit: Some(money("EURO", -1)),
            open_balance: Some(money("USD", 0)),
            ..apply(0, 1)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad),
        [
            "credit_limit.currency_code",
            "credit_limit.amount_minor",
            "open_balance.currency_code",
            "source_version"
        ]
    );
    assert_eq!(crm.count("outbox").await, 1, "only the create; no echo");
    crm.stop().await;
}
