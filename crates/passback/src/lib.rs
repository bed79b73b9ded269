//! The grade passback worker.
//!
//! It claims due scores with a lease, sends each through its platform's adapter, and
//! records the outcome: delivered, retry later (exponential backoff with full jitter, never
//! sooner than the platform's `Retry-After`), or dead with the platform's reason. No
//! transaction is held while a platform is called. A worker that dies mid-send loses
//! nothing: its lease lapses and another worker takes the row; resending is harmless because
//! scores carry their original timestamp.

mod backoff;
mod interrupted;
pub mod limiter;
pub mod moodle;
pub mod webhooks;
mod worker;

pub use backoff::Backoff;
pub use limiter::{LimiterConfig, Limiters};
pub use webhooks::{WebhookConfig, WebhookSender};
pub use worker::{AdapterResolver, Worker, WorkerConfig};
