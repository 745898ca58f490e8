//! SQL for customer finance and payments.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Finance, FinanceDefaults};

type Row = (Uuid, i64, String, i32, i64, bool, i64, DateTime<Utc>);

const COLUMNS: &str = "customer_id, credit_limit_minor, currency, payment_terms_days, \
                       open_balance_minor, credit_hold, version, update_time";

fn from_row(row: Row) -> Finance {
    let (customer_id, limit, currency, terms, open, hold, version, update_time) = row;
    Finance {
        customer_id,
        credit_limit_minor: limit,
        currency,
        payment_terms_days: terms,
        open_balance_minor: open,
        credit_hold: hold,
        version,
        update_time,
    }
}

pub(crate) async fn get(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<Finance>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customer_finance WHERE customer_id = $1"
    ))
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(from_row))
}

/// The finance rows of `customer_ids` that exist.
pub(crate) async fn get_many(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
) -> Result<Vec<Finance>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customer_finance WHERE customer_id = ANY($1)"
    ))
    .bind(customer_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Finance rows that changed at least once (version > 0) after customer id `after`, ordered
/// by customer id, at most `limit`, share-locked until the transaction ends (writers wait, so
/// what is read stays current until commit).
pub(crate) async fn share_changed(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Finance>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customer_finance \
         WHERE version > 0 AND ($1::uuid IS NULL OR customer_id > $1) \
         ORDER BY customer_id LIMIT $2 FOR SHARE"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// The finance row of a mirrored customer, created with `defaults` if missing, locked until
/// the transaction ends.
pub(crate) async fn lock_or_create(
    conn: &mut PgConnection,
    customer_id: Uuid,
    defaults: &FinanceDefaults,
) -> Result<Finance, sqlx::Error> {
    sqlx::query(
        "INSERT INTO customer_finance (customer_id, credit_limit_minor, currency, \
                                       payment_terms_days) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(customer_id)
    .bind(defaults.credit_limit_minor)
    .bind(&defaults.currency)
    .bind(defaults.payment_terms_days)
    .execute(&mut *conn)
    .await?;
    let row: Row = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customer_finance WHERE customer_id = $1 FOR UPDATE"
    ))
    .bind(customer_id)
    .fetch_one(conn)
    .await?;
    Ok(from_row(row))
}

/// Writes every field of `finance` and bumps the version by one.
pub(crate) async fn update(
    conn: &mut PgConnection,
    finance: &Finance,
) -> Result<Finance, sqlx::Error> {
    let row: Row = sqlx::query_as(&format!(
        "UPDATE customer_finance SET credit_limit_minor = $2, currency = $3, \
                payment_terms_days = $4, open_balance_minor = $5, credit_hold = $6, \
                version = version + 1, update_time = now() \
         WHERE customer_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(finance.customer_id)
    .bind(finance.credit_limit_minor)
    .bind(&finance.currency)
    .bind(finance.payment_terms_days)
    .bind(finance.open_balance_minor)
    .bind(finance.credit_hold)
    .fetch_one(conn)
    .await?;
    Ok(from_row(row))
}

/// Total of the customer's accepted, not yet invoiced orders.
pub(crate) async fn uninvoiced_total(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(total_minor), 0)::bigint FROM sales_orders \
         WHERE customer_id = $1 AND status IN ('RESERVED', 'BACKORDERED', 'SHIPPED')",
    )
    .bind(customer_id)
    .fetch_one(conn)
    .await
}

/// Totals of the accepted, not yet invoiced orders of `customer_ids` (those with any).
pub(crate) async fn uninvoiced_totals(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, COALESCE(SUM(total_minor), 0)::bigint FROM sales_orders \
         WHERE customer_id = ANY($1) AND status IN ('RESERVED', 'BACKORDERED', 'SHIPPED') \
         GROUP BY customer_id",
    )
    .bind(customer_ids)
    .fetch_all(conn)
    .await
}

/// The amount and currency of the payment `reference` of a customer, if recorded.
pub(crate) async fn payment(
    conn: &mut PgConnection,
    customer_id: Uuid,
    reference: &str,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT amount_minor, currency FROM payments WHERE customer_id = $1 AND reference = $2",
    )
    .bind(customer_id)
    .bind(reference)
    .fetch_optional(conn)
    .await
}

pub(crate) async fn insert_payment(
    conn: &mut PgConnection,
    customer_id: Uuid,
    reference: &str,
    amount_minor: i64,
    currency: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (id, customer_id, reference, amount_minor, currency) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(customer_id)
    .bind(reference)
    .bind(amount_minor)
    .bind(currency)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn customer_exists(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1)")
        .bind(customer_id)
        .fetch_one(conn)
        .await
}
