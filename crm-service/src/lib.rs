//! Tandem's CRM service: the system of record for customer profiles and sales orders.
//!
//! - [`settings`]: the typed configuration (`CRM__*`).
//! - [`app`]: [`Application::build`] then [`Application::run_until_stopped`].
//! - [`customers`]: the customer domain (validation, storage, events).
//! - [`grpc`]: the `tandem.crm.v1.CrmService` handlers.
//! - [`error`]: the service's error type and its mapping to `tonic::Status`.

pub mod app;
pub mod customers;
pub mod error;
pub mod grpc;
pub mod settings;

pub use app::Application;
pub use settings::Settings;
