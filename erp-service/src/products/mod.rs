//! The product catalogue: every change writes the row and its `erp.product.upserted` outbox
//! event in one transaction, then wakes the relay.

pub mod model;
pub(crate) mod store;

use tandem_common::pool::Db;
use tandem_common::{
    idempotency::{self, Answer, Once},
    outbox::{OutboxTx, OutboxWaker},
    paging::Page,
};
use uuid::Uuid;

pub use model::{Product, ProductFields, ProductPatch, is_sku};

use crate::{
    PAGE_SIZES,
    error::{Error, Result},
};

pub(crate) const SOURCE: &str = "erp";

#[derive(Clone)]
pub struct Products {
    pool: Db,
    outbox: OutboxWaker,
}

/// Which products a list returns.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub active: Option<bool>,
    pub sku_prefix: String,
}

impl Products {
    pub fn new(pool: Db, outbox: OutboxWaker) -> Self {
        Self { pool, outbox }
    }

    /// Creates a product; with `once`, at most once per request id (a retry replays).
    #[tracing::instrument(skip(self, fields, once), fields(product_id))]
    pub async fn create(
        &self,
        sku: &str,
        fields: ProductFields,
        once: Option<&Once<Product>>,
    ) -> Result<Answer<Product>> {
        let fields = fields.normalised();
        let mut violations: Vec<_> = model::sku_violation("sku", sku).into_iter().collect();
        violations.extend(fields.violations());
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        let mut tx = self.outbox.begin(&self.pool).await?;
        if let Some(replay) = idempotency::replay(&mut tx, once).await? {
            return Ok(Answer::Replayed(replay));
        }
        let product = store::insert(&mut tx, Uuid::now_v7(), sku, &fields)
            .await
            .map_err(|error| {
                if tandem_common::db::is_unique_violation(&error) {
                    Error::AlreadyExists(format!("a product with sku {sku} already exists"))
                } else {
                    Error::Database(error)
                }
            })?;
        tracing::Span::current().record("product_id", tracing::field::display(product.id));
        publish_upserted(&mut tx, &product).await?;
        idempotency::remember(&mut tx, once, &product).await?;
        tx.commit().await?;
        Ok(Answer::Fresh(product))
    }

    /// By id or sku.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, key: &str) -> Result<Product> {
        let mut conn = self.pool.acquire().await?;
        store::get(&mut conn, key, false)
            .await?
            .ok_or_else(|| Error::not_found("product", key))
    }

    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        filter: &ProductFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Product>, String)> {
        let filters = format!("products|{:?}|{:?}", filter.active, filter.sku_prefix);
        let page: Page<String> = Page::parse(page_size, page_token, &filters, PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = store::list(
            &mut conn,
            page.after.as_deref(),
            filter.active,
            &filter.sku_prefix,
            page.fetch_limit(),
        )
        .await?;
        let next = page.finish(&mut rows, |p| p.sku.clone())?;
        Ok((rows, next))
    }

    /// Applies `patch` to the product `key` (id or sku). With `expected_version`, fails with
    /// ABORTED unless it is current. A patch that changes nothing publishes nothing.
    #[tracing::instrument(skip(self, patch))]
    pub async fn update(
        &self,
        key: &str,
        patch: ProductPatch,
        expected_version: Option<i64>,
    ) -> Result<Product> {
        let mut tx = self.outbox.begin(&self.pool).await?;
        let current = store::get(&mut tx, key, true)
            .await?
            .ok_or_else(|| Error::not_found("product", key))?;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(Error::Aborted(format!(
                "product {} is at version {}, not {expected}; read it again and retry",
                current.sku, current.version
            )));
        }
        let fields = current.fields.patched(patch);
        let violations = fields.violations();
        if !violations.is_empty() {
            return Err(Error::Invalid(violations));
        }
        if fields == current.fields {
            return Ok(current);
        }
        let product = store::update(&mut tx, current.id, &fields).await?;
        publish_upserted(&mut tx, &product).await?;
        tx.commit().await?;
        Ok(product)
    }
}

/// Enqueues `erp.product.upserted` for `product` at its current version.
pub(crate) async fn publish_upserted(tx: &mut OutboxTx, product: &Product) -> Result<()> {
    Ok(tx
        .publish(SOURCE, product.version, &product.upserted_event())
        .await?)
}
