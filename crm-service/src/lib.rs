//! Tandem's CRM service: the system of record for customer profiles and sales orders, with
//! read-only mirrors of what the ERP owns.
//!
//! - [`settings`]: the typed configuration (`CRM__*`).
//! - [`app`]: [`Application::build`] then [`Application::run_until_stopped`].
//! - [`customers`]: customer profiles, contacts and addresses (validation, storage, events).
//! - [`orders`]: sales orders: quoting, lifecycle, events, and the mirrored fulfilment status.
//! - [`catalogue`]: the mirror of ERP products and available stock.
//! - [`finance`]: the mirror of each customer's ERP finance view.
//! - [`restore`]: after a restore of the database, versions lifted above the ERP's mirror and
//!   what the restore lost taken back from it.
//! - [`grpc`]: the `tandem.crm.v1.CrmService` and `tandem.crm.v1.CrmSync` handlers.
//! - [`validation`], [`mirror`]: field rules, apply outcomes.
//! - [`error`]: the service's error type (no tonic: `grpc/status.rs` maps it to a status).

// Items are visible only as far as they are used: `pub` means part of the crate's API.
#![warn(unreachable_pub)]

pub mod app;
pub mod catalogue;
pub mod customers;
pub mod error;
pub mod finance;
pub mod grpc;
pub mod mirror;
pub mod orders;
pub mod restore;
pub mod settings;
pub mod validation;

pub use app::Application;
pub use settings::Settings;

/// Page sizes of the CRM's List RPCs.
pub const PAGE_SIZES: tandem_common::paging::PageSizes =
    tandem_common::paging::PageSizes::up_to(1_000);

/// `source` of every event the CRM publishes.
pub const SOURCE: &str = "crm";

/// At most this many rows per transaction when `CrmSync.Republish` writes the snapshot.
pub const REPUBLISH_BATCH: i64 = 500;
