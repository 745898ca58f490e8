//! SQL for the catalogue mirror.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tandem_common::paging::Page;

use super::model::{Product, ProductData, StockLevel};
use crate::mirror::Applied;

type Row = (
    String,
    String,
    i64,
    String,
    bool,
    i64,
    i64,
    i64,
    DateTime<Utc>,
);

const COLUMNS: &str = "sku, name, unit_price_minor, currency, active, product_version, \
                       available, stock_version, update_time";

fn from_row(row: Row) -> Product {
    let (sku, name, unit_price_minor, currency, active, product_version, available, stock, at) =
        row;
    Product {
        data: ProductData {
            sku,
            name,
            unit_price_minor,
            currency,
            active,
        },
        product_version,
        available,
        stock_version: stock,
        update_time: at,
    }
}

/// Upserts the product data when `version` is newer than the stored product version (or, with
/// `repair`, equal to it); the stock columns are left alone.
pub(crate) async fn apply_product(
    conn: &mut PgConnection,
    data: &ProductData,
    version: i64,
    repair: bool,
) -> Result<Applied, sqlx::Error> {
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO catalogue (sku, name, unit_price_minor, currency, active, product_version) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (sku) DO UPDATE SET \
             name = EXCLUDED.name, unit_price_minor = EXCLUDED.unit_price_minor, \
             currency = EXCLUDED.currency, active = EXCLUDED.active, \
             product_version = EXCLUDED.product_version, update_time = now() \
         WHERE catalogue.product_version < EXCLUDED.product_version \
            OR ($7 AND catalogue.product_version = EXCLUDED.product_version) \
         RETURNING product_version",
    )
    .bind(&data.sku)
    .bind(&data.name)
    .bind(data.unit_price_minor)
    .bind(&data.currency)
    .bind(data.active)
    .bind(version)
    .bind(repair)
    .fetch_optional(&mut *conn)
    .await?;
    gated(conn, written, "product_version", &data.sku).await
}

/// Upserts one stock level when its version is newer than the stored stock version (or, with
/// `repair`, equal to it).
pub(crate) async fn apply_stock(
    conn: &mut PgConnection,
    level: &StockLevel,
    repair: bool,
) -> Result<Applied, sqlx::Error> {
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO catalogue (sku, available, stock_version) VALUES ($1, $2, $3) \
         ON CONFLICT (sku) DO UPDATE SET \
             available = EXCLUDED.available, stock_version = EXCLUDED.stock_version, \
             update_time = now() \
         WHERE catalogue.stock_version < EXCLUDED.stock_version \
            OR ($4 AND catalogue.stock_version = EXCLUDED.stock_version) \
         RETURNING stock_version",
    )
    .bind(&level.sku)
    .bind(level.available)
    .bind(level.source_version)
    .bind(repair)
    .fetch_optional(&mut *conn)
    .await?;
    gated(conn, written, "stock_version", &level.sku).await
}

async fn gated(
    conn: &mut PgConnection,
    written: Option<i64>,
    column: &str,
    sku: &str,
) -> Result<Applied, sqlx::Error> {
    match written {
        Some(current_version) => Ok(Applied {
            changed: true,
            current_version,
        }),
        None => {
            let current_version: i64 =
                sqlx::query_scalar(&format!("SELECT {column} FROM catalogue WHERE sku = $1"))
                    .bind(sku)
                    .fetch_one(conn)
                    .await?;
            Ok(Applied {
                changed: false,
                current_version,
            })
        }
    }
}

/// One page of known products (a product version arrived), by sku.
pub(crate) async fn list(
    conn: &mut PgConnection,
    include_inactive: bool,
    page: &Page<String>,
) -> Result<Vec<Product>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM catalogue \
         WHERE product_version > 0 AND ($1 OR active) AND ($2::text IS NULL OR sku > $2) \
         ORDER BY sku LIMIT $3"
    ))
    .bind(include_inactive)
    .bind(&page.after)
    .bind(page.fetch_limit())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// The rows of `skus` that exist, by sku.
pub(crate) async fn get_many(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<HashMap<String, Product>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM catalogue WHERE sku = ANY($1)"
    ))
    .bind(skus)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let product = from_row(row);
            (product.data.sku.clone(), product)
        })
        .collect())
}
