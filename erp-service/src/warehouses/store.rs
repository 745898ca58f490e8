//! SQL for warehouses.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Warehouse;

type Row = (String, String, DateTime<Utc>);

fn from_row((code, display_name, create_time): Row) -> Warehouse {
    Warehouse {
        code,
        display_name,
        create_time,
    }
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    code: &str,
    display_name: &str,
) -> Result<Warehouse, sqlx::Error> {
    let row: Row = sqlx::query_as(
        "INSERT INTO warehouses (code, display_name) VALUES ($1, $2) \
         RETURNING code, display_name, create_time",
    )
    .bind(code)
    .bind(display_name)
    .fetch_one(conn)
    .await?;
    Ok(from_row(row))
}

pub(crate) async fn exists(conn: &mut PgConnection, code: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM warehouses WHERE code = $1)")
        .bind(code)
        .fetch_one(conn)
        .await
}

pub(crate) async fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Warehouse>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT code, display_name, create_time FROM warehouses \
         WHERE ($1::text IS NULL OR code > $1) ORDER BY code LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}
