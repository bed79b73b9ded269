//! Sends the product's webhook deliveries: claimed with a lease like scores, signed with the
//! tenant's secret, retried with backoff, dead after a day of failures.
//!
//! Each request carries `Lmsbridge-Event`, `Lmsbridge-Delivery` (the id, for deduplication:
//! a delivery may arrive twice if we crash after sending and before recording) and
//! `Lmsbridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; receivers
//! should refuse a signature older than five minutes.

use crate::backoff::Backoff;
use std::time::{Duration, Instant};
use store::crypto::{MasterKey, hmac_sha256_hex};
use store::{ClaimedWebhook, Store, WebhookOutcome, now_micros};

/// How webhooks are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub lease: Duration,
    pub batch: i64,
    pub backoff: Backoff,
    pub max_attempts: i64,
    pub max_age: Duration,
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            batch: 16,
            backoff: Backoff {
                base: Duration::from_secs(2),
                cap: Duration::from_secs(3600),
            },
            max_attempts: 20,
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The signature header value for `body` sent at unix time `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mac = hmac_sha256_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    format!("t={t},v1={mac}")
}

/// Sends due webhook deliveries.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    store: Store,
    http: reqwest::Client,
    master: MasterKey,
    config: WebhookConfig,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl WebhookSender {
    pub fn new(
        store: Store,
        http: reqwest::Client,
        master: MasterKey,
        config: WebhookConfig,
    ) -> Self {
        Self {
            store,
            http,
            master,
            config,
        }
    }

    /// Claims one batch and sends it. Returns how many deliveries were handled.
    pub async fn run_once(&self, worker: &str) -> Result<usize, store::StoreError> {
        let claimed = self
            .store
            .claim_webhooks(
                worker,
                now_micros() + micros(self.config.lease),
                self.config.batch,
            )
            .await?;
        let n = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for delivery in claimed {
            let this = self.clone();
            let worker = worker.to_owned();
            tasks.spawn(async move { this.deliver(&worker, delivery).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Err(e)) => tracing::error!(error = %e, "recording a webhook attempt failed"),
                Err(e) => tracing::error!(error = %e, "webhook task panicked"),
                Ok(Ok(())) => {}
            }
        }
        Ok(n)
    }

    async fn deliver(&self, worker: &str, d: ClaimedWebhook) -> Result<(), store::StoreError> {
        let started_at = now_micros();
        let clock = Instant::now();
        let outcome = match (&d.url, d.secret(&self.master)?) {
            (Some(url), Some(secret)) => self.send(&d, url, &secret).await,
            _ => WebhookOutcome::Dead {
                status: None,
                error: "the tenant has no webhook endpoint any more".into(),
            },
        };
        let latency_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        let kept = self
            .store
            .finish_webhook(&d, worker, started_at, latency_ms, &outcome)
            .await?;
        if !kept {
            tracing::warn!(delivery = %d.id, "webhook lease lost before the outcome was recorded");
        }
        Ok(())
    }

    async fn send(&self, d: &ClaimedWebhook, url: &str, secret: &str) -> WebhookOutcome {
        let t = now_micros() / 1_000_000;
        let result = self
            .http
            .post(url)
            .timeout(self.config.timeout)
            .header("content-type", "application/json")
            .header("lmsbridge-event", &d.event)
            .header("lmsbridge-delivery", &d.id)
            .header("lmsbridge-signature", signature(secret, t, &d.payload))
            .body(d.payload.clone())
            .send()
            .await;
        let (status, error) = match result {
            Ok(resp) if resp.status().is_success() => {
                return WebhookOutcome::Delivered {
                    status: resp.status().as_u16(),
                };
            }
            Ok(resp) => (
                Some(resp.status().as_u16()),
                format!("the endpoint answered HTTP {}", resp.status().as_u16()),
            ),
            Err(e) if e.is_timeout() => (None, "the endpoint timed out".to_owned()),
            Err(_) => (None, "the endpoint could not be reached".to_owned()),
        };
        let too_old = now_micros() - d.created_at > micros(self.config.max_age);
        if d.attempts >= self.config.max_attempts || too_old {
            return WebhookOutcome::Dead {
                status,
                error: format!("gave up after {} attempts: {error}", d.attempts),
            };
        }
        let attempt = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        let wait = self.config.backoff.delay(attempt, None, &mut rand::rng());
        WebhookOutcome::Retry {
            at: now_micros() + micros(wait),
            status,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let s = signature("whsec_x", 1_700_000_000, "{\"a\":1}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature("whsec_x", 1_700_000_001, "{\"a\":1}"));
        assert_ne!(s, signature("whsec_x", 1_700_000_000, "{\"a\":2}"));
        assert_ne!(s, signature("whsec_y", 1_700_000_000, "{\"a\":1}"));
    }
}
