//! SQL for the customer finance mirror.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Finance, FinanceData};
use crate::mirror::Applied;

/// Upserts `data` when `version` is newer than the stored one (or, with `repair`, equal to it),
/// in one statement: the `WHERE` on the conflict branch is the version gate.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    customer_id: Uuid,
    data: &FinanceData,
    version: i64,
    repair: bool,
) -> Result<Applied, sqlx::Error> {
    let written: Option<i64> = sqlx::query_scalar(
        "INSERT INTO customer_finance (customer_id, currency, credit_limit_minor, \
                                       open_balance_minor, payment_terms, credit_hold, \
                                       source_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (customer_id) DO UPDATE SET \
             currency = EXCLUDED.currency, credit_limit_minor = EXCLUDED.credit_limit_minor, \
             open_balance_minor = EXCLUDED.open_balance_minor, \
             payment_terms = EXCLUDED.payment_terms, credit_hold = EXCLUDED.credit_hold, \
             source_version = EXCLUDED.source_version, update_time = now() \
         WHERE customer_finance.source_version < EXCLUDED.source_version \
            OR ($8 AND customer_finance.source_version = EXCLUDED.source_version) \
         RETURNING source_version",
    )
    .bind(customer_id)
    .bind(&data.currency)
    .bind(data.credit_limit_minor)
    .bind(data.open_balance_minor)
    .bind(&data.payment_terms)
    .bind(data.credit_hold)
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
            let current_version: i64 = sqlx::query_scalar(
                "SELECT source_version FROM customer_finance WHERE customer_id = $1",
            )
            .bind(customer_id)
            .fetch_one(conn)
            .await?;
            Ok(Applied {
                changed: false,
                current_version,
            })
        }
    }
}

/// The finance view's columns for a query of another module that joins
/// `LEFT JOIN customer_finance f ON f.customer_id = …`; [`from_joined`] reads them back.
pub(crate) const JOINED_COLUMNS: &str = "f.currency, f.credit_limit_minor, f.open_balance_minor, \
                                  f.payment_terms, f.credit_hold, f.source_version, f.update_time";

/// [`JOINED_COLUMNS`] as decoded: all `None` when the ERP reported no finance yet.
pub(crate) type JoinedRow = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<DateTime<Utc>>,
);

/// The finance view from [`JOINED_COLUMNS`], if the customer has one.
pub(crate) fn from_joined(row: JoinedRow) -> Option<Finance> {
    let (currency, limit, balance, payment_terms, credit_hold, version, updated) = row;
    Some(Finance {
        data: FinanceData {
            currency: currency?,
            credit_limit_minor: limit?,
            open_balance_minor: balance?,
            payment_terms,
            credit_hold: credit_hold?,
        },
        source_version: version?,
        update_time: updated?,
    })
}
