//! SQL for sales orders, their lines and reservations.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Invoice, Line, NewOrder, Order, OrderStatus, Reservation, ReservationState};

type HeaderRow = (
    Uuid,
    String,
    Uuid,
    String,
    Option<String>,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<NaiveDate>,
    Option<NaiveDate>,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, crm_order_id, customer_id, status, reason, currency, total_minor, \
                       version, invoice_number, invoice_amount_minor, invoice_issue_date, \
                       invoice_due_date, create_time, update_time";

fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

fn header(row: HeaderRow) -> Result<Order, sqlx::Error> {
    let (
        id,
        crm_order_id,
        customer_id,
        status,
        reason,
        currency,
        total_minor,
        version,
        number,
        amount,
        issue,
        due,
        create_time,
        update_time,
    ) = row;
    let status = OrderStatus::parse(&status)
        .ok_or_else(|| decode_error(format!("order {id} has status {status:?}")))?;
    let invoice = match (number, amount, issue, due) {
        (Some(number), Some(amount_minor), Some(issue_date), Some(due_date)) => Some(Invoice {
            number,
            amount_minor,
            issue_date,
            due_date,
        }),
        _ => None,
    };
    Ok(Order {
        id,
        crm_order_id,
        customer_id,
        status,
        reason,
        currency,
        total_minor,
        version,
        invoice,
        lines: Vec::new(),
        create_time,
        update_time,
    })
}

/// Inserts the order and its lines at version 1, unless an order with the same CRM order id
/// exists (then nothing is written and `false` returned).
pub(crate) async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    order: &NewOrder,
    total_minor: i64,
    status: OrderStatus,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO sales_orders (id, crm_order_id, customer_id, status, reason, currency, \
                                   total_minor, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1) \
         ON CONFLICT (crm_order_id) DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&order.crm_order_id)
    .bind(order.customer_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(&order.currency)
    .bind(total_minor)
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_none() {
        return Ok(false);
    }
    let numbers: Vec<i32> = (1..).take(order.lines.len()).collect();
    let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    let quantities: Vec<i64> = order.lines.iter().map(|l| l.quantity).collect();
    let prices: Vec<i64> = order.lines.iter().map(|l| l.unit_price_minor).collect();
    sqlx::query(
        "INSERT INTO sales_order_lines (order_id, line_number, sku, quantity, unit_price_minor) \
         SELECT $1, * FROM unnest($2::int[], $3::text[], $4::bigint[], $5::bigint[])",
    )
    .bind(id)
    .bind(&numbers)
    .bind(&skus)
    .bind(&quantities)
    .bind(&prices)
    .execute(conn)
    .await?;
    Ok(true)
}

pub(crate) async fn id_of(
    conn: &mut PgConnection,
    crm_order_id: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM sales_orders WHERE crm_order_id = $1")
        .bind(crm_order_id)
        .fetch_optional(conn)
        .await
}

/// The order with its lines and reservations; with `lock`, its row stays locked until the
/// transaction ends.
pub(crate) async fn load(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Order>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row: Option<HeaderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sales_orders WHERE id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut orders = vec![header(row)?];
    with_lines(conn, &mut orders).await?;
    Ok(orders.pop())
}

/// The orders of these CRM order ids that exist, with their lines and reservations, in no
/// particular order.
pub(crate) async fn load_by_crm_ids(
    conn: &mut PgConnection,
    crm_order_ids: &[&str],
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<HeaderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sales_orders WHERE crm_order_id = ANY($1)"
    ))
    .bind(crm_order_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = rows
        .into_iter()
        .map(header)
        .collect::<Result<Vec<_>, _>>()?;
    if !orders.is_empty() {
        with_lines(conn, &mut orders).await?;
    }
    Ok(orders)
}

type LineRow = (Uuid, i32, String, i64, i64);
type ReservationRow = (Uuid, i32, String, i64, String);

/// Fills in the lines and reservations of `orders`.
async fn with_lines(conn: &mut PgConnection, orders: &mut [Order]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT order_id, line_number, sku, quantity, unit_price_minor FROM sales_order_lines \
         WHERE order_id = ANY($1) ORDER BY order_id, line_number",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let reservations: Vec<ReservationRow> = sqlx::query_as(
        "SELECT order_id, line_number, warehouse, quantity, state FROM reservations \
         WHERE order_id = ANY($1) ORDER BY order_id, line_number, warehouse",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut held: HashMap<(Uuid, i32), Vec<Reservation>> = HashMap::new();
    for (order_id, line_number, warehouse, quantity, state) in reservations {
        let state = ReservationState::parse(&state).ok_or_else(|| {
            decode_error(format!("reservation of {order_id} has state {state:?}"))
        })?;
        held.entry((order_id, line_number))
            .or_default()
            .push(Reservation {
                warehouse,
                quantity,
                state,
            });
    }
    let mut by_order: HashMap<Uuid, Vec<Line>> = HashMap::new();
    for (order_id, line_number, sku, quantity, unit_price_minor) in lines {
        by_order.entry(order_id).or_default().push(Line {
            line_number,
            sku,
            quantity,
            unit_price_minor,
            reservations: held.remove(&(order_id, line_number)).unwrap_or_default(),
        });
    }
    for order in orders {
        order.lines = by_order.remove(&order.id).unwrap_or_default();
    }
    Ok(())
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<Uuid>,
    pub crm_order_id: Option<String>,
}

/// Orders after id `after` (ids are UUID v7, so this is oldest first), at most `limit`.
pub(crate) async fn list(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    filter: &OrderFilter,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<HeaderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sales_orders \
         WHERE ($1::uuid IS NULL OR id > $1) AND ($2::text IS NULL OR status = $2) \
           AND ($3::uuid IS NULL OR customer_id = $3) AND ($4::text IS NULL OR crm_order_id = $4) \
         ORDER BY id LIMIT $5"
    ))
    .bind(after)
    .bind(filter.status.map(OrderStatus::as_str))
    .bind(filter.customer_id)
    .bind(&filter.crm_order_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = rows
        .into_iter()
        .map(header)
        .collect::<Result<Vec<_>, _>>()?;
    with_lines(conn, &mut orders).await?;
    Ok(orders)
}

/// Orders after id `after`, in id order, at most `limit`, WITHOUT their lines (enough for
/// [`Order::status_event`]), share-locked until the transaction ends.
pub(crate) async fn share_headers(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<HeaderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM sales_orders WHERE ($1::uuid IS NULL OR id > $1) \
         ORDER BY id LIMIT $2 FOR SHARE"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(header).collect()
}

/// Moves the order to `status` with `reason`, bumping its version.
pub(crate) async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: OrderStatus,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sales_orders SET status = $2, reason = $3, version = version + 1, \
                update_time = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a line reserved; `false` when it already was (a line is reserved at most once).
pub(crate) async fn mark_line_reserved(
    conn: &mut PgConnection,
    order_id: Uuid,
    line_number: i32,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE sales_order_lines SET reserved = true \
         WHERE order_id = $1 AND line_number = $2 AND NOT reserved",
    )
    .bind(order_id)
    .bind(line_number)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub(crate) async fn insert_reservation(
    conn: &mut PgConnection,
    order_id: Uuid,
    line_number: i32,
    sku: &str,
    warehouse: &str,
    quantity: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservations (order_id, line_number, sku, warehouse, quantity, state) \
         VALUES ($1, $2, $3, $4, $5, 'HELD')",
    )
    .bind(order_id)
    .bind(line_number)
    .bind(sku)
    .bind(warehouse)
    .bind(quantity)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves every HELD reservation of the order to `state`.
pub(crate) async fn settle_reservations(
    conn: &mut PgConnection,
    order_id: Uuid,
    state: ReservationState,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE reservations SET state = $2 WHERE order_id = $1 AND state = 'HELD'")
            .bind(order_id)
            .bind(state.as_str())
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

pub(crate) async fn set_invoice(
    conn: &mut PgConnection,
    id: Uuid,
    invoice: &Invoice,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sales_orders SET status = 'INVOICED', invoice_number = $2, \
                invoice_amount_minor = $3, invoice_issue_date = $4, invoice_due_date = $5, \
                version = version + 1, update_time = now() \
         WHERE id = $1",
    )
    .bind(id)
    .bind(&invoice.number)
    .bind(invoice.amount_minor)
    .bind(invoice.issue_date)
    .bind(invoice.due_date)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn next_invoice_number(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval('invoice_numbers')")
        .fetch_one(conn)
        .await
}

/// Every sku of the BACKORDERED orders that have a line of one of `skus` (no locks: the
/// caller locks them, in order, before it reads the orders again).
pub(crate) async fn backordered_skus(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT other.sku FROM sales_orders o \
         JOIN sales_order_lines other ON other.order_id = o.id \
         WHERE o.status = 'BACKORDERED' AND EXISTS ( \
             SELECT 1 FROM sales_order_lines l WHERE l.order_id = o.id AND l.sku = ANY($1))",
    )
    .bind(skus)
    .fetch_all(conn)
    .await
}

/// The BACKORDERED orders with a line of one of `skus`, oldest first, locked.
pub(crate) async fn lock_backordered(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT o.id FROM sales_orders o \
         WHERE o.status = 'BACKORDERED' AND EXISTS ( \
             SELECT 1 FROM sales_order_lines l WHERE l.order_id = o.id AND l.sku = ANY($1)) \
         ORDER BY o.create_time, o.id FOR UPDATE OF o",
    )
    .bind(skus)
    .fetch_all(conn)
    .await
}
