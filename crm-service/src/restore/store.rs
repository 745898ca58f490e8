//! SQL of the resync after a restore.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    customers::{self, Customer},
    orders::{self, Line, Order},
};

/// Sets the customer's version to `version` (above what the ERP's mirror has seen) and
/// returns the customer as it is now.
pub(crate) async fn set_customer_version(
    conn: &mut PgConnection,
    id: Uuid,
    version: i64,
) -> Result<Customer, sqlx::Error> {
    sqlx::query("UPDATE customers SET version = $2, update_time = now() WHERE id = $1")
        .bind(id)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    customers::store::get(conn, id)
        .await?
        .ok_or_else(|| sqlx::Error::Protocol(format!("customer {id} vanished in its transaction")))
}

/// Inserts an order re-created from the ERP's copy: SUBMITTED, at version 2 (a draft's
/// version 1, then its submission), with `lines`.
pub(crate) async fn insert_submitted_order(
    conn: &mut PgConnection,
    id: Uuid,
    customer_id: Uuid,
    currency: &str,
    lines: &[Line],
) -> Result<Order, sqlx::Error> {
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, currency, version, submit_time) \
         VALUES ($1, $2, 'SUBMITTED', $3, 2, now())",
    )
    .bind(id)
    .bind(customer_id)
    .bind(currency)
    .execute(&mut *conn)
    .await?;
    orders::store::insert_lines(conn, id, lines).await?;
    orders::store::get(conn, id)
        .await?
        .ok_or_else(|| sqlx::Error::Protocol(format!("order {id} vanished in its transaction")))
}
