//! What the worker may do with a claimed score besides recording an attempt: hold it back
//! unsent, or send it again under a fresh timestamp.
//!
//! Both exist for platforms that keep their own view of a score (LTI AGS 2.0 §3.4: the
//! platform orders scores by `timestamp` and may ignore or refuse an older one). Moodle 4.2
//! compares a new score's timestamp with its own save time, in whole seconds, and answers
//! 409 when it is not later; and it clears the stored grade when a score is not
//! `FullyGraded`. Which platforms get which treatment is the worker's policy; these are the
//! state changes, each in one transaction with its attempt record and audit entry.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::scores::ClaimedScore;
use crate::{Backend, Store, now_micros};
use domain::{Actor, ScoreId};

/// What [`Store::retry_with_fresh_timestamp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestampOutcome {
    /// The score is due again at the new timestamp, which is later than every other score of
    /// its target and person.
    Restamped {
        previous_micros: i64,
        timestamp_micros: i64,
    },
    /// A newer score for the same target and person exists and will be sent instead: this
    /// one was marked superseded rather than sent again.
    Superseded { by: ScoreId },
    /// The worker no longer holds the lease; nothing changed.
    LeaseLost,
}

/// The claimed row's target and person, if `worker` still holds its lease.
type LeasedPair = (String, String, i64);

const LEASED_PAIR: &str = "SELECT grade_target_id, person_id, timestamp_micros FROM scores \
    WHERE id = $1 AND tenant_id = $2 AND lease_owner = $3 AND attempts = $4 AND state = 'sending'";

/// On PostgreSQL, the person's row lock: enqueueing takes it too, so a score queued for the
/// same person waits until this transaction has settled the pair's timestamps.
fn lock_person_sql(backend: Backend) -> Option<&'static str> {
    match backend {
        Backend::Postgres => {
            Some("SELECT id FROM people WHERE id = $1 AND tenant_id = $2 FOR UPDATE")
        }
        Backend::Sqlite => None,
    }
}

impl Store {
    /// Takes a score the platform refused as out of date (its timestamp not later than the
    /// one the platform holds) back into the queue, due at `at`, under a new timestamp: `at`
    /// itself, or one microsecond after the newest timestamp of its target and person if that
    /// is later. Timestamps stay strictly increasing per pair, so nothing queued later is
    /// overtaken. When a newer score of the pair exists, this one is superseded instead: the
    /// newer one carries the grade. The attempt is recorded either way, with the audit entry
    /// `score.restamped` (old and new timestamps) or `score.superseded`.
    #[allow(clippy::too_many_arguments)]
    pub async fn retry_with_fresh_timestamp(
        &self,
        claimed: &ClaimedScore,
        worker: &str,
        started_at: i64,
        latency_ms: i64,
        status: u16,
        detail: &str,
        at: i64,
    ) -> Result<RestampOutcome, StoreError> {
        let now = now_micros();
        let id_s = claimed.id.to_string();
        let tenant_s = claimed.tenant_id.to_string();
        let status = i64::from(status);
        let lock = lock_person_sql(self.db.backend());
        let outcome = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let pair: Option<LeasedPair> = sqlx::query_as(LEASED_PAIR)
                .bind(&id_s)
                .bind(&tenant_s)
                .bind(worker)
                .bind(claimed.attempts)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((target, person, previous)) = pair else {
                return Ok(RestampOutcome::LeaseLost);
            };
            if let Some(lock) = lock {
                sqlx::query(lock)
                    .bind(&person)
                    .bind(&tenant_s)
                    .execute(&mut *tx)
                    .await?;
            }
            let newer: Option<String> = sqlx::query_scalar(
                "SELECT id FROM scores WHERE tenant_id = $1 AND grade_target_id = $2 AND person_id = $3 \
                 AND timestamp_micros > $4 AND state <> 'superseded' \
                 ORDER BY timestamp_micros DESC LIMIT 1",
            )
            .bind(&tenant_s)
            .bind(&target)
            .bind(&person)
            .bind(previous)
            .fetch_optional(&mut *tx)
            .await?;
            let (outcome, label, audit) = match newer {
                Some(newer) => {
                    sqlx::query(
                        "UPDATE scores SET state = 'superseded', last_status = $1, last_error = $2, \
                           lease_owner = NULL, lease_until = NULL, updated_at = $3 WHERE id = $4",
                    )
                    .bind(status)
                    .bind(format!(
                        "refused as out of date: {detail}; the newer score {newer} is sent instead"
                    ))
                    .bind(now)
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await?;
                    let by: ScoreId = newer
                        .parse()
                        .map_err(|_| StoreError::Corrupt("score id".into()))?;
                    let audit = NewAuditEntry::tenant(
                        claimed.tenant_id,
                        Actor::system("passback-worker"),
                        "score.superseded",
                        format!("score:{}", claimed.id),
                        serde_json::json!({
                            "superseded_by": newer, "attempt": claimed.attempts,
                            "status": status, "detail": detail,
                            "grade_target_id": target, "person_id": person,
                        }),
                    );
                    (RestampOutcome::Superseded { by }, "superseded", audit)
                }
                None => {
                    let newest: Option<i64> = sqlx::query_scalar(
                        "SELECT MAX(timestamp_micros) FROM scores WHERE grade_target_id = $1 AND person_id = $2",
                    )
                    .bind(&target)
                    .bind(&person)
                    .fetch_one(&mut *tx)
                    .await?;
                    let timestamp = newest.map_or(at, |n| at.max(n + 1));
                    sqlx::query(
                        "UPDATE scores SET state = 'retrying', timestamp_micros = $1, next_attempt_at = $2, \
                           last_status = $3, last_error = $4, lease_owner = NULL, lease_until = NULL, updated_at = $5 \
                         WHERE id = $6",
                    )
                    .bind(timestamp)
                    .bind(at)
                    .bind(status)
                    .bind(detail)
                    .bind(now)
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await?;
                    let audit = NewAuditEntry::tenant(
                        claimed.tenant_id,
                        Actor::system("passback-worker"),
                        "score.restamped",
                        format!("score:{}", claimed.id),
                        serde_json::json!({
                            "attempt": claimed.attempts, "status": status, "detail": detail,
                            "previous_timestamp_micros": previous, "timestamp_micros": timestamp,
                            "next_attempt_at": at,
                        }),
                    );
                    (
                        RestampOutcome::Restamped {
                            previous_micros: previous,
                            timestamp_micros: timestamp,
                        },
                        "restamped",
                        audit,
                    )
                }
            };
            sqlx::query(
                "INSERT INTO score_attempts (id, tenant_id, score_id, attempt, worker, started_at, latency_ms, status, outcome, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&tenant_s)
            .bind(&id_s)
            .bind(claimed.attempts)
            .bind(worker)
            .bind(started_at)
            .bind(latency_ms)
            .bind(status)
            .bind(label)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
            outcome
        });
        Ok(outcome)
    }

    /// Holds a claimed score back unsent when the newest delivered score of its target and
    /// person is `FullyGraded`: for a platform that clears a grade on a progress-only score,
    /// sending this one would erase that grade. The score ends in state `held` with `reason`
    /// as its `last_error`, no attempt counted, an audit entry `score.held` and, for tenants
    /// with a webhook, a `score.held` event. Returns the id of the delivered score it
    /// protects, or `None` (nothing changed: send it) when there is no delivered final grade
    /// or the lease was lost.
    pub async fn hold_if_final_grade_delivered(
        &self,
        claimed: &ClaimedScore,
        worker: &str,
        reason: &str,
    ) -> Result<Option<ScoreId>, StoreError> {
        let now = now_micros();
        let id_s = claimed.id.to_string();
        let tenant_s = claimed.tenant_id.to_string();
        let lock = lock_person_sql(self.db.backend());
        let protected: Option<String> = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let pair: Option<LeasedPair> = sqlx::query_as(LEASED_PAIR)
                .bind(&id_s)
                .bind(&tenant_s)
                .bind(worker)
                .bind(claimed.attempts)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((target, person, _)) = pair else {
                return Ok(None);
            };
            if let Some(lock) = lock {
                sqlx::query(lock)
                    .bind(&person)
                    .bind(&tenant_s)
                    .execute(&mut *tx)
                    .await?;
            }
            let delivered: Option<(String, String)> = sqlx::query_as(
                "SELECT id, grading_progress FROM scores WHERE tenant_id = $1 AND grade_target_id = $2 \
                 AND person_id = $3 AND state = 'delivered' ORDER BY timestamp_micros DESC LIMIT 1",
            )
            .bind(&tenant_s)
            .bind(&target)
            .bind(&person)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((final_id, _)) = delivered.filter(|(_, progress)| progress == "FullyGraded")
            else {
                return Ok(None);
            };
            sqlx::query(
                "UPDATE scores SET state = 'held', attempts = attempts - 1, last_error = $1, \
                   lease_owner = NULL, lease_until = NULL, updated_at = $2 WHERE id = $3",
            )
            .bind(reason)
            .bind(now)
            .bind(&id_s)
            .execute(&mut *tx)
            .await?;
            let audit = NewAuditEntry::tenant(
                claimed.tenant_id,
                Actor::system("passback-worker"),
                "score.held",
                format!("score:{}", claimed.id),
                serde_json::json!({
                    "reason": reason, "protects": final_id,
                    "grading_progress": claimed.grading_progress.as_str(),
                }),
            );
            audit_append!(tx, &audit);
            queue_webhook_event!(
                tx,
                &tenant_s,
                "score.held",
                serde_json::json!({"data": {
                    "score_id": id_s, "state": "held", "detail": reason,
                    "protects_score_id": final_id,
                    "platform_user_id": claimed.platform_user_id,
                    "grading_progress": claimed.grading_progress.as_str(),
                }}),
                now
            );
            tx.commit().await?;
            Some(final_id)
        });
        protected
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt("score id".into()))
            })
            .transpose()
    }
}
