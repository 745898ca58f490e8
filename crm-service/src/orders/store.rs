//! SQL for sales orders and their lines.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tandem_common::paging::Page;
use tandem_proto::events::crm::OrderStatus;
use uuid::Uuid;

use super::model::{Fulfilment, FulfilmentStatus, FulfilmentUpdate, Line, Order, OrderFilter};

type OrderRow = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    Option<String>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    Option<DateTime<Utc>>,
    Option<String>,
);

const COLUMNS: &str = "id, customer_id, status, currency, cancellation_reason, version, \
                       create_time, update_time, submit_time, fulfilment_status, \
                       rejection_reason, invoice_number, invoice_amount_minor, \
                       fulfilment_version, fulfilment_update_time, external_ref";

fn decode(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

fn from_row(row: OrderRow) -> Result<Order, sqlx::Error> {
    let (
        id,
        customer_id,
        status,
        currency,
        cancellation_reason,
        version,
        create_time,
        update_time,
        submit_time,
        fulfilment_status,
        rejection_reason,
        invoice_number,
        invoice_amount_minor,
        fulfilment_version,
        fulfilment_update_time,
        external_ref,
    ) = row;
    let status = OrderStatus::parse(&status)
        .ok_or_else(|| decode(format!("order {id} has unknown status {status:?}")))?;
    let fulfilment = match (fulfilment_status, fulfilment_update_time) {
        (Some(text), Some(update_time)) => {
            let fulfilment_status = FulfilmentStatus::parse(&text).ok_or_else(|| {
                decode(format!("order {id} has unknown fulfilment status {text:?}"))
            })?;
            Some(Fulfilment {
                update: FulfilmentUpdate {
                    status: fulfilment_status,
                    rejection_reason,
                    invoice_number,
                    invoice_amount: invoice_amount_minor
                        .map(|amount| (currency.clone().unwrap_or_default(), amount)),
                },
                source_version: fulfilment_version,
                update_time,
            })
        }
        _ => None,
    };
    Ok(Order {
        id,
        customer_id,
        status,
        currency,
        lines: Vec::new(),
        cancellation_reason,
        version,
        create_time,
        update_time,
        submit_time,
        fulfilment,
        external_ref,
    })
}

/// Inserts a DRAFT order at version 1 with its lines.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    customer_id: Uuid,
    currency: Option<&str>,
    lines: &[Line],
) -> Result<Order, sqlx::Error> {
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, currency, version) \
         VALUES ($1, $2, 'DRAFT', $3, 1)",
    )
    .bind(id)
    .bind(customer_id)
    .bind(currency)
    .execute(&mut *conn)
    .await?;
    insert_lines(conn, id, lines).await?;
    required(get(conn, id).await?, id)
}

/// Inserts an integrator's order, already SUBMITTED, at version 1 with its lines. Fails with a
/// unique violation on `orders_external_ref_key` when `external_ref` is taken.
pub(crate) async fn insert_submitted(
    conn: &mut PgConnection,
    id: Uuid,
    customer_id: Uuid,
    currency: Option<&str>,
    lines: &[Line],
    external_ref: &str,
) -> Result<Order, sqlx::Error> {
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, currency, version, submit_time, \
                             external_ref) \
         VALUES ($1, $2, 'SUBMITTED', $3, 1, now(), $4)",
    )
    .bind(id)
    .bind(customer_id)
    .bind(currency)
    .bind(external_ref)
    .execute(&mut *conn)
    .await?;
    insert_lines(conn, id, lines).await?;
    required(get(conn, id).await?, id)
}

/// The order an integrator placed with `external_ref`.
pub(crate) async fn get_by_external_ref(
    conn: &mut PgConnection,
    external_ref: &str,
) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<OrderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders WHERE external_ref = $1"
    ))
    .bind(external_ref)
    .fetch_optional(&mut *conn)
    .await?;
    complete_one(conn, row).await
}

/// Up to `limit` orders the ERP knows (SUBMITTED, CANCEL_REQUESTED, and CANCELLED once
/// submitted: a cancelled draft was never published) with ids after `after`, in id order, with
/// their lines, their rows locked against changes (`FOR SHARE`) until the transaction ends: a
/// consistent batch to republish.
pub(crate) async fn published_batch_for_share(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders \
         WHERE (status IN ('SUBMITTED', 'CANCEL_REQUESTED') \
                OR (status = 'CANCELLED' AND submit_time IS NOT NULL)) \
           AND ($1::uuid IS NULL OR id > $1) \
         ORDER BY id LIMIT $2 FOR SHARE"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    attach_lines(conn, &mut orders).await?;
    Ok(orders)
}

pub(crate) async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<OrderRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    complete_one(conn, row).await
}

/// Reads the order and locks its row until the transaction ends.
pub(crate) async fn get_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Order>, sqlx::Error> {
    let row: Option<OrderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    complete_one(conn, row).await
}

/// Replaces the lines (and the currency) and bumps the version.
pub(crate) async fn replace_lines(
    conn: &mut PgConnection,
    id: Uuid,
    currency: Option<&str>,
    lines: &[Line],
) -> Result<Order, sqlx::Error> {
    sqlx::query("DELETE FROM order_lines WHERE order_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    insert_lines(conn, id, lines).await?;
    sqlx::query(
        "UPDATE orders SET currency = $2, version = version + 1, update_time = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(currency)
    .execute(&mut *conn)
    .await?;
    required(get(conn, id).await?, id)
}

/// A CRM lifecycle change: sets `status` (and the submit time or the cancellation reason)
/// and bumps the version.
pub(crate) async fn transition(
    conn: &mut PgConnection,
    id: Uuid,
    status: OrderStatus,
    cancellation_reason: Option<&str>,
) -> Result<Order, sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET status = $2, \
             submit_time = CASE WHEN $2 = 'SUBMITTED' THEN now() ELSE submit_time END, \
             cancellation_reason = COALESCE($3, cancellation_reason), \
             version = version + 1, update_time = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(cancellation_reason)
    .execute(&mut *conn)
    .await?;
    required(get(conn, id).await?, id)
}

/// Writes the ERP's fulfilment view at `version` and the CRM status it leads to, when
/// `version` is newer than the stored one (or, with `repair`, equal to it). Returns whether it
/// was written. The order's own
/// version is not bumped: it counts CRM changes (and events), and this one publishes nothing.
pub(crate) async fn apply_fulfilment(
    conn: &mut PgConnection,
    id: Uuid,
    update: &FulfilmentUpdate,
    version: i64,
    status: OrderStatus,
    repair: bool,
) -> Result<bool, sqlx::Error> {
    let written = sqlx::query(
        "UPDATE orders SET fulfilment_status = $2, rejection_reason = $3, invoice_number = $4, \
             invoice_amount_minor = $5, fulfilment_version = $6, \
             fulfilment_update_time = now(), status = $7, update_time = now() \
         WHERE id = $1 AND (fulfilment_version < $6 OR ($8 AND fulfilment_version = $6))",
    )
    .bind(id)
    .bind(update.status.as_str())
    .bind(&update.rejection_reason)
    .bind(&update.invoice_number)
    .bind(update.invoice_amount.as_ref().map(|(_, amount)| *amount))
    .bind(version)
    .bind(status.as_str())
    .bind(repair)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

/// What applying a fulfilment status reads of an order.
pub(crate) struct FulfilmentGate {
    pub status: OrderStatus,
    pub currency: Option<String>,
    /// The source version of the stored fulfilment (0 before the first).
    pub version: i64,
}

/// The [`FulfilmentGate`] of each of `ids` that exists, the rows locked until the transaction
/// ends (in id order, so two batches cannot wait on each other).
pub(crate) async fn fulfilment_gates_for_update(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, FulfilmentGate>, sqlx::Error> {
    let rows: Vec<(Uuid, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, status, currency, fulfilment_version FROM orders \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, status, currency, version)| {
            let status = OrderStatus::parse(&status)
                .ok_or_else(|| decode(format!("order {id} has unknown status {status:?}")))?;
            Ok((
                id,
                FulfilmentGate {
                    status,
                    currency,
                    version,
                },
            ))
        })
        .collect()
}

/// One page of orders in id (creation) order.
pub(crate) async fn list(
    conn: &mut PgConnection,
    filter: &OrderFilter,
    page: &Page<Uuid>,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders \
         WHERE ($1::uuid IS NULL OR id > $1) \
           AND ($2::uuid IS NULL OR customer_id = $2) \
           AND ($3::text IS NULL OR status = $3) \
         ORDER BY id LIMIT $4"
    ))
    .bind(page.after)
    .bind(filter.customer_id)
    .bind(filter.status.map(OrderStatus::as_str))
    .bind(page.fetch_limit())
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    attach_lines(conn, &mut orders).await?;
    Ok(orders)
}

fn required(order: Option<Order>, id: Uuid) -> Result<Order, sqlx::Error> {
    order.ok_or_else(|| sqlx::Error::Protocol(format!("order {id} vanished in its transaction")))
}

async fn complete_one(
    conn: &mut PgConnection,
    row: Option<OrderRow>,
) -> Result<Option<Order>, sqlx::Error> {
    let Some(row) = row else {
        return Ok(None);
    };
    let mut orders = vec![from_row(row)?];
    attach_lines(conn, &mut orders).await?;
    Ok(orders.pop())
}

async fn attach_lines(conn: &mut PgConnection, orders: &mut [Order]) -> Result<(), sqlx::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let rows: Vec<(Uuid, i32, String, String, i64, i64)> = sqlx::query_as(
        "SELECT order_id, line_number, sku, product_name, quantity, unit_price_minor \
         FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_number",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut by_order: HashMap<Uuid, Vec<Line>> = HashMap::new();
    for (order_id, line_number, sku, product_name, quantity, unit_price_minor) in rows {
        by_order.entry(order_id).or_default().push(Line {
            line_number,
            sku,
            product_name,
            quantity,
            unit_price_minor,
        });
    }
    for order in orders {
        order.lines = by_order.remove(&order.id).unwrap_or_default();
    }
    Ok(())
}

pub(crate) async fn insert_lines(
    conn: &mut PgConnection,
    id: Uuid,
    lines: &[Line],
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_number, sku, product_name, quantity, \
                                  unit_price_minor) \
         SELECT $1, * FROM UNNEST($2::int4[], $3::text[], $4::text[], $5::int8[], $6::int8[])",
    )
    .bind(id)
    .bind(lines.iter().map(|l| l.line_number).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
    .bind(
        lines
            .iter()
            .map(|l| l.product_name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.unit_price_minor).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
