//! The score outbox: what the product asked for, and what happened when we sent it.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{Store, TenantStore, now_micros};
use domain::{
    ActivityProgress, Actor, GradeTargetLocation, GradingProgress, NewScore, Platform, ScoreId,
    ScoreState, TenantId,
};
use serde::Serialize;
use url::Url;

/// A score to queue, with its idempotency key and a hash of the request body.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    pub score: NewScore,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
}

/// A stored score and its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRecord {
    pub id: ScoreId,
    pub grade_target_id: String,
    pub person_id: String,
    pub score_given: Option<f64>,
    pub score_maximum: Option<f64>,
    pub comment: Option<String>,
    pub activity_progress: String,
    pub grading_progress: String,
    pub actor: Actor,
    pub timestamp_micros: i64,
    pub state: ScoreState,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

/// What enqueueing did.
#[derive(Debug, Clone, PartialEq)]
pub enum EnqueueOutcome {
    Created(ScoreRecord),
    /// The idempotency key was seen before with the same body.
    Replayed(ScoreRecord),
}

/// One attempt to deliver a score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ScoreAttempt {
    pub attempt: i64,
    pub worker: String,
    pub started_at: i64,
    pub latency_ms: i64,
    pub status: Option<i64>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// A score a worker holds the lease on, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedScore {
    pub id: ScoreId,
    pub tenant_id: TenantId,
    pub attempts: i64,
    pub created_at: i64,
    pub platform: Platform,
    pub location: GradeTargetLocation,
    pub platform_user_id: String,
    pub score_given: Option<f64>,
    pub score_maximum: Option<f64>,
    pub comment: Option<String>,
    pub activity_progress: ActivityProgress,
    pub grading_progress: GradingProgress,
    pub timestamp_micros: i64,
    pub actor: Actor,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
        detail: String,
    },
    Retry {
        at: i64,
        status: Option<u16>,
        detail: String,
    },
    Dead {
        status: Option<u16>,
        detail: String,
    },
}

#[derive(sqlx::FromRow)]
pub(crate) struct ScoreRow {
    id: String,
    grade_target_id: String,
    person_id: String,
    score_given: Option<f64>,
    score_maximum: Option<f64>,
    comment: Option<String>,
    activity_progress: String,
    grading_progress: String,
    actor_kind: String,
    actor_id: String,
    timestamp_micros: i64,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    created_at: i64,
}

pub(crate) const SCORE_COLUMNS: &str = "id, grade_target_id, person_id, score_given, score_maximum, comment, activity_progress, grading_progress, actor_kind, actor_id, timestamp_micros, state, attempts, next_attempt_at, last_status, last_error, delivered_at, created_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("score {what}"))
}

impl TryFrom<ScoreRow> for ScoreRecord {
    type Error = StoreError;
    fn try_from(r: ScoreRow) -> Result<Self, StoreError> {
        let state: ScoreState = r.state.parse().map_err(|_| corrupt("state"))?;
        let waiting = matches!(state, ScoreState::Queued | ScoreState::Retrying);
        Ok(Self {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            grade_target_id: r.grade_target_id,
            person_id: r.person_id,
            score_given: r.score_given,
            score_maximum: r.score_maximum,
            comment: r.comment,
            activity_progress: r.activity_progress,
            grading_progress: r.grading_progress,
            actor: Actor {
                kind: r.actor_kind.parse().map_err(|_| corrupt("actor"))?,
                id: r.actor_id,
            },
            timestamp_micros: r.timestamp_micros,
            state,
            attempts: r.attempts,
            next_attempt_at: waiting.then_some(r.next_attempt_at),
            last_status: r.last_status,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
            created_at: r.created_at,
        })
    }
}

fn parse_progress<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| corrupt("progress"))
}

/// The latest earlier score of a pair.
#[derive(sqlx::FromRow)]
struct PreviousScore {
    id: String,
    score_given: Option<f64>,
    score_maximum: Option<f64>,
    actor_kind: String,
    actor_id: String,
    state: String,
    timestamp_micros: i64,
}

impl TenantStore<'_> {
    /// Queues a score with its audit entry in one transaction. Older queued scores for the
    /// same target and person are marked superseded: only the newest is sent.
    pub async fn enqueue_score(&self, req: &ScoreRequest) -> Result<EnqueueOutcome, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let s = &req.score;
        let target_s = s.grade_target_id.to_string();
        let person_s = s.person_id.to_string();
        let now = now_micros();
        let id = ScoreId::generate();
        let detail = serde_json::json!({
            "grade_target_id": target_s, "person_id": person_s,
            "score_given": s.score_given, "score_maximum": s.score_maximum,
            "activity_progress": s.activity_progress, "grading_progress": s.grading_progress,
            "comment": s.comment, "idempotency_key": req.idempotency_key,
        });
        let check_sql = format!(
            "SELECT g.id FROM grade_targets g JOIN people p ON p.platform_id = g.platform_id \
             WHERE g.id = $1 AND g.tenant_id = $2 AND p.id = $3 AND p.tenant_id = $2 AND g.deleted_at IS NULL{}",
            match self.db.backend() {
                crate::Backend::Postgres => " FOR UPDATE OF p",
                crate::Backend::Sqlite => "",
            }
        );
        let outcome: Result<Option<String>, StoreError> = async {
            Ok(on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                if let Some(key) = &req.idempotency_key {
                    let existing: Option<(String, String)> = sqlx::query_as(
                        "SELECT id, request_hash FROM scores WHERE tenant_id = $1 AND idempotency_key = $2",
                    )
                    .bind(&tenant_s)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((existing_id, hash)) = existing {
                        if hash != req.request_hash {
                            return Err(StoreError::Conflict(
                                "this Idempotency-Key was used with a different request",
                            ));
                        }
                        return Ok(Some(existing_id));
                    }
                }
                // Target and person must be this tenant's, and on the same platform; a line
                // item deleted through the API takes no new scores. On PostgreSQL the person's
                // row is locked until commit, so concurrent scores for one person queue here
                // and each sees the one before it (timestamps strictly increasing, the older
                // superseded); SQLite's write transactions are serial already.
                let ok: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(check_sql))
                .bind(&target_s)
                .bind(&tenant_s)
                .bind(&person_s)
                .fetch_optional(&mut *tx)
                .await?;
                if ok.is_none() {
                    return Err(StoreError::NotFound);
                }
                // The pair's latest score: a new one is a correction of it (the audit entry keeps
                // the value it replaces and who set it), and its timestamp must be later, since
                // platforms order scores by timestamp.
                let before: Option<PreviousScore> = sqlx::query_as(
                    "SELECT id, score_given, score_maximum, actor_kind, actor_id, state, timestamp_micros FROM scores \
                     WHERE grade_target_id = $1 AND person_id = $2 AND tenant_id = $3 \
                     ORDER BY timestamp_micros DESC LIMIT 1",
                )
                .bind(&target_s)
                .bind(&person_s)
                .bind(&tenant_s)
                .fetch_optional(&mut *tx)
                .await?;
                let timestamp = before
                    .as_ref()
                    .map_or(now, |b| now.max(b.timestamp_micros + 1));
                let superseded: Vec<String> = sqlx::query_scalar(
                    "UPDATE scores SET state = 'superseded', updated_at = $1 \
                     WHERE grade_target_id = $2 AND person_id = $3 AND tenant_id = $4 AND state IN ('queued', 'retrying') \
                     RETURNING id",
                )
                .bind(now)
                .bind(&target_s)
                .bind(&person_s)
                .bind(&tenant_s)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO scores (id, tenant_id, grade_target_id, person_id, score_given, score_maximum, comment, \
                       activity_progress, grading_progress, actor_kind, actor_id, timestamp_micros, idempotency_key, request_hash, \
                       state, attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'queued', 0, $15, $15, $15)",
                )
                .bind(id.to_string())
                .bind(&tenant_s)
                .bind(&target_s)
                .bind(&person_s)
                .bind(s.score_given)
                .bind(s.score_maximum)
                .bind(&s.comment)
                .bind(s.activity_progress.as_str())
                .bind(s.grading_progress.as_str())
                .bind(s.actor.kind.as_str())
                .bind(&s.actor.id)
                .bind(timestamp)
                .bind(&req.idempotency_key)
                .bind(&req.request_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let mut entries = Vec::with_capacity(1 + superseded.len());
                let mut detail = detail.clone();
                let action = match &before {
                    Some(b) => {
                        detail["before"] = serde_json::json!({
                            "score_id": b.id, "score_given": b.score_given,
                            "score_maximum": b.score_maximum,
                            "actor": {"kind": b.actor_kind, "id": b.actor_id}, "state": b.state,
                        });
                        "score.corrected"
                    }
                    None => "score.queued",
                };
                entries.push(NewAuditEntry::tenant(
                    tenant,
                    s.actor.clone(),
                    action,
                    format!("score:{id}"),
                    detail,
                ));
                for old in &superseded {
                    entries.push(NewAuditEntry::tenant(
                        tenant,
                        s.actor.clone(),
                        "score.superseded",
                        format!("score:{old}"),
                        serde_json::json!({
                            "superseded_by": id.to_string(),
                            "grade_target_id": target_s, "person_id": person_s,
                        }),
                    ));
                }
                audit_append_all!(tx, &entries);
                tx.commit().await?;
                None
            }))
        }
        .await;
        match outcome {
            Ok(None) => Ok(EnqueueOutcome::Created(
                self.score(id).await?.ok_or(StoreError::NotFound)?,
            )),
            Ok(Some(existing)) => {
                let id = existing.parse().map_err(|_| corrupt("id"))?;
                Ok(EnqueueOutcome::Replayed(
                    self.score(id).await?.ok_or(StoreError::NotFound)?,
                ))
            }
            // Two requests with one new key raced; the loser reads the winner's row.
            Err(e) if e.is_unique_violation() && req.idempotency_key.is_some() => {
                Box::pin(self.enqueue_score(req)).await
            }
            Err(e) => Err(e),
        }
    }

    /// One of this tenant's scores.
    pub async fn score(&self, id: ScoreId) -> Result<Option<ScoreRecord>, StoreError> {
        let row: Option<ScoreRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SCORE_COLUMNS} FROM scores WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(ScoreRecord::try_from).transpose()
    }

    /// The delivery attempts of one of this tenant's scores, oldest first.
    pub async fn score_attempts(&self, id: ScoreId) -> Result<Vec<ScoreAttempt>, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT attempt, worker, started_at, latency_ms, status, outcome, detail FROM score_attempts \
                 WHERE score_id = $1 AND tenant_id = $2 ORDER BY started_at",
            )
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        }))
    }
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    tenant_id: String,
    attempts: i64,
    created_at: i64,
    platform_id: String,
    platform_tenant: String,
    kind: String,
    issuer: String,
    client_id: String,
    auth_url: String,
    token_url: String,
    jwks_url: String,
    token_audience: Option<String>,
    accept_new_deployments: bool,
    platform_enabled: bool,
    platform_created_at: i64,
    target_kind: String,
    location: String,
    platform_user_id: String,
    score_given: Option<f64>,
    score_maximum: Option<f64>,
    comment: Option<String>,
    activity_progress: String,
    grading_progress: String,
    timestamp_micros: i64,
    actor_kind: String,
    actor_id: String,
}

impl TryFrom<ClaimRow> for ClaimedScore {
    type Error = StoreError;
    fn try_from(r: ClaimRow) -> Result<Self, StoreError> {
        let url = |s: &str| Url::parse(s).map_err(|_| corrupt("platform url"));
        let location = match r.target_kind.as_str() {
            "lti_line_item" => GradeTargetLocation::LtiLineItem {
                line_item_url: url(&r.location)?,
            },
            "classroom_course_work" => {
                let (course_id, course_work_id) = r
                    .location
                    .split_once('/')
                    .ok_or_else(|| corrupt("location"))?;
                GradeTargetLocation::ClassroomCourseWork {
                    course_id: course_id.to_owned(),
                    course_work_id: course_work_id.to_owned(),
                }
            }
            crate::google_addons::ADD_ON_TARGET_KIND => {
                let mut parts = r.location.splitn(3, '/');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(course_id), Some(item_id), Some(attachment_id)) => {
                        GradeTargetLocation::ClassroomAddOnAttachment {
                            course_id: course_id.to_owned(),
                            item_id: item_id.to_owned(),
                            attachment_id: attachment_id.to_owned(),
                        }
                    }
                    _ => return Err(corrupt("location")),
                }
            }
            _ => return Err(corrupt("target kind")),
        };
        Ok(Self {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            tenant_id: r.tenant_id.parse().map_err(|_| corrupt("tenant"))?,
            attempts: r.attempts,
            created_at: r.created_at,
            platform: Platform {
                id: r.platform_id.parse().map_err(|_| corrupt("platform"))?,
                tenant_id: r.platform_tenant.parse().map_err(|_| corrupt("tenant"))?,
                kind: r.kind.parse().map_err(|_| corrupt("platform kind"))?,
                issuer: r.issuer,
                client_id: r.client_id,
                auth_url: url(&r.auth_url)?,
                token_url: url(&r.token_url)?,
                jwks_url: url(&r.jwks_url)?,
                token_audience: r.token_audience,
                accept_new_deployments: r.accept_new_deployments,
                enabled: r.platform_enabled,
                created_at: r.platform_created_at,
            },
            location,
            platform_user_id: r.platform_user_id,
            score_given: r.score_given,
            score_maximum: r.score_maximum,
            comment: r.comment,
            activity_progress: parse_progress(&r.activity_progress)?,
            grading_progress: parse_progress(&r.grading_progress)?,
            timestamp_micros: r.timestamp_micros,
            actor: Actor {
                kind: r.actor_kind.parse().map_err(|_| corrupt("actor"))?,
                id: r.actor_id,
            },
        })
    }
}

/// Rows a worker may take: due, not leased (or the lease lapsed, as after a crash), no
/// other row for the same target and person in flight, and no newer row for them: an older
/// score sent after a newer one could overwrite it.
const DUE: &str = "s.state IN ('queued', 'retrying', 'sending') AND s.next_attempt_at <= $3 \
    AND (s.lease_until IS NULL OR s.lease_until < $3) \
    AND NOT EXISTS (SELECT 1 FROM scores o WHERE o.grade_target_id = s.grade_target_id AND o.person_id = s.person_id \
        AND o.state = 'sending' AND o.lease_until >= $3 AND o.id <> s.id) \
    AND NOT EXISTS (SELECT 1 FROM scores n WHERE n.grade_target_id = s.grade_target_id AND n.person_id = s.person_id \
        AND n.tenant_id = s.tenant_id AND n.timestamp_micros > s.timestamp_micros)";

/// Waiting rows with a newer row for the same target and person: enqueueing supersedes the
/// waiting rows it finds, but a row that was being sent then comes back as `retrying`, and
/// one whose worker died stays `sending` until its lease lapses. Never in flight (`$1` is now).
const STALE: &str = "s.state IN ('queued', 'retrying', 'sending') AND (s.lease_until IS NULL OR s.lease_until < $1) \
    AND EXISTS (SELECT 1 FROM scores n WHERE n.grade_target_id = s.grade_target_id AND n.person_id = s.person_id \
        AND n.tenant_id = s.tenant_id AND n.timestamp_micros > s.timestamp_micros)";

impl Store {
    /// Claims up to `limit` due scores for `worker` until `lease_until`.
    pub async fn claim_scores(
        &self,
        worker: &str,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedScore>, StoreError> {
        self.supersede_stale_scores().await?;
        let now = now_micros();
        let ids: Vec<String> = match &self.db {
            crate::db::Db::Postgres(pool) => {
                // SKIP LOCKED: concurrent workers each take different rows, none waits.
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE scores SET state = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
                     WHERE id IN (SELECT s.id FROM scores s WHERE {DUE} ORDER BY s.next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     RETURNING id"
                )))
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            crate::db::Db::Sqlite(pool) => {
                // SQLite has one writer at a time; the UPDATE is atomic on its own.
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE scores SET state = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
                     WHERE id IN (SELECT s.id FROM scores s WHERE {DUE} ORDER BY s.next_attempt_at LIMIT $4) \
                     RETURNING id"
                )))
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: ClaimRow = on_db!(&self.db, |pool| {
                sqlx::query_as(
                    "SELECT s.id, s.tenant_id, s.attempts, s.created_at, p.id AS platform_id, p.tenant_id AS platform_tenant, p.kind, p.issuer, \
                       p.client_id, p.auth_url, p.token_url, p.jwks_url, p.token_audience, p.accept_new_deployments, p.enabled AS platform_enabled, p.created_at AS platform_created_at, \
                       g.kind AS target_kind, g.location, pe.platform_user_id, s.score_given, s.score_maximum, s.comment, \
                       s.activity_progress, s.grading_progress, s.timestamp_micros, s.actor_kind, s.actor_id \
                     FROM scores s JOIN grade_targets g ON g.id = s.grade_target_id AND g.tenant_id = s.tenant_id \
                       JOIN platforms p ON p.id = g.platform_id AND p.tenant_id = s.tenant_id \
                       JOIN people pe ON pe.id = s.person_id AND pe.tenant_id = s.tenant_id \
                     WHERE s.id = $1",
                )
                .bind(&id)
                .fetch_one(pool)
                .await?
            });
            claimed.push(ClaimedScore::try_from(row)?);
        }
        Ok(claimed)
    }

    /// Records an attempt's outcome, if `worker` still holds the lease. Returns false when
    /// the lease was lost (another worker took the row over), in which case nothing changes.
    pub async fn finish_attempt(
        &self,
        claimed: &ClaimedScore,
        worker: &str,
        started_at: i64,
        latency_ms: i64,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let now = now_micros();
        let id_s = claimed.id.to_string();
        let tenant_s = claimed.tenant_id.to_string();
        let (state, next_at, status, detail, label) = match outcome {
            AttemptOutcome::Delivered { status, detail } => (
                "delivered",
                now,
                Some(i64::from(*status)),
                detail,
                "delivered",
            ),
            AttemptOutcome::Retry { at, status, detail } => {
                ("retrying", *at, status.map(i64::from), detail, "retry")
            }
            AttemptOutcome::Dead { status, detail } => {
                ("dead", now, status.map(i64::from), detail, "dead")
            }
        };
        let audit = match outcome {
            AttemptOutcome::Retry { .. } => None,
            _ => Some(NewAuditEntry::tenant(
                claimed.tenant_id,
                Actor::system("passback-worker"),
                if state == "delivered" {
                    "score.delivered"
                } else {
                    "score.dead"
                },
                format!("score:{}", claimed.id),
                serde_json::json!({"attempt": claimed.attempts, "status": status, "detail": detail}),
            )),
        };
        let owned = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE scores SET state = $1, next_attempt_at = $2, last_status = $3, last_error = $4, \
                   delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END, \
                   lease_owner = NULL, lease_until = NULL, updated_at = $5 \
                 WHERE id = $6 AND lease_owner = $7 AND attempts = $8 AND state = 'sending'",
            )
            .bind(state)
            .bind(next_at)
            .bind(status)
            .bind((state != "delivered").then_some(detail))
            .bind(now)
            .bind(&id_s)
            .bind(worker)
            .bind(claimed.attempts)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
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
                if let Some(audit) = &audit {
                    audit_append!(tx, audit);
                }
                // The product hears about final outcomes from the same transaction.
                if state != "retrying" {
                    let event = if state == "delivered" {
                        "score.delivered"
                    } else {
                        "score.dead"
                    };
                    queue_webhook_event!(
                        tx,
                        &tenant_s,
                        event,
                        serde_json::json!({"data": {
                            "score_id": id_s, "state": state, "status": status, "detail": detail,
                            "attempt": claimed.attempts, "platform_user_id": claimed.platform_user_id,
                            "score_given": claimed.score_given, "score_maximum": claimed.score_maximum,
                        }}),
                        now
                    );
                }
            }
            tx.commit().await?;
            updated == 1
        });
        Ok(owned)
    }

    /// How many attempts of a claimed score have a recorded outcome. Fewer than its
    /// attempts before this one means an attempt's outcome was lost (its worker stopped
    /// mid-send, or lost the lease), so that send may have reached the platform.
    pub async fn recorded_attempts(&self, claimed: &ClaimedScore) -> Result<i64, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM score_attempts WHERE score_id = $1 AND tenant_id = $2",
            )
            .bind(claimed.id.to_string())
            .bind(claimed.tenant_id.to_string())
            .fetch_one(pool)
            .await?
        }))
    }

    /// When the next queued score becomes due, for a worker deciding how long to sleep.
    pub async fn next_score_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_scalar(
                "SELECT MIN(CASE WHEN state = 'sending' THEN lease_until ELSE next_attempt_at END) FROM scores \
                 WHERE state IN ('queued', 'retrying', 'sending')",
            )
            .fetch_one(pool)
            .await?
        }))
    }
}

impl Store {
    /// Hands a claimed score back unsent, due again at `at`, without counting an attempt:
    /// the worker's limiter held it (the platform is paused or at its rate) longer than the
    /// lease allows waiting. False when the lease was already lost.
    pub async fn defer_claim(
        &self,
        claimed: &ClaimedScore,
        worker: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let updated = on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE scores SET state = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'queued' END, \
                   attempts = attempts - 1, next_attempt_at = $1, lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                 WHERE id = $3 AND lease_owner = $4 AND attempts = $5 AND state = 'sending'",
            )
            .bind(at)
            .bind(now_micros())
            .bind(claimed.id.to_string())
            .bind(worker)
            .bind(claimed.attempts)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated == 1)
    }
}

impl TenantStore<'_> {
    /// Queues this tenant's dead scores again (all of them, or the listed ones), after an
    /// admin fixed what killed them. A dead score with a newer score for the same target and
    /// person is left alone: sending it would overwrite the newer grade. Returns the ids
    /// queued again, each with a `score.replayed` audit entry.
    pub async fn replay_dead_scores(
        &self,
        only: Option<&[ScoreId]>,
        actor: &Actor,
    ) -> Result<Vec<ScoreId>, StoreError> {
        let tenant_s = self.scope.tenant_id().to_string();
        let now = now_micros();
        let wanted: Option<Vec<String>> =
            only.map(|ids| ids.iter().map(ToString::to_string).collect());
        let replayed = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let candidates: Vec<(String,)> = sqlx::query_as(
                "SELECT s.id FROM scores s WHERE s.tenant_id = $1 AND s.state = 'dead' \
                 AND NOT EXISTS (SELECT 1 FROM scores n WHERE n.tenant_id = s.tenant_id \
                   AND n.grade_target_id = s.grade_target_id AND n.person_id = s.person_id \
                   AND n.timestamp_micros > s.timestamp_micros AND n.state <> 'superseded') \
                 ORDER BY s.created_at",
            )
            .bind(&tenant_s)
            .fetch_all(&mut *tx)
            .await?;
            let mut replayed = Vec::new();
            for (id,) in candidates {
                if wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
                    continue;
                }
                sqlx::query(
                    "UPDATE scores SET state = 'queued', attempts = 0, next_attempt_at = $1, last_error = NULL, \
                       updated_at = $1 WHERE id = $2 AND tenant_id = $3 AND state = 'dead'",
                )
                .bind(now)
                .bind(&id)
                .bind(&tenant_s)
                .execute(&mut *tx)
                .await?;
                let audit = NewAuditEntry::tenant(
                    self.scope.tenant_id(),
                    actor.clone(),
                    "score.replayed",
                    format!("score:{id}"),
                    serde_json::json!({}),
                );
                audit_append!(tx, &audit);
                replayed.push(id);
            }
            tx.commit().await?;
            replayed
        });
        replayed
            .into_iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt("score id".into()))
            })
            .collect()
    }
}

/// Appends a `score.superseded` entry, naming the newest score of the pair, for each row
/// [`Store::supersede_stale_scores`] marked.
macro_rules! audit_stale {
    ($tx:expr, $rows:expr) => {{
        let rows: &[StaleRow] = $rows;
        for (id, tenant, target, person) in rows {
            let newest: String = sqlx::query_scalar(
                "SELECT id FROM scores WHERE grade_target_id = $1 AND person_id = $2 AND tenant_id = $3 \
                 ORDER BY timestamp_micros DESC LIMIT 1",
            )
            .bind(target)
            .bind(person)
            .bind(tenant)
            .fetch_one(&mut *$tx)
            .await?;
            let entry = NewAuditEntry::tenant(
                tenant.parse().map_err(|_| corrupt("tenant"))?,
                Actor::system("passback-worker"),
                "score.superseded",
                format!("score:{id}"),
                serde_json::json!({
                    "superseded_by": newest, "grade_target_id": target, "person_id": person,
                    "reason": "a newer score for the same target and person exists",
                }),
            );
            audit_append!($tx, &entry);
        }
    }};
}

/// A waiting row marked superseded by [`Store::supersede_stale_scores`]: id, tenant, target,
/// person.
type StaleRow = (String, String, String, String);

impl Store {
    /// Marks superseded the waiting scores that have a newer score for the same target and
    /// person (see [`STALE`]), each with a `score.superseded` audit entry, so that no worker
    /// sends them after the newer one and the queue still drains. Returns how many.
    pub async fn supersede_stale_scores(&self) -> Result<usize, StoreError> {
        let now = now_micros();
        // Most rounds find none: look before taking the write lock.
        let any: Option<String> = on_db!(&self.db, |pool| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT s.id FROM scores s WHERE {STALE} LIMIT 1"
            )))
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        if any.is_none() {
            return Ok(0);
        }
        let stale: Vec<StaleRow> = match &self.db {
            crate::db::Db::Postgres(pool) => {
                let mut tx = pool.begin_write().await?;
                // SKIP LOCKED: a row another worker is claiming or sweeping is left to it.
                let rows: Vec<StaleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE scores SET state = 'superseded', lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                     WHERE id IN (SELECT s.id FROM scores s WHERE {STALE} FOR UPDATE SKIP LOCKED) \
                     RETURNING id, tenant_id, grade_target_id, person_id"
                )))
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                audit_stale!(tx, &rows);
                tx.commit().await?;
                rows
            }
            crate::db::Db::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                let rows: Vec<StaleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE scores SET state = 'superseded', lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                     WHERE id IN (SELECT s.id FROM scores s WHERE {STALE}) \
                     RETURNING id, tenant_id, grade_target_id, person_id"
                )))
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                audit_stale!(tx, &rows);
                tx.commit().await?;
                rows
            }
        };
        for (id, ..) in &stale {
            tracing::info!(score = %id, "score superseded before sending: a newer score exists");
        }
        Ok(stale.len())
    }
}
