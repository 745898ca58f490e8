//! SQL for customers. Functions take a connection so callers decide the transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use tandem_proto::events::CustomerStatus;

use super::model::{Customer, Profile};

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
        },
        version,
        create_time,
        update_time,
    })
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    profile: &Profile,
) -> Result<Customer, sqlx::Error> {
    let row: CustomerRow = sqlx::query_as(&format!(
        "INSERT INTO customers (id, display_name, email, phone, tax_id, status, external_ref, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&profile.display_name)
    .bind(&profile.email)
    .bind(&profile.phone)
    .bind(&profile.tax_id)
    .bind(profile.status.as_str())
    .bind(&profile.external_ref)
    .fetch_one(conn)
    .await?;
    from_row(row)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<CustomerRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(from_row).transpose()
}

/// Reads the customer and locks its row until the transaction ends.
pub async fn get_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<CustomerRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customers WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(from_row).transpose()
}

/// Writes `profile` and bumps the version by one.
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    profile: &Profile,
) -> Result<Customer, sqlx::Error> {
    let row: CustomerRow = sqlx::query_as(&format!(
        "UPDATE customers SET display_name = $2, email = $3, phone = $4, tax_id = $5, \
         status = $6, external_ref = $7, version = version + 1, update_time = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&profile.display_name)
    .bind(&profile.email)
    .bind(&profile.phone)
    .bind(&profile.tax_id)
    .bind(profile.status.as_str())
    .bind(&profile.external_ref)
    .fetch_one(conn)
    .await?;
    from_row(row)
}
