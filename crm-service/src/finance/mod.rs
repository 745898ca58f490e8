//! The finance mirror: each customer's credit limit, payment terms, open balance and credit
//! hold, owned by the ERP. Written only through `CrmSync.ApplyCustomerFinance`, version-gated,
//! and never published (no echo).

pub mod model;
pub(crate) mod store;

use tandem_common::pool::Db;
use uuid::Uuid;

pub use model::{Finance, FinanceData};

use crate::{
    error::{Error, Result},
    mirror::Applied,
};

#[derive(Clone)]
pub struct FinanceMirror {
    pool: Db,
}

impl FinanceMirror {
    pub fn new(pool: Db) -> Self {
        Self { pool }
    }

    /// Applies the ERP's finance view of `customer_id` at `version`; an older or equal version
    /// changes nothing, unless `repair` (reconcile) lets an equal one apply. Unknown customers
    /// are NOT_FOUND (the bridge retries until the customer exists).
    #[tracing::instrument(skip(self, data))]
    pub async fn apply(
        &self,
        customer_id: Uuid,
        data: FinanceData,
        version: i64,
        repair: bool,
    ) -> Result<Applied> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM customers WHERE id = $1 FOR SHARE")
                .bind(customer_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(Error::not_found("customer", customer_id));
        }
        let applied = store::apply(&mut tx, customer_id, &data, version, repair).await?;
        tx.commit().await?;
        Ok(applied)
    }
}
