//! Grows both databases to a size in bulk, as fixtures written straight into the tables (a
//! million through the RPCs would take the whole run): customers with a billing address and
//! their publishing history in the CRM; per customer one shipped order with its line in the
//! CRM and its sales order, reservation and three stock movements (receipt, reservation,
//! shipment: net zero on the level) in the ERP, with both outboxes' history.
//!
//! The rows are what the services would hold after the same operations, so `reconcile` finds
//! no drift in them. The ERP's customer mirror is not loaded: `tandemctl snapshot` fills it,
//! and that is the initial load the run measures. Ids are derived from the row number
//! (`md5('scale-customer-' || i)::uuid`), so each step adds rows `from..to` without reading
//! back what earlier steps wrote.

use anyhow::{Context, Result};
use sqlx::PgPool;

use crate::system::WAREHOUSE;

/// Rows per statement: large enough for bulk speed, small enough to keep WAL and locks short.
const CHUNK: i64 = 100_000;
/// The skus the rows use: the bench's prepared products (`BENCH-00000` ..).
const SKUS: i64 = 500;

/// The CRM's rows for customers (and their orders) `from..to`.
const CRM: &[&str] = &[
    "INSERT INTO customers (id, display_name, email, status, version)
     SELECT md5('scale-customer-' || i)::uuid, 'Scale Customer ' || i,
            'scale-' || i || '@example.com', 'ACTIVE', 1
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    "INSERT INTO customer_addresses (customer_id, position, kind, line1, city, postal_code,
                                     country_code)
     SELECT md5('scale-customer-' || i)::uuid, 0, 'BILLING', i || ' Scale Street', 'Berlin',
            '10115', 'DE'
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    "INSERT INTO orders (id, customer_id, status, currency, version, submit_time,
                         fulfilment_status, fulfilment_version, fulfilment_update_time)
     SELECT md5('scale-order-' || i)::uuid, md5('scale-customer-' || i)::uuid, 'SUBMITTED',
            'EUR', 2, now(), 'SHIPPED', 2, now()
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    "INSERT INTO order_lines (order_id, line_number, sku, product_name, quantity,
                              unit_price_minor)
     SELECT md5('scale-order-' || i)::uuid, 1, 'BENCH-' || lpad((i % $3)::text, 5, '0'),
            'Bench product BENCH-' || lpad((i % $3)::text, 5, '0'), 1 + i % 3, 1999
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    // Published history: the customer's upsert and the order's submission.
    "INSERT INTO outbox (event_id, topic, kafka_key, payload, published_at)
     SELECT md5('scale-event-' || kind || '-' || i)::uuid, topic,
            md5('scale-' || kind || '-' || i)::uuid::text,
            jsonb_build_object('event_id', md5('scale-event-' || kind || '-' || i)::uuid,
                               'event_type', event_type, 'source', 'crm', 'version', 1,
                               'data', jsonb_build_object('id', md5('scale-' || kind || '-' || i)::uuid,
                                                          'display_name', 'Scale Customer ' || i)),
            now()
     FROM generate_series($1::bigint, $2::bigint - 1) i,
          (VALUES ('customer', 'crm.customers', 'crm.customer.upserted'),
                  ('order', 'crm.orders', 'crm.order.submitted')) AS e(kind, topic, event_type)",
];

/// The ERP's rows for the orders `from..to` (its customers come by snapshot).
const ERP: &[&str] = &[
    "INSERT INTO sales_orders (id, crm_order_id, customer_id, status, currency, total_minor,
                               version)
     SELECT md5('scale-sales-order-' || i)::uuid, md5('scale-order-' || i)::uuid::text,
            md5('scale-customer-' || i)::uuid, 'SHIPPED', 'EUR', (1 + i % 3) * 1999, 2
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    "INSERT INTO sales_order_lines (order_id, line_number, sku, quantity, unit_price_minor,
                                    reserved)
     SELECT md5('scale-sales-order-' || i)::uuid, 1, 'BENCH-' || lpad((i % $3)::text, 5, '0'),
            1 + i % 3, 1999, true
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    "INSERT INTO reservations (order_id, line_number, sku, warehouse, quantity, state)
     SELECT md5('scale-sales-order-' || i)::uuid, 1, 'BENCH-' || lpad((i % $3)::text, 5, '0'),
            $4, 1 + i % 3, 'SHIPPED'
     FROM generate_series($1::bigint, $2::bigint - 1) i",
    // Receipt, reservation and shipment of the line: net zero on the level.
    "INSERT INTO stock_ledger (sku, warehouse, on_hand_delta, reserved_delta, reason, reference,
                               order_id)
     SELECT 'BENCH-' || lpad((i % $3)::text, 5, '0'), $4, d.on_hand * (1 + i % 3),
            d.reserved * (1 + i % 3), d.reason, 'scale-' || i,
            md5('scale-sales-order-' || i)::uuid
     FROM generate_series($1::bigint, $2::bigint - 1) i,
          (VALUES (1, 0, 'RECEIPT'), (0, 1, 'RESERVATION'), (-1, -1, 'SHIPMENT'))
              AS d(on_hand, reserved, reason)",
    // Published history: the order's status changes, reserved then shipped.
    "INSERT INTO outbox (event_id, topic, kafka_key, payload, published_at)
     SELECT md5('scale-erp-event-' || s.status || '-' || i)::uuid, 'erp.orders',
            md5('scale-order-' || i)::uuid::text,
            jsonb_build_object('event_id', md5('scale-erp-event-' || s.status || '-' || i)::uuid,
                               'event_type', 'erp.order.status_changed', 'source', 'erp',
                               'version', s.version,
                               'data', jsonb_build_object('crm_order_id', md5('scale-order-' || i)::uuid,
                                                          'status', s.status)),
            now()
     FROM generate_series($1::bigint, $2::bigint - 1) i,
          (VALUES ('RESERVED', 1), ('SHIPPED', 2)) AS s(status, version)",
];

/// Adds customers and orders `from..to` to both databases, then refreshes the planner's
/// statistics (as autovacuum would after such a load).
pub async fn grow(crm: &PgPool, erp: &PgPool, from: i64, to: i64) -> Result<()> {
    // The movements need a level per sku (the e2e stock phase creates most of them).
    sqlx::query(
        "INSERT INTO stock_levels (sku, warehouse)
         SELECT 'BENCH-' || lpad(s::text, 5, '0'), $2 FROM generate_series(0, $1 - 1) s
         ON CONFLICT DO NOTHING",
    )
    .bind(SKUS)
    .bind(WAREHOUSE)
    .execute(erp)
    .await
    .context("creating the stock levels")?;
    let mut start = from;
    while start < to {
        let end = (start + CHUNK).min(to);
        for sql in CRM {
            run(crm, sql, start, end)
                .await
                .with_context(|| format!("loading CRM rows {start}..{end}"))?;
        }
        for sql in ERP {
            run(erp, sql, start, end)
                .await
                .with_context(|| format!("loading ERP rows {start}..{end}"))?;
        }
        start = end;
    }
    for pool in [crm, erp] {
        sqlx::query("ANALYZE")
            .execute(pool)
            .await
            .context("ANALYZE after the load")?;
    }
    Ok(())
}

async fn run(pool: &PgPool, sql: &str, from: i64, to: i64) -> Result<(), sqlx::Error> {
    // Bind only the parameters the statement names: PostgreSQL cannot type an unused one.
    let mut query = sqlx::query(sql).bind(from).bind(to);
    if sql.contains("$3") {
        query = query.bind(SKUS);
    }
    if sql.contains("$4") {
        query = query.bind(WAREHOUSE);
    }
    query.execute(pool).await.map(|_| ())
}

/// Up to `limit` customer ids spread over the whole table, for the reads.
pub async fn sample_ids(crm: &PgPool, limit: i64) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT id::text FROM customers ORDER BY random() LIMIT $1")
        .bind(limit)
        .fetch_all(crm)
        .await
        .context("sampling customer ids")
}

/// The size of a database on disk, in MiB.
pub async fn size_mib(pool: &PgPool) -> Result<f64> {
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(pool)
        .await?;
    Ok(bytes as f64 / (1024.0 * 1024.0))
}
