//! The table-driven bad-request tests of the services: a table of [`Row`]s (a call and the
//! field it must be refused for), run with [`run`], and a [`snapshot`] of every table of the
//! service's database taken before and after, compared with [`assert_unchanged`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, future::Future, pin::Pin};

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// One bad request: what it is, the field it must be refused for, and the call itself (a
/// future: nothing is sent until the table runs it).
pub struct Row {
    pub name: &'static str,
    pub field: &'static str,
    pub call: Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>,
}

impl Row {
    pub fn new<T, F>(name: &'static str, field: &'static str, call: F) -> Row
    where
        F: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
    {
        Row {
            name,
            field,
            call: Box::pin(async move { call.await.map(|_| ()) }),
        }
    }
}

/// `row!(name, field, client.method(request))`: the call on a clone of the client, sent only
/// when the table runs.
#[macro_export]
macro_rules! row {
    ($name:expr, $field:expr, $client:ident . $method:ident ( $request:expr ) $(,)?) => {{
        let mut client = $client.clone();
        let request = $request;
        $crate::bad_requests::Row::new($name, $field, async move { client.$method(request).await })
    }};
}

/// Runs every row; returns one line per row that was not refused as it must be.
pub async fn run(rows: Vec<Row>) -> Vec<String> {
    let mut failures = Vec::new();
    for Row { name, field, call } in rows {
        let problem = match call.await {
            Ok(()) => Some("accepted".to_owned()),
            Err(status) if status.code() != Code::InvalidArgument => {
                Some(format!("{:?}: {}", status.code(), status.message()))
            }
            Err(status) => match status.get_error_details().bad_request() {
                None => Some(format!(
                    "INVALID_ARGUMENT without BadRequest details: {}",
                    status.message()
                )),
                Some(bad) if bad.field_violations.iter().any(|v| v.field == field) => None,
                Some(bad) => Some(format!(
                    "violations name {:?}",
                    bad.field_violations
                        .iter()
                        .map(|v| v.field.as_str())
                        .collect::<Vec<_>>()
                )),
            },
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "{name}: expected INVALID_ARGUMENT on {field:?}, got {problem}"
            ));
        }
    }
    failures
}

/// Every base table of the database with its row count and a digest of its rows (the outbox
/// relay's `published_at` left out: it changes as the broker acknowledges).
pub async fn snapshot(pool: &sqlx::PgPool) -> BTreeMap<String, (i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) \
         FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema') \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut snapshot = BTreeMap::new();
    for table in tables {
        let counted: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(COALESCE(string_agg(r, '|' ORDER BY r), '')) \
             FROM (SELECT (to_jsonb(t) - 'published_at')::text AS r FROM {table} t) rows"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        snapshot.insert(table, counted);
    }
    snapshot
}

/// Fails naming every table whose rows differ between the two snapshots.
pub fn assert_unchanged(
    before: &BTreeMap<String, (i64, String)>,
    after: &BTreeMap<String, (i64, String)>,
) {
    let tables: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = tables
        .into_iter()
        .filter(|table| before.get(*table) != after.get(*table))
        .map(|table| {
            let rows = |snapshot: &BTreeMap<String, (i64, String)>| {
                snapshot.get(table).map_or(-1, |(rows, _)| *rows)
            };
            format!(
                "{table}: {} rows before, {} after{}",
                rows(before),
                rows(after),
                if rows(before) == rows(after) {
                    " (same count, other contents)"
                } else {
                    ""
                }
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "the bad requests wrote to the database:\n{}",
        changed.join("\n")
    );
}

/// `base` with `edit` applied: a valid request made bad in one place.
pub fn with<T>(mut base: T, edit: impl FnOnce(&mut T)) -> T {
    edit(&mut base);
    base
}

pub fn too_long(chars: usize) -> String {
    "x".repeat(chars)
}

/// Runs the table `rows` against a service whose database `pool` holds (at least) `tables`,
/// and fails unless every row was refused as it must be and no table changed.
pub async fn assert_all_refused_writing_nothing(
    pool: &sqlx::PgPool,
    tables: &[&str],
    rows: Vec<Row>,
) {
    let before = snapshot(pool).await;
    assert!(
        tables
            .iter()
            .all(|table| before.contains_key(&format!("public.{table}"))),
        "the snapshot sees every table: {:?}",
        before.keys()
    );
    let count = rows.len();
    let failures = run(rows).await;
    let after = snapshot(pool).await;
    assert!(
        failures.is_empty(),
        "{} of {count} bad requests were not refused as they must be:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_unchanged(&before, &after);
}
