//! Tandem's sync bridge: consumes change events from Kafka, translates them, and applies them
//! to the other service through its sync RPCs. An offset is stored only after its event's
//! effect is applied (or the event is dead-lettered), so delivery is at-least-once and the
//! version-gated sync RPCs make the effect exactly-once.
//!
//! - [`settings`]: the typed configuration (`BRIDGE__*`).
//! - [`app`]: [`Application::build`] then [`Application::run_until_stopped`].
//! - [`consumer`]: the consume loop: one ordered worker per partition, offsets, pausing.
//! - [`apply`]: one event: decode, apply with retries, or dead-letter.
//! - [`flows`]: which event goes where: decoding, translation, the target RPC.
//! - [`ops`]: what the operator CLI `tandemctl` does (dead letters, publishing).
//! - [`dead_letter`]: publishing events that can never apply, with the reason in headers.
//! - [`offset_reset`]: events the broker deleted before the bridge read them, made loud.

// Items are visible only as far as they are used: `pub` means part of the crate's API.
#![warn(unreachable_pub)]

pub mod app;
pub mod apply;
pub mod consumer;
pub mod dead_letter;
pub mod flows;
pub mod offset_reset;
pub mod ops;
pub mod reachability;
pub mod rest;
pub mod settings;

pub use app::Application;
pub use settings::Settings;
