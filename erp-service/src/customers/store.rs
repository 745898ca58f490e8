//! SQL for the customer mirror.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tandem_proto::events::CustomerStatus;
use uuid::Uuid;

use super::{Applied, Customer, Profile};

/// Upserts `profile` when `version` is newer than the stored one, in one statement: the
/// `WHERE` on the conflict branch is the version gate, so concurrent applies of different
/// versions leave the newest.
pub async fn apply(
    conn: &mut PgConnection,
    profile: &Profile,
    version: i64,
) -> Result<Applied, sqlx::Error> {
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO customers (id, display_name, email, phone, tax_id, status, external_ref, \
                                profile_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET \
             display_name = EXCLUDED.display_name, email = EXCLUDED.email, \
             phone = EXCLUDED.phone, tax_id = EXCLUDED.tax_id, status = EXCLUDED.status, \
             external_ref = EXCLUDED.external_ref, profile_version = EXCLUDED.profile_version, \
             profile_update_time = now() \
         WHERE customers.profile_version < EXCLUDED.profile_version \
         RETURNING profile_version",
    )
    .bind(profile.id)
    .bind(&profile.display_name)
    .bind(&profile.email)
    .bind(&profile.phone)
    .bind(&profile.tax_id)
    .bind(profile.status.as_str())
    .bind(&profile.external_ref)
    .bind(version)
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
    i64,
    DateTime<Utc>,
);

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Customer>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, display_name, email, phone, tax_id, status, external_ref, profile_version, \
                profile_update_time \
         FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some((id, display_name, email, phone, tax_id, status, external_ref, version, updated)) =
        row
    else {
        return Ok(None);
    };
    let status = CustomerStatus::parse(&status).ok_or_else(|| {
        sqlx::Error::Decode(format!("customer {id} has unknown status {status:?}").into())
    })?;
    Ok(Some(Customer {
        profile: Profile {
            id,
            display_name,
            email,
            phone,
            tax_id,
            status,
            external_ref,
        },
        profile_version: version,
        profile_update_time: updated,
    }))
}
