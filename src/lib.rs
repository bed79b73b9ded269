//! The `lmsbridge` binary's library: command-line parsing, settings loading and the demo.
//! Kept as a library so integration tests can start the demo in-process.

pub mod cli;
pub mod demo;
mod logging;
pub mod moodle_plugin;
pub mod settings;
