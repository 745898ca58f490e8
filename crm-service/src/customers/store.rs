//! SQL for customers, their contacts and addresses. Functions take a connection so callers
//! decide the transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, postgres::PgArguments, query::QueryAs};
use tandem_common::{outbox::EventRow, paging::Page};
use tandem_proto::events::{CustomerStatus, crm::AddressKind};
use uuid::Uuid;

use super::model::{Address, Contact, Customer, CustomerFilter, Profile};
use crate::finance;

type CustomerRow = (
    Uuid,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, display_name, email, phone, tax_id, status, external_ref, version, \
                       create_time, update_time";

fn from_row(row: CustomerRow) -> Result<Customer, sqlx::Error> {
    let (
        id,
        display_name,
        email,
        phone,
        tax_id,
        status,
        external_ref,
        version,
        create_time,
        update_time,
    ) = row;
    let status = CustomerStatus::parse(&status).ok_or_else(|| {
        sqlx::Error::Decode(format!("customer {id} has unknown status {status:?}").into())
    })?;
    Ok(Customer {
        id,
        profile: Profile {
            display_name,
            email,
            phone,
            tax_id,
            status,
            external_ref,
            contacts: Vec::new(),
            addresses: Vec::new(),
        },
        version,
        create_time,
        update_time,
        finance: None,
    })
}

/// Binds `$1` to `$7` of an insert or update of the customer row: the id, then the profile's
/// columns in table order.
fn bind_profile<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    id: Uuid,
    profile: &'q Profile,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(id)
        .bind(&profile.display_name)
        .bind(&profile.email)
        .bind(&profile.phone)
        .bind(&profile.tax_id)
        .bind(profile.status.as_str())
        .bind(&profile.external_ref)
}

/// The customer's contacts and addresses as data-modifying `WITH` items, from parameters `$8`
/// to `$18` ([`bind_lists`]) for customer `$1`. With `replacing`, over lists it already has:
/// each position is written over and the positions beyond the new lists are deleted (the
/// statement's items all see the rows as they were before it, so a delete and an insert of
/// the same position would collide).
fn lists_cte(replacing: bool) -> String {
    let (contacts_conflict, addresses_conflict, leftovers) = if replacing {
        (
            " ON CONFLICT (customer_id, position) DO UPDATE SET name = EXCLUDED.name, \
             email = EXCLUDED.email, phone = EXCLUDED.phone, role = EXCLUDED.role",
            " ON CONFLICT (customer_id, position) DO UPDATE SET kind = EXCLUDED.kind, \
             line1 = EXCLUDED.line1, line2 = EXCLUDED.line2, city = EXCLUDED.city, \
             postal_code = EXCLUDED.postal_code, region = EXCLUDED.region, \
             country_code = EXCLUDED.country_code",
            ", contacts_beyond AS ( \
                 DELETE FROM customer_contacts \
                 WHERE customer_id = $1 AND position >= cardinality($8::text[])), \
             addresses_beyond AS ( \
                 DELETE FROM customer_addresses \
                 WHERE customer_id = $1 AND position >= cardinality($12::text[]))",
        )
    } else {
        ("", "", "")
    };
    format!(
        "contacts AS ( \
             INSERT INTO customer_contacts (customer_id, position, name, email, phone, role) \
             SELECT $1, ordinality - 1, name, email, phone, role \
             FROM UNNEST($8::text[], $9::text[], $10::text[], $11::text[]) \
                  WITH ORDINALITY AS c(name, email, phone, role, ordinality){contacts_conflict}), \
         addresses AS ( \
             INSERT INTO customer_addresses \
                 (customer_id, position, kind, line1, line2, city, postal_code, region, country_code) \
             SELECT $1, ordinality - 1, kind, line1, line2, city, postal_code, region, country_code \
             FROM UNNEST($12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
                         $17::text[], $18::text[]) \
                  WITH ORDINALITY AS a(kind, line1, line2, city, postal_code, region, \
                                       country_code, ordinality){addresses_conflict}){leftovers}"
    )
}

/// Binds `$8` to `$18` of [`lists_cte`]: the contacts' and the addresses' columns as arrays.
fn bind_lists<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    profile: &'q Profile,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    let (contacts, addresses) = (&profile.contacts, &profile.addresses);
    let contact = |column: fn(&'q Contact) -> Option<&'q str>| -> Vec<Option<&'q str>> {
        contacts.iter().map(column).collect()
    };
    let address = |column: fn(&'q Address) -> Option<&'q str>| -> Vec<Option<&'q str>> {
        addresses.iter().map(column).collect()
    };
    query
        .bind(contact(|c| Some(c.name.as_str())))
        .bind(contact(|c| c.email.as_deref()))
        .bind(contact(|c| c.phone.as_deref()))
        .bind(contact(|c| c.role.as_deref()))
        .bind(address(|a| Some(a.kind.as_str())))
        .bind(address(|a| Some(a.line1.as_str())))
        .bind(address(|a| a.line2.as_deref()))
        .bind(address(|a| Some(a.city.as_str())))
        .bind(address(|a| a.postal_code.as_deref()))
        .bind(address(|a| a.region.as_deref()))
        .bind(address(|a| Some(a.country_code.as_str())))
}

/// Inserts the customer with version 1, with its contacts and addresses, and with `event`'s
/// outbox row when given: all in one statement, so on a connection outside a transaction
/// they commit together in one round trip.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    profile: &Profile,
    event: Option<EventRow>,
) -> Result<Customer, sqlx::Error> {
    // The lists' rows come first, the customer's last: the foreign keys are checked at the
    // statement's end, when all are there.
    let outbox_row = match event {
        Some(_) => format!(", {}", EventRow::cte(19)),
        None => String::new(),
    };
    let sql = format!(
        "WITH {}{outbox_row} \
         INSERT INTO customers (id, display_name, email, phone, tax_id, status, external_ref, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1) RETURNING {COLUMNS}",
        lists_cte(false)
    );
    let query = bind_lists(bind_profile(sqlx::query_as(&sql), id, profile), profile);
    written(conn, query, event, profile).await
}

/// Runs an insert or update of the customer with `event`'s row bound after the statement's
/// own parameters, and answers the customer it returned with `profile`'s lists.
async fn written(
    conn: &mut PgConnection,
    query: QueryAs<'_, Postgres, CustomerRow, PgArguments>,
    event: Option<EventRow>,
    profile: &Profile,
) -> Result<Customer, sqlx::Error> {
    let query = match event {
        Some(event) => event.bind(query),
        None => query,
    };
    let row = query.fetch_one(&mut *conn).await?;
    let mut customer = from_row(row)?;
    customer.profile.contacts = profile.contacts.clone();
    customer.profile.addresses = profile.addresses.clone();
    Ok(customer)
}

pub(crate) async fn get(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<CustomerRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    complete_one(conn, row).await
}

/// Reads the customer and locks its row until the transaction ends.
pub(crate) async fn get_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<CustomerRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customers WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    complete_one(conn, row).await
}

/// The status of a customer, locking its row against changes (`FOR SHARE`) until the
/// transaction ends, so an order cannot be placed while the customer is being archived.
pub(crate) async fn status_for_share(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<CustomerStatus>, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM customers WHERE id = $1 FOR SHARE")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    status
        .map(|s| {
            CustomerStatus::parse(&s).ok_or_else(|| {
                sqlx::Error::Decode(format!("customer {id} has unknown status {s:?}").into())
            })
        })
        .transpose()
}

/// Writes `profile` (with its lists) at `version`, with `event`'s outbox row when given: one
/// statement. The answer has no finance view (the caller has it from its locked read).
pub(crate) async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    profile: &Profile,
    version: i64,
    event: Option<EventRow>,
) -> Result<Customer, sqlx::Error> {
    let outbox_row = match event {
        Some(_) => format!(", {}", EventRow::cte(20)),
        None => String::new(),
    };
    let sql = format!(
        "WITH {}{outbox_row} \
         UPDATE customers SET display_name = $2, email = $3, phone = $4, tax_id = $5, \
             status = $6, external_ref = $7, version = $19, update_time = now() \
         WHERE id = $1 RETURNING {COLUMNS}",
        lists_cte(true)
    );
    let query = bind_lists(bind_profile(sqlx::query_as(&sql), id, profile), profile).bind(version);
    written(conn, query, event, profile).await
}

/// One page of customers in id (creation) order.
pub(crate) async fn list(
    conn: &mut PgConnection,
    filter: &CustomerFilter,
    page: &Page<Uuid>,
) -> Result<Vec<Customer>, sqlx::Error> {
    let name_pattern = filter
        .display_name_contains
        .as_deref()
        .map(|text| format!("%{}%", escape_like(text)));
    let rows: Vec<CustomerRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customers \
         WHERE ($1::uuid IS NULL OR id > $1) \
           AND ($2::text IS NULL OR display_name ILIKE $2) \
           AND ($3::text IS NULL OR lower(email) = lower($3)) \
           AND ($4::text IS NULL OR status = $4) \
           AND ($6::text IS NULL OR external_ref = $6) \
         ORDER BY id LIMIT $5"
    ))
    .bind(page.after)
    .bind(name_pattern)
    .bind(&filter.email)
    .bind(filter.status.map(CustomerStatus::as_str))
    .bind(page.fetch_limit())
    .bind(&filter.external_ref)
    .fetch_all(&mut *conn)
    .await?;
    let mut customers = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    complete(conn, &mut customers).await?;
    Ok(customers)
}

/// The id and last applied integration version of the customer with `external_ref`, locking
/// its row until the transaction ends.
pub(crate) async fn lock_by_external_ref(
    conn: &mut PgConnection,
    external_ref: &str,
) -> Result<Option<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, integration_version FROM customers WHERE external_ref = $1 FOR UPDATE",
    )
    .bind(external_ref)
    .fetch_optional(conn)
    .await
}

/// The id and status of the customer with `external_ref`, locked against changes
/// (`FOR SHARE`) until the transaction ends.
pub(crate) async fn status_by_external_ref_for_share(
    conn: &mut PgConnection,
    external_ref: &str,
) -> Result<Option<(Uuid, CustomerStatus)>, sqlx::Error> {
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM customers WHERE external_ref = $1 FOR SHARE")
            .bind(external_ref)
            .fetch_optional(conn)
            .await?;
    row.map(|(id, s)| {
        CustomerStatus::parse(&s)
            .map(|status| (id, status))
            .ok_or_else(|| {
                sqlx::Error::Decode(format!("customer {id} has unknown status {s:?}").into())
            })
    })
    .transpose()
}

/// Records the integration version (and its source) last applied to the customer. Not a
/// profile change: the customer's own version stays.
pub(crate) async fn set_integration_version(
    conn: &mut PgConnection,
    id: Uuid,
    source: Option<&str>,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET integration_source = $2, integration_version = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(source)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` customers with ids after `after`, in id order, complete, their rows locked
/// against changes (`FOR SHARE`) until the transaction ends: a consistent batch to republish.
pub(crate) async fn batch_for_share(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Customer>, sqlx::Error> {
    let rows: Vec<CustomerRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customers WHERE ($1::uuid IS NULL OR id > $1) \
         ORDER BY id LIMIT $2 FOR SHARE"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut customers = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    complete(conn, &mut customers).await?;
    Ok(customers)
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

async fn complete_one(
    conn: &mut PgConnection,
    row: Option<CustomerRow>,
) -> Result<Option<Customer>, sqlx::Error> {
    let Some(row) = row else {
        return Ok(None);
    };
    let mut customers = vec![from_row(row)?];
    complete(conn, &mut customers).await?;
    Ok(customers.pop())
}

/// Loads the contacts, addresses and finance view of `customers`, in one query: the lists as
/// JSON arrays (in position order), the finance view joined.
async fn complete(conn: &mut PgConnection, customers: &mut [Customer]) -> Result<(), sqlx::Error> {
    if customers.is_empty() {
        return Ok(());
    }
    type Row = (
        Uuid,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<bool>,
        Option<i64>,
        Option<DateTime<Utc>>,
    );
    // One customer (GetCustomer, every write's answer) by its id, several by an array. Not
    // one statement for both: PostgreSQL plans `unnest($1::uuid[])` for a hundred elements
    // unless it sees the array, so a prepared statement of it is planned again on every call
    // (a third of PostgreSQL's CPU under GetCustomer), while `$1::uuid` keeps its plan.
    let sql = |ids: &str| {
        format!(
            "SELECT c.id, \
                 COALESCE((SELECT json_agg(json_build_array(name, email, phone, role) ORDER BY position) \
                           FROM customer_contacts WHERE customer_id = c.id), '[]')::text, \
                 COALESCE((SELECT json_agg(json_build_array(kind, line1, line2, city, postal_code, \
                                                            region, country_code) ORDER BY position) \
                           FROM customer_addresses WHERE customer_id = c.id), '[]')::text, \
                 {} \
             FROM {ids} LEFT JOIN customer_finance f ON f.customer_id = c.id",
            finance::store::JOINED_COLUMNS
        )
    };
    let rows: Vec<Row> = match &*customers {
        [one] => {
            sqlx::query_as(&sql("(SELECT $1::uuid AS id) AS c"))
                .bind(one.id)
                .fetch_all(&mut *conn)
                .await?
        }
        many => {
            let ids: Vec<Uuid> = many.iter().map(|c| c.id).collect();
            sqlx::query_as(&sql("unnest($1::uuid[]) AS c(id)"))
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    type Loaded = (Vec<Contact>, Vec<Address>, Option<finance::Finance>);
    let mut loaded: HashMap<Uuid, Loaded> = HashMap::with_capacity(rows.len());
    for (id, contacts, addresses, currency, limit, balance, terms, hold, version, updated) in rows {
        let decode = |what: &str, error: serde_json::Error| {
            sqlx::Error::Decode(format!("{what} of customer {id}: {error}").into())
        };
        type ContactJson = (String, Option<String>, Option<String>, Option<String>);
        let contacts: Vec<ContactJson> =
            serde_json::from_str(&contacts).map_err(|e| decode("contacts", e))?;
        type AddressJson = (
            AddressKind,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            String,
        );
        let addresses: Vec<AddressJson> =
            serde_json::from_str(&addresses).map_err(|e| decode("addresses", e))?;
        let finance =
            finance::store::from_joined((currency, limit, balance, terms, hold, version, updated));
        loaded.insert(
            id,
            (
                contacts
                    .into_iter()
                    .map(|(name, email, phone, role)| Contact {
                        name,
                        email,
                        phone,
                        role,
                    })
                    .collect(),
                addresses
                    .into_iter()
                    .map(
                        |(kind, line1, line2, city, postal_code, region, country_code)| Address {
                            kind,
                            line1,
                            line2,
                            city,
                            postal_code,
                            region,
                            country_code,
                        },
                    )
                    .collect(),
                finance,
            ),
        );
    }
    for customer in customers {
        if let Some((contacts, addresses, finance)) = loaded.remove(&customer.id) {
            customer.profile.contacts = contacts;
            customer.profile.addresses = addresses;
            customer.finance = finance;
        }
    }
    Ok(())
}
