//! SQL of the resync after a restore: read a version under the row lock, set it.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    finance::{self, model::Finance},
    products::{self, Product},
};

/// The product's version, its row (the sku lock) locked until the transaction ends.
pub(crate) async fn lock_product_version(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM products WHERE sku = $1 FOR UPDATE")
        .bind(sku)
        .fetch_optional(conn)
        .await
}

/// The sku's stock version, its product row (the sku lock) locked until the transaction ends.
pub(crate) async fn lock_stock_version(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT stock_version FROM products WHERE sku = $1 FOR UPDATE")
        .bind(sku)
        .fetch_optional(conn)
        .await
}

/// Sets the product's version and returns the product as it is now.
pub(crate) async fn set_product_version(
    conn: &mut PgConnection,
    sku: &str,
    version: i64,
) -> Result<Product, sqlx::Error> {
    sqlx::query("UPDATE products SET version = $2, update_time = now() WHERE sku = $1")
        .bind(sku)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    products::store::get(conn, sku, false)
        .await?
        .ok_or_else(|| sqlx::Error::Protocol(format!("product {sku} vanished in its transaction")))
}

pub(crate) async fn set_stock_version(
    conn: &mut PgConnection,
    sku: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE products SET stock_version = $2 WHERE sku = $1")
        .bind(sku)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// The id and version of the order of `crm_order_id`, its row locked until the transaction
/// ends.
pub(crate) async fn lock_order_version(
    conn: &mut PgConnection,
    crm_order_id: &str,
) -> Result<Option<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, version FROM sales_orders WHERE crm_order_id = $1 FOR UPDATE")
        .bind(crm_order_id)
        .fetch_optional(conn)
        .await
}

pub(crate) async fn set_order_version(
    conn: &mut PgConnection,
    id: Uuid,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sales_orders SET version = $2, update_time = now() WHERE id = $1")
        .bind(id)
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets the version of the customer's finance row (locked by the caller) and returns it.
pub(crate) async fn set_finance_version(
    conn: &mut PgConnection,
    customer_id: Uuid,
    version: i64,
) -> Result<Finance, sqlx::Error> {
    sqlx::query(
        "UPDATE customer_finance SET version = $2, update_time = now() WHERE customer_id = $1",
    )
    .bind(customer_id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    finance::store::get(conn, customer_id)
        .await?
        .ok_or_else(|| {
            sqlx::Error::Protocol(format!(
                "finance of {customer_id} vanished in its transaction"
            ))
        })
}

/// Moves the invoice numbering up so the next number is above `floor`; `true` when it had to.
pub(crate) async fn advance_invoice_numbers(
    conn: &mut PgConnection,
    floor: i64,
) -> Result<bool, sqlx::Error> {
    // The last number issued (0 before the first).
    let (last, called): (i64, bool) =
        sqlx::query_as("SELECT last_value, is_called FROM invoice_numbers")
            .fetch_one(&mut *conn)
            .await?;
    let issued = if called { last } else { last - 1 };
    if issued >= floor {
        return Ok(false);
    }
    // nextval, not setval: the service's runtime role may use the sequence, not alter it.
    sqlx::query("SELECT max(nextval('invoice_numbers')) FROM generate_series(1, $1::bigint)")
        .bind(floor - issued)
        .execute(conn)
        .await?;
    Ok(true)
}
