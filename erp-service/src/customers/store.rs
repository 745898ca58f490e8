//! SQL for the customer mirror.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, types::Json};
use tandem_proto::events::CustomerStatus;
use uuid::Uuid;

use super::{Address, Applied, Customer, Profile};

/// Upserts a set of profiles, each when its `version` is newer than the stored one, in one
/// statement: the `WHERE` on the conflict branch is the version gate, so concurrent applies of
/// different versions leave the newest. With `repair` (reconcile), an equal version also
/// applies when any mirrored field differs (drift written without a version change); an
/// identical row is left alone, so `changed` means the mirror really changed.
///
/// The ids must be distinct (a row is written once per statement); rows are locked in id
/// order. The outcome of each customer by id: a profile the gate refused reports the stored
/// version, read after the upsert has locked its row.
pub(crate) async fn apply_set(
    conn: &mut PgConnection,
    set: &[(&Profile, i64)],
    repair: bool,
) -> Result<HashMap<Uuid, Applied>, sqlx::Error> {
    let ids: Vec<Uuid> = set.iter().map(|(p, _)| p.id).collect();
    let written: Vec<(Uuid, i64)> = sqlx::query_as(
        "INSERT INTO customers AS c (id, display_name, email, phone, tax_id, status, \
                                     external_ref, addresses, profile_version) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                              $6::text[], $7::text[], $8::jsonb[], $9::bigint[]) \
         ORDER BY 1 \
         ON CONFLICT (id) DO UPDATE SET \
             display_name = EXCLUDED.display_name, email = EXCLUDED.email, \
             phone = EXCLUDED.phone, tax_id = EXCLUDED.tax_id, status = EXCLUDED.status, \
             external_ref = EXCLUDED.external_ref, addresses = EXCLUDED.addresses, \
             profile_version = EXCLUDED.profile_version, profile_update_time = now() \
         WHERE c.profile_version < EXCLUDED.profile_version \
            OR ($10 AND c.profile_version = EXCLUDED.profile_version \
                AND (c.display_name, c.email, c.phone, c.tax_id, c.status, c.external_ref, \
                     c.addresses) \
                    IS DISTINCT FROM \
                    (EXCLUDED.display_name, EXCLUDED.email, EXCLUDED.phone, EXCLUDED.tax_id, \
                     EXCLUDED.status, EXCLUDED.external_ref, EXCLUDED.addresses)) \
         RETURNING id, profile_version",
    )
    .bind(&ids)
    .bind(
        set.iter()
            .map(|(p, _)| p.display_name.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        set.iter()
            .map(|(p, _)| p.email.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        set.iter()
            .map(|(p, _)| p.phone.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        set.iter()
            .map(|(p, _)| p.tax_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        set.iter()
            .map(|(p, _)| p.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        set.iter()
            .map(|(p, _)| p.external_ref.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        set.iter()
            .map(|(p, _)| Json(&p.addresses))
            .collect::<Vec<_>>(),
    )
    .bind(set.iter().map(|(_, version)| *version).collect::<Vec<_>>())
    .bind(repair)
    .fetch_all(&mut *conn)
    .await?;
    let mut applied: HashMap<Uuid, Applied> = written
        .into_iter()
        .map(|(id, current_version)| {
            let outcome = Applied {
                changed: true,
                current_version,
            };
            (id, outcome)
        })
        .collect();
    if applied.len() < set.len() {
        let refused: Vec<Uuid> = ids
            .into_iter()
            .filter(|id| !applied.contains_key(id))
            .collect();
        let stored: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT id, profile_version FROM customers WHERE id = ANY($1)")
                .bind(&refused)
                .fetch_all(&mut *conn)
                .await?;
        applied.extend(stored.into_iter().map(|(id, current_version)| {
            let outcome = Applied {
                changed: false,
                current_version,
            };
            (id, outcome)
        }));
    }
    Ok(applied)
}

type Row = (
    Uuid,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Json<Vec<Address>>,
    i64,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, display_name, email, phone, tax_id, status, external_ref, addresses, \
                       profile_version, profile_update_time";

fn from_row(row: Row) -> Result<Customer, sqlx::Error> {
    let (
        id,
        display_name,
        email,
        phone,
        tax_id,
        status,
        external_ref,
        Json(addresses),
        version,
        updated,
    ) = row;
    let status = CustomerStatus::parse(&status).ok_or_else(|| {
        sqlx::Error::Decode(format!("customer {id} has unknown status {status:?}").into())
    })?;
    Ok(Customer {
        profile: Profile {
            id,
            display_name,
            email,
            phone,
            tax_id,
            status,
            external_ref,
            addresses,
        },
        profile_version: version,
        profile_update_time: updated,
    })
}

pub(crate) async fn get(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(from_row).transpose()
}

/// Customers after id `after`, ordered by id, at most `limit`.
pub(crate) async fn list(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Customer>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM customers WHERE ($1::uuid IS NULL OR id > $1) \
         ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(from_row).collect()
}
