//! Tandem's ERP service: the system of record for products, stock, fulfilment and customer
//! finance, and the mirror of the CRM's customer profiles.
//!
//! - [`settings`]: the typed configuration (`ERP__*`).
//! - [`app`]: [`Application::build`] then [`Application::run_until_stopped`].
//! - [`customers`]: the customer mirror (version-gated apply) and lookups.
//! - [`grpc`]: the `tandem.erp.v1.ErpService` and `tandem.erp.v1.ErpSync` handlers.
//! - [`error`]: the service's error type and its mapping to `tonic::Status`.

pub mod app;
pub mod customers;
pub mod error;
pub mod grpc;
pub mod settings;

pub use app::Application;
pub use settings::Settings;
