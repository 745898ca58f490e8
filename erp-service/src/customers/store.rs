//! SQL for the customer mirror.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, types::Json};
use tandem_proto::events::CustomerStatus;
use uuid::Uuid;

use super::{Address, Applied, Customer, Profile};

/// Upserts `profile` when `version` is newer than the stored one, in one statement: the
/// `WHERE` on the conflict branch is the version gate, so concurrent applies of different
/// versions leave the newest. With `repair`, an equal version also applies when any mirrored
/// field differs (reconcile repairs drift written without a version change); an identical
/// row is left alone, so `changed` means the mirror really changed.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    profile: &Profile,
    version: i64,
    repair: bool,
) -> Result<Applied, sqlx::Error> {
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO customers (id, display_name, email, phone, tax_id, status, external_ref, \
                                addresses, profile_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET \
             display_name = EXCLUDED.display_name, email = EXCLUDED.email, \
             phone = EXCLUDED.phone, tax_id = EXCLUDED.tax_id, status = EXCLUDED.status, \
             external_ref = EXCLUDED.external_ref, addresses = EXCLUDED.addresses, \
             profile_version = EXCLUDED.profile_version, profile_update_time = now() \
         WHERE customers.profile_version < EXCLUDED.profile_version \
            OR ($10 AND customers.profile_version = EXCLUDED.profile_version \
                AND (customers.display_name, customers.email, customers.phone, \
                     customers.tax_id, customers.status, customers.external_ref, \
                     customers.addresses) \
                    IS DISTINCT FROM \
                    (EXCLUDED.display_name, EXCLUDED.email, EXCLUDED.phone, EXCLUDED.tax_id, \
                     EXCLUDED.status, EXCLUDED.external_ref, EXCLUDED.addresses)) \
         RETURNING profile_version",
    )
    .bind(profile.id)
    .bind(&profile.display_name)
    .bind(&profile.email)
    .bind(&profile.phone)
    .bind(&profile.tax_id)
    .bind(profile.status.as_str())
    .bind(&profile.external_ref)
    .bind(Json(&profile.addresses))
    .bind(version)
    .bind(repair)
    .fetch_optional(&mut *conn)
    .await?;
    match written {
        Some(current_version) => Ok(Applied {
            changed: true,
            current_version,
        }),
        None => {
            let current_version: i64 =
                sqlx::query_scalar("SELECT profile_version FROM customers WHERE id = $1")
                    .bind(profile.id)
                    .fetch_one(conn)
                    .await?;
            Ok(Applied {
                changed: false,
                current_version,
            })
        }
    }
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
