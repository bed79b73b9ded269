//! LTI 1.3 and LTI Advantage, the protocol only.
//!
//! This crate knows the 1EdTech LTI Core 1.3, Security Framework 1.0, Assignment and Grade
//! Services 2.0 and Names and Role Provisioning Services 2.0 specifications. It holds no web
//! framework and no database: the caller stores states and nonces, and hands in the clock.
//! HTTP calls to platforms go through `reqwest`.

pub mod ags;
pub mod claims;
pub mod deep_linking;
pub mod dynamic_registration;
pub mod http_error;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod launch;
pub mod link_header;
pub mod login;
pub mod migration;
pub mod nrps;
pub mod roles;
pub mod service_url;
pub mod token;

pub use claims::LaunchClaims;
pub use keys::{ToolKey, ToolKeyError};
pub use launch::{LaunchError, LaunchExpectations, LaunchValidator};
