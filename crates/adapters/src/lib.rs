//! [`domain::LmsAdapter`] implementations.
//!
//! `lti` speaks LTI Advantage to Canvas, Moodle and other LTI 1.3 platforms. The Google
//! Classroom adapter joins it here when the `classroom` crate lands.

mod lti_adapter;

pub use lti_adapter::{LtiAdapter, SigningKeySource, roles as lti_roles};
