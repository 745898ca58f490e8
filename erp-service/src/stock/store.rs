//! SQL for stock levels and the ledger. Writers go through [`super::StockSession`], which
//! holds the locks; these functions only run the statements.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Count, Level, Movement, MovementReason, NewMovement};

type LevelRow = (String, String, i64, i64, DateTime<Utc>);

fn level((sku, warehouse, on_hand, reserved, update_time): LevelRow) -> Level {
    Level {
        sku,
        warehouse,
        on_hand,
        reserved,
        update_time,
    }
}

/// The sku locks: locks the product rows of `skus` in sku order (FOR NO KEY UPDATE, so
/// foreign-key checks from new level rows still pass) and returns `(sku, active)` of those
/// that exist.
pub(crate) async fn lock_products(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<Vec<(String, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sku, active FROM products WHERE sku = ANY($1) ORDER BY sku FOR NO KEY UPDATE",
    )
    .bind(skus)
    .fetch_all(conn)
    .await
}

/// Locks every level row of `skus`, in (sku, warehouse) order.
pub(crate) async fn lock_levels(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<Vec<Level>, sqlx::Error> {
    let rows: Vec<LevelRow> = sqlx::query_as(
        "SELECT sku, warehouse, on_hand, reserved, update_time FROM stock_levels \
         WHERE sku = ANY($1) ORDER BY sku, warehouse FOR UPDATE",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(level).collect())
}

/// Creates the (empty) level of `sku` in `warehouse` if missing, and returns it locked.
pub(crate) async fn ensure_level(
    conn: &mut PgConnection,
    sku: &str,
    warehouse: &str,
) -> Result<Level, sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_levels (sku, warehouse) VALUES ($1, $2) \
         ON CONFLICT (sku, warehouse) DO NOTHING",
    )
    .bind(sku)
    .bind(warehouse)
    .execute(&mut *conn)
    .await?;
    let row: LevelRow = sqlx::query_as(
        "SELECT sku, warehouse, on_hand, reserved, update_time FROM stock_levels \
         WHERE sku = $1 AND warehouse = $2 FOR UPDATE",
    )
    .bind(sku)
    .bind(warehouse)
    .fetch_one(conn)
    .await?;
    Ok(level(row))
}

/// Changes the level by the movement's deltas and appends the ledger entry. The CHECK
/// constraints refuse on hand below zero and reserved above on hand.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    movement: &NewMovement,
) -> Result<(Level, Movement), sqlx::Error> {
    let row: LevelRow = sqlx::query_as(
        "UPDATE stock_levels SET on_hand = on_hand + $3, reserved = reserved + $4, \
                update_time = now() \
         WHERE sku = $1 AND warehouse = $2 \
         RETURNING sku, warehouse, on_hand, reserved, update_time",
    )
    .bind(&movement.sku)
    .bind(&movement.warehouse)
    .bind(movement.on_hand_delta)
    .bind(movement.reserved_delta)
    .fetch_one(&mut *conn)
    .await?;
    let (id, create_time): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO stock_ledger (sku, warehouse, on_hand_delta, reserved_delta, reason, \
                                   adjustment_reason, reference, order_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, create_time",
    )
    .bind(&movement.sku)
    .bind(&movement.warehouse)
    .bind(movement.on_hand_delta)
    .bind(movement.reserved_delta)
    .bind(movement.reason.as_str())
    .bind(movement.reason.adjustment().map(|r| r.as_str()))
    .bind(&movement.reference)
    .bind(movement.order_id)
    .fetch_one(conn)
    .await?;
    Ok((
        level(row),
        Movement {
            id,
            sku: movement.sku.clone(),
            warehouse: movement.warehouse.clone(),
            on_hand_delta: movement.on_hand_delta,
            reserved_delta: movement.reserved_delta,
            reason: movement.reason,
            reference: movement.reference.clone(),
            order_id: movement.order_id,
            create_time,
        },
    ))
}

/// Bumps the stock version of `sku` (the aggregate_version of `erp.stock.changed`).
pub(crate) async fn next_stock_version(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE products SET stock_version = stock_version + 1 WHERE sku = $1 \
         RETURNING stock_version",
    )
    .bind(sku)
    .fetch_one(conn)
    .await
}

/// Records the count of `count.event_id` (on hand was `previous_on_hand`); `false` when a
/// count with that event id exists already (nothing written).
pub(crate) async fn insert_count(
    conn: &mut PgConnection,
    count: &Count,
    previous_on_hand: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO stock_counts (event_id, sku, warehouse, counted_quantity, \
                                   previous_on_hand, source) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&count.event_id)
    .bind(&count.sku)
    .bind(&count.warehouse)
    .bind(count.counted_quantity)
    .bind(previous_on_hand)
    .bind(&count.source)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The (sku, warehouse, counted quantity) of the count applied with `event_id`, if any.
pub(crate) async fn count_of(
    conn: &mut PgConnection,
    event_id: &str,
) -> Result<Option<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT sku, warehouse, counted_quantity FROM stock_counts WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(conn)
        .await
}

/// Skus whose stock ever changed (stock version > 0) after sku `after`, with that version,
/// in sku order, at most `limit`; their product rows share-locked until the transaction
/// ends, so no stock writer (they hold the sku lock) changes them meanwhile.
pub(crate) async fn share_stocked(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sku, stock_version FROM products \
         WHERE stock_version > 0 AND ($1::text IS NULL OR sku > $1) \
         ORDER BY sku LIMIT $2 FOR SHARE",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Every level of `skus`, in (sku, warehouse) order.
pub(crate) async fn levels_of_many(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<Vec<Level>, sqlx::Error> {
    let rows: Vec<LevelRow> = sqlx::query_as(
        "SELECT sku, warehouse, on_hand, reserved, update_time FROM stock_levels \
         WHERE sku = ANY($1) ORDER BY sku, warehouse",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(level).collect())
}

pub(crate) async fn levels_of(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<Vec<Level>, sqlx::Error> {
    let rows: Vec<LevelRow> = sqlx::query_as(
        "SELECT sku, warehouse, on_hand, reserved, update_time FROM stock_levels \
         WHERE sku = $1 ORDER BY warehouse",
    )
    .bind(sku)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(level).collect())
}

pub(crate) async fn get_level(
    conn: &mut PgConnection,
    sku: &str,
    warehouse: &str,
) -> Result<Option<Level>, sqlx::Error> {
    let row: Option<LevelRow> = sqlx::query_as(
        "SELECT sku, warehouse, on_hand, reserved, update_time FROM stock_levels \
         WHERE sku = $1 AND warehouse = $2",
    )
    .bind(sku)
    .bind(warehouse)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(level))
}

pub(crate) async fn list_levels(
    conn: &mut PgConnection,
    after: Option<&(String, String)>,
    sku: &str,
    warehouse: &str,
    limit: i64,
) -> Result<Vec<Level>, sqlx::Error> {
    let rows: Vec<LevelRow> = sqlx::query_as(
        "SELECT sku, warehouse, on_hand, reserved, update_time FROM stock_levels \
         WHERE ($1::text IS NULL OR (sku, warehouse) > ($1, $2)) \
           AND ($3 = '' OR sku = $3) AND ($4 = '' OR warehouse = $4) \
         ORDER BY sku, warehouse LIMIT $5",
    )
    .bind(after.map(|(s, _)| s))
    .bind(after.map(|(_, w)| w))
    .bind(sku)
    .bind(warehouse)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(level).collect())
}

type MovementRow = (
    i64,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<Uuid>,
    DateTime<Utc>,
);

pub(crate) async fn list_movements(
    conn: &mut PgConnection,
    after: Option<i64>,
    sku: &str,
    warehouse: &str,
    order_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Movement>, sqlx::Error> {
    let rows: Vec<MovementRow> = sqlx::query_as(
        "SELECT id, sku, warehouse, on_hand_delta, reserved_delta, reason, adjustment_reason, \
                reference, order_id, create_time \
         FROM stock_ledger \
         WHERE ($1::bigint IS NULL OR id > $1) AND ($2 = '' OR sku = $2) \
           AND ($3 = '' OR warehouse = $3) AND ($4::uuid IS NULL OR order_id = $4) \
         ORDER BY id LIMIT $5",
    )
    .bind(after)
    .bind(sku)
    .bind(warehouse)
    .bind(order_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(
            |(
                id,
                sku,
                warehouse,
                on_hand_delta,
                reserved_delta,
                reason,
                adj,
                reference,
                order_id,
                create_time,
            )| {
                let reason = MovementReason::parse(&reason, adj.as_deref()).ok_or_else(|| {
                    sqlx::Error::Decode(format!("ledger entry {id} has reason {reason:?}").into())
                })?;
                Ok(Movement {
                    id,
                    sku,
                    warehouse,
                    on_hand_delta,
                    reserved_delta,
                    reason,
                    reference,
                    order_id,
                    create_time,
                })
            },
        )
        .collect()
}
