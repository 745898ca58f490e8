//! The listings that `reconcile` and `resync` compare and repair from: each List RPC read page
//! by page in the background ([`Items`]), a few pages ahead of its reader, with its progress
//! shown unless `quiet`. One function per listing, so every command reads an entity the same
//! way; a caller that needs the whole listing at once collects it ([`Items::all`]), one that
//! compares in order streams it and holds only a few pages.

use tandem_proto::{crm::v1 as crm, erp::v1 as erp};
use tonic::Status;

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::Instrument;

use super::reconcile::{ErpClient, PAGE};
use crate::flows::Flows;

/// Every customer of the CRM.
pub(crate) fn crm_customers(flows: &Flows, quiet: bool) -> Items<crm::Customer> {
    let flows = flows.clone();
    Items::read("CRM customers", quiet, move |page_token| {
        let mut crm = flows.crm.clone();
        let request = flows.request(crm::ListCustomersRequest {
            page_size: PAGE,
            page_token,
            ..crm::ListCustomersRequest::default()
        });
        async move {
            let page = crm.list_customers(request).await?.into_inner();
            Ok((page.customers, page.next_page_token))
        }
    })
}

/// Every order of the CRM.
pub(crate) fn crm_orders(flows: &Flows, quiet: bool) -> Items<crm::Order> {
    let flows = flows.clone();
    Items::read("CRM orders", quiet, move |page_token| {
        let mut crm = flows.crm.clone();
        let request = flows.request(crm::ListOrdersRequest {
            page_size: PAGE,
            page_token,
            ..crm::ListOrdersRequest::default()
        });
        async move {
            let page = crm.list_orders(request).await?.into_inner();
            Ok((page.orders, page.next_page_token))
        }
    })
}

/// Every product of the CRM's catalogue mirror, inactive ones included.
pub(crate) fn crm_catalogue(flows: &Flows, quiet: bool) -> Items<crm::Product> {
    let flows = flows.clone();
    Items::read("CRM catalogue", quiet, move |page_token| {
        let mut crm = flows.crm.clone();
        let request = flows.request(crm::ListProductsRequest {
            page_size: PAGE,
            page_token,
            include_inactive: true,
        });
        async move {
            let page = crm.list_products(request).await?.into_inner();
            Ok((page.products, page.next_page_token))
        }
    })
}

/// Every customer of the ERP (the CRM's profile mirror with the ERP's finance).
pub(crate) fn erp_customers(flows: &Flows, erp: &ErpClient, quiet: bool) -> Items<erp::Customer> {
    let (flows, erp) = (flows.clone(), erp.clone());
    Items::read("ERP customers", quiet, move |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListCustomersRequest {
            page_size: PAGE,
            page_token,
        });
        async move {
            let page = erp.list_customers(request).await?.into_inner();
            Ok((page.customers, page.next_page_token))
        }
    })
}

/// Every sales order of the ERP.
pub(crate) fn erp_orders(flows: &Flows, erp: &ErpClient, quiet: bool) -> Items<erp::SalesOrder> {
    let (flows, erp) = (flows.clone(), erp.clone());
    Items::read("ERP orders", quiet, move |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListSalesOrdersRequest {
            page_size: PAGE,
            page_token,
            ..erp::ListSalesOrdersRequest::default()
        });
        async move {
            let page = erp.list_sales_orders(request).await?.into_inner();
            Ok((page.orders, page.next_page_token))
        }
    })
}

/// Every product of the ERP.
pub(crate) fn erp_products(flows: &Flows, erp: &ErpClient, quiet: bool) -> Items<erp::Product> {
    let (flows, erp) = (flows.clone(), erp.clone());
    Items::read("ERP products", quiet, move |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListProductsRequest {
            page_size: PAGE,
            page_token,
            ..erp::ListProductsRequest::default()
        });
        async move {
            let page = erp.list_products(request).await?.into_inner();
            Ok((page.products, page.next_page_token))
        }
    })
}

/// Every stock level of the ERP (per sku and warehouse).
pub(crate) fn erp_stock_levels(
    flows: &Flows,
    erp: &ErpClient,
    quiet: bool,
) -> Items<erp::StockLevel> {
    let (flows, erp) = (flows.clone(), erp.clone());
    Items::read("ERP stock levels", quiet, move |page_token| {
        let mut erp = erp.clone();
        let request = flows.request(erp::ListStockLevelsRequest {
            page_size: PAGE,
            page_token,
            ..erp::ListStockLevelsRequest::default()
        });
        async move {
            let page = erp.list_stock_levels(request).await?.into_inner();
            Ok((page.levels, page.next_page_token))
        }
    })
}

/// How many pages a listing reads ahead of its reader.
const AHEAD: usize = 4;

/// The items of a List RPC, read page by page by a task of their own (at most [`AHEAD`]
/// pages ahead), in the order the service lists them. Dropping it stops the reading.
pub(crate) struct Items<T> {
    label: &'static str,
    pages: mpsc::Receiver<Result<Vec<T>, Status>>,
    page: std::vec::IntoIter<T>,
    reader: JoinHandle<()>,
}

impl<T: Send + 'static> Items<T> {
    /// Starts reading: `fetch(page_token)` answers one page and the next token.
    pub(crate) fn read<F, Fut>(label: &'static str, quiet: bool, mut fetch: F) -> Self
    where
        F: FnMut(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(Vec<T>, String), Status>> + Send,
    {
        let (send, pages) = mpsc::channel(AHEAD);
        let reader = async move {
            let progress = bar(label, quiet);
            let mut token = String::new();
            loop {
                let page = fetch(std::mem::take(&mut token)).await;
                let done = match &page {
                    Ok((items, next)) => {
                        progress.inc(items.len() as u64);
                        token.clone_from(next);
                        next.is_empty()
                    }
                    Err(_) => true,
                };
                if send.send(page.map(|(items, _)| items)).await.is_err() || done {
                    break;
                }
            }
            progress.finish_and_clear();
        };
        Self {
            label,
            pages,
            page: Vec::new().into_iter(),
            reader: tokio::spawn(reader.in_current_span()),
        }
    }

    /// The next item; `None` after the last.
    pub(crate) async fn next(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(item) = self.page.next() {
                return Ok(Some(item));
            }
            match self.pages.recv().await {
                Some(page) => self.page = page?.into_iter(),
                None => return Ok(None),
            }
        }
    }

    /// The next `n` items, fewer at the end; empty after the last.
    pub(crate) async fn chunk(&mut self, n: usize) -> Result<Vec<T>, Status> {
        let mut chunk = Vec::with_capacity(n.min(PAGE as usize));
        while chunk.len() < n {
            match self.next().await? {
                Some(item) => chunk.push(item),
                None => break,
            }
        }
        Ok(chunk)
    }

    /// The whole listing.
    pub(crate) async fn all(mut self) -> Result<Vec<T>, Status> {
        let mut all: Vec<T> = self.page.by_ref().collect();
        while let Some(page) = self.pages.recv().await {
            all.extend(page?);
        }
        Ok(all)
    }
}

impl<T> Drop for Items<T> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A key of two listings merged by key: both hold it, or only one of them.
pub(crate) enum Pair<A, B> {
    Both(A, B),
    Left(A),
    Right(B),
}

/// The key of a listing's item; `None` skips the item.
type Key<T> = fn(&T) -> Option<&str>;

/// Two listings in the same key order, walked together (a merge join): each step answers the
/// smallest key left and what each side holds of it. A listing whose keys do not rise is an
/// error (comparing it would report drift that is not there).
pub(crate) struct Merged<A, B> {
    left: Side<A>,
    right: Side<B>,
}

struct Side<T> {
    items: Items<T>,
    key: Key<T>,
    head: Option<T>,
    last: Option<String>,
}

impl<T: Send + 'static> Side<T> {
    fn new(items: Items<T>, key: Key<T>) -> Self {
        Self {
            items,
            key,
            head: None,
            last: None,
        }
    }

    /// The next item with a key (`None` at the end), checking that keys rise.
    async fn fill(&mut self) -> Result<(), Status> {
        while self.head.is_none() {
            let Some(item) = self.items.next().await? else {
                return Ok(());
            };
            let Some(key) = (self.key)(&item) else {
                continue;
            };
            if let Some(last) = &self.last
                && key <= last.as_str()
            {
                return Err(Status::internal(format!(
                    "{} are not in key order: {key} came after {last}",
                    self.items.label
                )));
            }
            self.last = Some(key.to_owned());
            self.head = Some(item);
        }
        Ok(())
    }
}

impl<A: Send + 'static, B: Send + 'static> Merged<A, B> {
    pub(crate) fn new(
        left: Items<A>,
        left_key: Key<A>,
        right: Items<B>,
        right_key: Key<B>,
    ) -> Self {
        Self {
            left: Side::new(left, left_key),
            right: Side::new(right, right_key),
        }
    }

    /// The next key's pair; `None` once both listings ended.
    pub(crate) async fn next(&mut self) -> Result<Option<Pair<A, B>>, Status> {
        self.left.fill().await?;
        self.right.fill().await?;
        Ok(match (self.left.head.take(), self.right.head.take()) {
            (None, None) => None,
            (Some(a), None) => Some(Pair::Left(a)),
            (None, Some(b)) => Some(Pair::Right(b)),
            (Some(a), Some(b)) => {
                let order = (self.left.key)(&a).cmp(&(self.right.key)(&b));
                match order {
                    std::cmp::Ordering::Less => {
                        self.right.head = Some(b);
                        Some(Pair::Left(a))
                    }
                    std::cmp::Ordering::Greater => {
                        self.left.head = Some(a);
                        Some(Pair::Right(b))
                    }
                    std::cmp::Ordering::Equal => Some(Pair::Both(a, b)),
                }
            }
        })
    }
}

/// A spinner counting what a listing read (hidden when `quiet`).
fn bar(label: &'static str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // Listings read at once each keep a line of their own.
    static LINES: OnceLock<MultiProgress> = OnceLock::new();
    let bar = LINES
        .get_or_init(MultiProgress::new)
        .add(ProgressBar::new_spinner());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} read") {
        bar.set_style(style);
    }
    bar.set_message(label);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing served from `pages`, as a List RPC would, token by token.
    fn served(pages: &[&[&'static str]]) -> Items<&'static str> {
        let pages: Vec<Vec<&'static str>> = pages.iter().map(|p| p.to_vec()).collect();
        Items::read("test items", true, move |token| {
            let index: usize = if token.is_empty() {
                0
            } else {
                token.parse().unwrap()
            };
            let next = if index + 1 < pages.len() {
                (index + 1).to_string()
            } else {
                String::new()
            };
            let page = pages.get(index).cloned().unwrap_or_default();
            async move { Ok((page, next)) }
        })
    }

    fn key<'a>(item: &'a &'static str) -> Option<&'a str> {
        (!item.is_empty()).then_some(*item)
    }

    async fn walk(left: Items<&'static str>, right: Items<&'static str>) -> Result<String, Status> {
        let mut merged = Merged::new(left, key, right, key);
        let mut seen = Vec::new();
        while let Some(pair) = merged.next().await? {
            seen.push(match pair {
                Pair::Both(a, b) => format!("{a}={b}"),
                Pair::Left(a) => format!("{a}<"),
                Pair::Right(b) => format!(">{b}"),
            });
        }
        Ok(seen.join(" "))
    }

    #[tokio::test]
    async fn a_listing_is_read_across_its_pages_in_order() {
        let items = served(&[&["a", "b"], &[], &["c"]]);
        assert_eq!(items.all().await.unwrap(), ["a", "b", "c"]);
        let mut items = served(&[&["a"], &["b"]]);
        assert_eq!(items.next().await.unwrap(), Some("a"));
        assert_eq!(items.all().await.unwrap(), ["b"]);
    }

    #[tokio::test]
    async fn a_listing_is_taken_in_chunks_that_cross_its_pages() {
        let mut items = served(&[&["a", "b", "c"], &[], &["d", "e"]]);
        assert_eq!(items.chunk(2).await.unwrap(), ["a", "b"]);
        assert_eq!(items.chunk(2).await.unwrap(), ["c", "d"]);
        assert_eq!(items.chunk(2).await.unwrap(), ["e"]);
        assert!(items.chunk(2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn merged_listings_pair_equal_keys_and_name_the_side_that_holds_a_key_alone() {
        let left = served(&[&["a", "c"], &["d", "f"]]);
        let right = served(&[&["b"], &["c", "", "e", "f", "g"]]);
        assert_eq!(
            walk(left, right).await.unwrap(),
            "a< >b c=c d< >e f=f >g",
            "an item without a key is skipped"
        );
        assert_eq!(walk(served(&[]), served(&[&["a"]])).await.unwrap(), ">a");
    }

    #[tokio::test]
    async fn a_listing_out_of_key_order_is_an_error_not_drift() {
        let left = served(&[&["a", "c"], &["b"]]);
        let right = served(&[&["a", "b", "c"]]);
        let error = walk(left, right).await.unwrap_err();
        assert!(
            error
                .message()
                .contains("test items are not in key order: b came after c"),
            "{error:?}"
        );
        // A key twice would pair one side's item with nothing.
        let error = walk(served(&[&["a"], &["a"]]), served(&[&["a"]]))
            .await
            .unwrap_err();
        assert!(error.message().contains("a came after a"), "{error:?}");
    }

    #[tokio::test]
    async fn a_failed_page_ends_the_listing_with_its_error() {
        let mut calls = 0;
        let mut items: Items<&'static str> = Items::read("test items", true, move |_token| {
            calls += 1;
            let answer = if calls == 1 {
                Ok((vec!["a"], "next".to_owned()))
            } else {
                Err(Status::unavailable("the CRM went away"))
            };
            async move { answer }
        });
        assert_eq!(items.next().await.unwrap(), Some("a"));
        assert_eq!(
            items.next().await.unwrap_err().code(),
            tonic::Code::Unavailable
        );
    }
}
