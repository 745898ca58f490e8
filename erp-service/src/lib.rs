//! Tandem's ERP service: the system of record for products, stock, fulfilment and customer
//! finance, and the mirror of the CRM's customer profiles.
//!
//! - [`settings`]: the typed configuration (`ERP__*`).
//! - [`app`]: [`Application::build`] then [`Application::run_until_stopped`].
//! - [`customers`]: the customer mirror (version-gated apply) and lookups.
//! - [`products`], [`warehouses`]: the catalogue and where stock is kept.
//! - [`stock`]: levels, the immutable ledger, the lock discipline, reservation planning: the
//!   primitive that [`orders`] and [`inventory`] share, depending on neither.
//! - [`inventory`]: receipts, adjustments, transfers and counts (reserving backorders).
//! - [`orders`]: sales orders from acceptance to invoice or cancellation.
//! - [`finance`]: credit terms, open balance, payments, the credit check.
//! - [`republish`]: the snapshot of everything the ERP publishes, for an initial load.
//! - [`restore`]: after a restore of the database, versions lifted above the CRM's mirrors and
//!   products taken back from its catalogue.
//! - [`grpc`]: the `tandem.erp.v1.ErpService` and `tandem.erp.v1.ErpSync` handlers.
//! - [`error`]: the service's error type (no tonic: `grpc/status.rs` maps it to a status).
//! - [`text`]: the NUL characters PostgreSQL cannot store, refused by field.

// Items are visible only as far as they are used: `pub` means part of the crate's API.
#![warn(unreachable_pub)]

pub mod app;
pub mod customers;
pub mod error;
pub mod finance;
pub mod grpc;
pub mod inventory;
pub mod money;
pub mod orders;
pub mod products;
pub mod republish;
pub mod restore;
mod retry;
pub mod settings;
pub mod stock;
pub mod text;
pub mod warehouses;

pub use app::Application;
pub use settings::Settings;

/// Page sizes of the ERP's List RPCs.
pub const PAGE_SIZES: tandem_common::paging::PageSizes =
    tandem_common::paging::PageSizes::up_to(500);
