//! SQL for products. Functions take a connection so callers decide the transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Product, ProductFields};

type Row = (
    Uuid,
    String,
    String,
    String,
    i64,
    String,
    bool,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, sku, display_name, description, unit_price_minor, currency, active, \
                       version, create_time, update_time";

fn from_row(row: Row) -> Product {
    let (id, sku, display_name, description, unit_price_minor, currency, active, version, c, u) =
        row;
    Product {
        id,
        sku,
        fields: ProductFields {
            display_name,
            description,
            unit_price_minor,
            currency,
            active,
        },
        version,
        create_time: c,
        update_time: u,
    }
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    sku: &str,
    fields: &ProductFields,
) -> Result<Product, sqlx::Error> {
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO products (id, sku, display_name, description, unit_price_minor, currency, \
                               active, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(sku)
    .bind(&fields.display_name)
    .bind(&fields.description)
    .bind(fields.unit_price_minor)
    .bind(&fields.currency)
    .bind(fields.active)
    .fetch_one(conn)
    .await?;
    Ok(from_row(row))
}

/// By id, or by sku when `key` is not a UUID. With `lock`, the row stays locked until the
/// transaction ends.
pub(crate) async fn get(
    conn: &mut PgConnection,
    key: &str,
    lock: bool,
) -> Result<Option<Product>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row: Option<Row> = match Uuid::parse_str(key) {
        Ok(id) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM products WHERE id = $1{lock}"
            ))
            .bind(id)
            .fetch_optional(conn)
            .await?
        }
        Err(_) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM products WHERE sku = $1{lock}"
            ))
            .bind(key)
            .fetch_optional(conn)
            .await?
        }
    };
    Ok(row.map(from_row))
}

/// Products after sku `after`, ordered by sku, at most `limit`.
pub(crate) async fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    active: Option<bool>,
    sku_prefix: &str,
    limit: i64,
) -> Result<Vec<Product>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products \
         WHERE ($1::text IS NULL OR sku > $1) AND ($2::boolean IS NULL OR active = $2) \
           AND left(sku, char_length($3)) = $3 \
         ORDER BY sku LIMIT $4"
    ))
    .bind(after)
    .bind(active)
    .bind(sku_prefix)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Products after sku `after`, in sku order, at most `limit`, share-locked until the
/// transaction ends (writers wait, so what is read stays current until commit).
pub(crate) async fn share_after(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Product>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM products WHERE ($1::text IS NULL OR sku > $1) \
         ORDER BY sku LIMIT $2 FOR SHARE"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Writes `fields` and bumps the version by one.
pub(crate) async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    fields: &ProductFields,
) -> Result<Product, sqlx::Error> {
    let row: Row = sqlx::query_as(&format!(
        "UPDATE products SET display_name = $2, description = $3, unit_price_minor = $4, \
                currency = $5, active = $6, version = version + 1, update_time = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&fields.display_name)
    .bind(&fields.description)
    .bind(fields.unit_price_minor)
    .bind(&fields.currency)
    .bind(fields.active)
    .fetch_one(conn)
    .await?;
    Ok(from_row(row))
}
