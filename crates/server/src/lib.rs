//! The lmsbridge HTTP server: LTI endpoints, the product API, operational endpoints.
//!
//! Handlers are thin: they parse, call the store and the protocol crates, and render. The
//! [`App`] is assembled once at start-up and shared as router state.

mod app;
pub mod config;
pub mod google;
pub mod google_addon_grants;
pub mod google_push_renewal;
mod http;
pub mod keyring;
mod launch_batcher;
pub mod master_key;
pub mod moodle_reconcile;
mod registrations;
pub mod roster_sync;

pub use app::{App, AppBuilder, Running};
pub use config::{LogFormat, Settings};
pub use http::router;
