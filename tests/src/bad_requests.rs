//! The table-driven bad-request tests of the services: a table of [`Row`]s (a call and the
//! field it must be refused for), run with [`run`], and a [`snapshot`] of every table of the
//! service's database taken before and after, compared with [`assert_unchanged`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, future::Future, pin::Pin};

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// One bad request: the RPC it calls (`Service.Method`), what it is, the field it must be
/// refused for, and the call itself (a future: nothing is sent until the table runs it).
pub struct Row {
    pub rpc: String,
    pub name: &'static str,
    pub field: &'static str,
    pub call: Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>,
}

impl Row {
    pub fn new<T, F>(rpc: String, name: &'static str, field: &'static str, call: F) -> Row
    where
        F: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
    {
        Row {
            rpc,
            name,
            field,
            call: Box::pin(async move { call.await.map(|_| ()) }),
        }
    }
}

/// `Service.Method` of a call of `method` (snake case, as generated) on `client` (a generated
/// `…Client<…>`, whose type names the service).
pub fn rpc_name<C>(_client: &C, method: &str) -> String {
    let client = std::any::type_name::<C>();
    let client = client.split('<').next().unwrap_or(client);
    let client = client.rsplit("::").next().unwrap_or(client);
    let service = client.strip_suffix("Client").unwrap_or(client);
    let method: String = method
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    format!("{service}.{method}")
}

/// `row!(name, field, client.method(request))`: the call on a clone of the client, sent only
/// when the table runs.
#[macro_export]
macro_rules! row {
    ($name:expr, $field:expr, $client:ident . $method:ident ( $request:expr ) $(,)?) => {{
        let mut client = $client.clone();
        let request = $request;
        $crate::bad_requests::Row::new(
            $crate::bad_requests::rpc_name(&client, stringify!($method)),
            $name,
            $field,
            async move { client.$method(request).await },
        )
    }};
}

/// Runs every row; returns one line per row that was not refused as it must be.
pub async fn run(rows: Vec<Row>) -> Vec<String> {
    let mut failures = Vec::new();
    for Row {
        name, field, call, ..
    } in rows
    {
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

/// `text` without its `//` comments.
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The body of every block `keyword NAME { … }` of `text`: (NAME, body), nested braces
/// included in the body.
fn blocks<'a>(text: &'a str, keyword: &str) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    let mut rest = text;
    let opener = format!("{keyword} ");
    while let Some(at) = rest.find(&opener) {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = &rest[at + opener.len()..];
        let Some(open) = after.find('{') else { break };
        let name = after[..open].trim();
        let mut depth = 0;
        let mut close = None;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.expect("unbalanced braces in the .proto file");
        if !preceded_by_word && !name.is_empty() && !name.contains(char::is_whitespace) {
            found.push((name, &after[open + 1..close]));
        }
        rest = &after[open + 1..];
    }
    found
}

/// Every RPC of `proto` (the text of a `.proto` file) whose request message has at least one
/// field, as `Service.Method`, in the order of the file. An RPC whose request is an empty
/// message (`RepublishRequest {}`) takes no input.
pub fn rpcs_taking_input(proto: &str) -> Vec<String> {
    let proto = strip_comments(proto);
    let messages: BTreeMap<&str, &str> = blocks(&proto, "message").into_iter().collect();
    let mut rpcs = Vec::new();
    for (service, body) in blocks(&proto, "service") {
        for declaration in body.split("rpc ").skip(1) {
            let (method, rest) = declaration
                .split_once('(')
                .expect("an rpc declaration names its request");
            let request = rest
                .split_once(')')
                .map(|(request, _)| request.trim().trim_start_matches("stream "))
                .expect("an rpc declaration closes its request");
            let takes_input = match messages.get(request) {
                Some(fields) => !fields.trim().is_empty(),
                None => request != "google.protobuf.Empty",
            };
            if takes_input {
                rpcs.push(format!("{service}.{}", method.trim()));
            }
        }
    }
    rpcs
}

/// Fails unless every RPC of `proto` that takes input has at least one row, and every row
/// calls an RPC of `proto`; prints the rows per RPC.
pub fn assert_every_rpc_has_rows(proto: &str, rows: &[Row]) {
    let rpcs = rpcs_taking_input(proto);
    let mut per_rpc: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        *per_rpc.entry(row.rpc.as_str()).or_insert(0) += 1;
    }
    let without_rows: Vec<&String> = rpcs
        .iter()
        .filter(|rpc| !per_rpc.contains_key(rpc.as_str()))
        .collect();
    let unknown: Vec<&&str> = per_rpc
        .keys()
        .filter(|rpc| !rpcs.iter().any(|known| known == *rpc))
        .collect();
    for rpc in &rpcs {
        println!("  {rpc}: {} rows", per_rpc.get(rpc.as_str()).unwrap_or(&0));
    }
    assert!(
        without_rows.is_empty(),
        "RPCs that take input but have no bad-request row: {without_rows:?}"
    );
    assert!(
        unknown.is_empty(),
        "rows calling RPCs that take no input or are not in the .proto file: {unknown:?}"
    );
}

/// Runs the table `rows` against a service whose database `pool` holds (at least) `tables`,
/// and fails unless every RPC of `proto` (the service's `.proto` text) that takes input has
/// rows, every row was refused as it must be, and no table changed. Prints the row count.
pub async fn assert_all_refused_writing_nothing(
    pool: &sqlx::PgPool,
    tables: &[&str],
    proto: &str,
    rows: Vec<Row>,
) {
    let package = strip_comments(proto)
        .lines()
        .find_map(|line| line.trim().strip_prefix("package "))
        .map(|package| package.trim_end_matches(';').trim().to_owned())
        .unwrap_or_default();
    println!(
        "{package}: {} bad requests over {} RPCs that take input",
        rows.len(),
        rpcs_taking_input(proto).len()
    );
    assert_every_rpc_has_rows(proto, &rows);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_with_an_empty_request_take_no_input() {
        let proto = "package a.v1;\n\
            // service Commented { rpc Nope(X) returns (Y); }\n\
            service One {\n  // rpc Gone(X) returns (Y);\n  rpc Get(GetRequest) returns (Thing);\n\
              rpc Again(RepublishRequest) returns (Thing);\n}\n\
            service Two { rpc Put(PutRequest) returns (Thing); rpc Ping(google.protobuf.Empty) returns (Thing); }\n\
            message GetRequest {\n  string id = 1;\n}\n\
            message RepublishRequest {}\n\
            message PutRequest { message Inner { int32 x = 1; } Inner inner = 1; }\n";
        assert_eq!(rpcs_taking_input(proto), ["One.Get", "Two.Put"]);
    }

    #[test]
    fn every_rpc_of_tandem_takes_input() {
        for (proto, services) in [
            (
                include_str!("../../proto/tandem/crm/v1/crm.proto"),
                ["CrmService", "CrmSync"],
            ),
            (
                include_str!("../../proto/tandem/erp/v1/erp.proto"),
                ["ErpService", "ErpSync"],
            ),
        ] {
            let rpcs = rpcs_taking_input(proto);
            let declared = proto.matches("  rpc ").count();
            assert_eq!(rpcs.len(), declared, "{rpcs:?}");
            for service in services {
                assert!(
                    rpcs.iter()
                        .any(|rpc| rpc.starts_with(&format!("{service}.")))
                );
            }
        }
    }

    #[test]
    fn rpc_names_come_from_the_client_type_and_the_method() {
        struct CrmSyncClient<T>(T);
        assert_eq!(
            rpc_name(&CrmSyncClient(()), "apply_stock_levels"),
            "CrmSync.ApplyStockLevels"
        );
    }
}
