//! The catalogue mirror (ERP products and available stock per sku), which the sales desk reads
//! and orders quote from. Written only through `CrmSync` (version-gated, never published: no
//! echo).

pub mod model;
pub(crate) mod store;

use tandem_common::paging::Page;
use tandem_common::pool::Db;

pub use model::{Product, ProductData, StockLevel};

use crate::{
    PAGE_SIZES,
    error::{Error, Result},
    mirror::Applied,
};

#[derive(Clone)]
pub struct Catalogue {
    pool: Db,
}

impl Catalogue {
    pub fn new(pool: Db) -> Self {
        Self { pool }
    }

    /// Applies the ERP's product data at `version`; unknown skus are created. With `repair`
    /// (reconcile), an equal version applies too.
    #[tracing::instrument(skip(self, data), fields(sku = %data.sku))]
    pub async fn apply_product(
        &self,
        data: &ProductData,
        version: i64,
        repair: bool,
    ) -> Result<Applied> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::apply_product(&mut conn, data, version, repair).await?)
    }

    /// Applies a batch of stock levels in one transaction, each gated by its own version.
    /// Returns one outcome per level, in the order given. With `repair` (reconcile), an equal
    /// version applies too.
    #[tracing::instrument(skip_all, fields(levels = levels.len(), repair))]
    pub async fn apply_stock_levels(
        &self,
        levels: &[StockLevel],
        repair: bool,
    ) -> Result<Vec<Applied>> {
        // Rows are locked in sku order, so concurrent batches cannot deadlock.
        let mut order: Vec<usize> = (0..levels.len()).collect();
        order.sort_by(|a, b| levels[*a].sku.cmp(&levels[*b].sku));
        let mut outcomes = vec![
            Applied {
                changed: false,
                current_version: 0
            };
            levels.len()
        ];
        let mut tx = self.pool.begin().await?;
        for i in order {
            outcomes[i] = store::apply_stock(&mut tx, &levels[i], repair).await?;
            tandem_common::failpoint::crash_point("crm-stock-mid-batch", "");
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// One page of products (inactive ones too when asked), and the next page's token.
    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        include_inactive: bool,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Product>, String)> {
        let fingerprint = format!("products|{include_inactive}");
        let page: Page<String> = Page::parse(page_size, page_token, &fingerprint, PAGE_SIZES)?;
        let mut conn = self.pool.acquire().await?;
        let mut products = store::list(&mut conn, include_inactive, &page).await?;
        let next = page.finish(&mut products, |p| p.data.sku.clone())?;
        Ok((products, next))
    }

    /// The catalogue rows of `skus`, in the order asked; any unknown sku is NOT_FOUND.
    #[tracing::instrument(skip(self))]
    pub async fn availability(&self, skus: &[String]) -> Result<Vec<Product>> {
        let mut conn = self.pool.acquire().await?;
        let found = store::get_many(&mut conn, skus).await?;
        skus.iter()
            .map(|sku| {
                found
                    .get(sku)
                    .cloned()
                    .ok_or_else(|| Error::not_found("sku", sku))
            })
            .collect()
    }
}
