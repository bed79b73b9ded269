//! Queueing many scores in one transaction (the product API's `POST /api/v1/scores:batch`),
//! with the semantics of [`TenantStore::enqueue_score`] for each item, in order: an
//! idempotency key seen before answers the score it made (or a conflict when the body
//! differs), target and person must be this tenant's and on one platform, older queued
//! scores of the pair are superseded, timestamps are strictly increasing per pair, and a
//! score for a pair that already has one is audited as a correction of it.
//!
//! A batch of up to a thousand scores costs a fixed number of statements whatever its size:
//! one lookup of every idempotency key, one check (and, on PostgreSQL, lock) of every pair,
//! one read of each pair's newest score, one `UPDATE` superseding what was queued, one
//! multi-row `INSERT`, and one append of every audit entry; the pairs travel as one VALUES
//! list (SQLite) or two arrays (PostgreSQL). Two items of the same pair in
//! one batch behave as if sent one after the other: the first is stored superseded by the
//! second.

use crate::audit::{NewAuditEntry, builder_for};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::scores::{SCORE_COLUMNS, ScoreRecord, ScoreRequest, ScoreRow};
use crate::{Backend, TenantStore, now_micros};
use domain::{ScoreId, ScoreState};
use std::collections::{HashMap, HashSet};

/// What happened to one item of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreBatchOutcome {
    /// Queued now (its state is `superseded` when a later item of the batch is for the same
    /// target and person).
    Created(ScoreRecord),
    /// The idempotency key was seen before with the same body: the score it made.
    Replayed(ScoreRecord),
    /// The idempotency key was used before with a different body.
    Conflict(&'static str),
    /// The grade target or the person is not this tenant's, they are on different platforms,
    /// or the target was deleted.
    NotFound,
}

/// Rows per multi-row `INSERT`: 19 parameters each stays under SQLite's 32,766.
const INSERT_CHUNK: usize = 1_000;
/// Audit entries per append: 11 parameters each.
const AUDIT_CHUNK: usize = 2_000;
/// Times a batch is run again after PostgreSQL rolled it back for a deadlock or a
/// serialization failure, or after another request took one of its new idempotency keys
/// first (nothing of it was kept, so running it again is safe).
const RETRIES: usize = 3;

const KEY_CONFLICT: &str = "this Idempotency-Key was used with a different request";

/// The newest earlier score of a pair: id, given, maximum, actor kind, actor id, state,
/// timestamp.
#[derive(sqlx::FromRow)]
struct Latest {
    grade_target_id: String,
    person_id: String,
    id: String,
    score_given: Option<f64>,
    score_maximum: Option<f64>,
    actor_kind: String,
    actor_id: String,
    state: String,
    timestamp_micros: i64,
}

/// How an item is decided before anything is written.
enum Plan {
    /// Not yet decided: no stored score has its key.
    Pending,
    /// Insert this item.
    Insert,
    /// The key names a stored score with the same body.
    Stored(String),
    /// Answer as the earlier item of this batch with the same key and body.
    SameAs(usize),
    Conflict,
    NotFound,
}

/// A row to insert, with what its audit entry says.
struct NewRow<'a> {
    req: &'a ScoreRequest,
    id: ScoreId,
    target: String,
    person: String,
    timestamp: i64,
    state: ScoreState,
}

/// The batch's (target, person) pairs as a table `v(column1, column2)`, the one place the
/// dialects differ: a VALUES list on SQLite; two arrays unnested on PostgreSQL, whose
/// planner took a tenth of a second over a VALUES list of a thousand rows.
trait PairsTable: sqlx::Database {
    fn push_pairs(q: &mut sqlx::QueryBuilder<Self>, pairs: &[(String, String)]);
}

impl PairsTable for sqlx::Sqlite {
    fn push_pairs(q: &mut sqlx::QueryBuilder<Self>, pairs: &[(String, String)]) {
        q.push("(");
        q.push_values(pairs, |mut b, (t, p)| {
            b.push_bind(t).push_bind(p);
        });
        q.push(") AS v");
    }
}

impl PairsTable for sqlx::Postgres {
    fn push_pairs(q: &mut sqlx::QueryBuilder<Self>, pairs: &[(String, String)]) {
        let (targets, people): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
        q.push("UNNEST(")
            .push_bind(targets)
            .push("::text[], ")
            .push_bind(people)
            .push("::text[]) AS v(column1, column2)");
    }
}

fn push_pairs<DB: PairsTable>(q: &mut sqlx::QueryBuilder<DB>, pairs: &[(String, String)]) {
    DB::push_pairs(q, pairs);
}

fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db))
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("score {what}"))
}

impl TenantStore<'_> {
    /// Queues every item of a batch in one transaction and answers each, in order. A
    /// database failure fails the whole batch and writes nothing.
    pub async fn enqueue_scores(
        &self,
        items: &[ScoreRequest],
    ) -> Result<Vec<ScoreBatchOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tries = 0;
        loop {
            match self.enqueue_scores_once(items).await {
                Err(e) if tries < RETRIES && (is_transient(&e) || e.is_unique_violation()) => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "score batch rolled back; running it again");
                }
                other => return other,
            }
        }
    }

    async fn enqueue_scores_once(
        &self,
        items: &[ScoreRequest],
    ) -> Result<Vec<ScoreBatchOutcome>, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let now = now_micros();
        let postgres = self.db.backend() == Backend::Postgres;
        let pair_of = |r: &ScoreRequest| {
            (
                r.score.grade_target_id.to_string(),
                r.score.person_id.to_string(),
            )
        };
        // Distinct keys, in first-seen order.
        let mut keys: Vec<&str> = Vec::new();
        let mut key_seen: HashSet<&str> = HashSet::new();
        for r in items {
            if let Some(k) = r.idempotency_key.as_deref()
                && key_seen.insert(k)
            {
                keys.push(k);
            }
        }
        let outcome = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;

            // 1. Every idempotency key of the batch, in one query.
            let mut stored: HashMap<String, (String, String)> = HashMap::new();
            if !keys.is_empty() {
                let mut q = builder_for(
                    &tx,
                    "SELECT idempotency_key, id, request_hash FROM scores WHERE tenant_id = ",
                );
                q.push_bind(&tenant_s).push(" AND idempotency_key IN (");
                let mut list = q.separated(", ");
                for k in &keys {
                    list.push_bind(*k);
                }
                q.push(")");
                let rows: Vec<(String, String, String)> =
                    q.build_query_as().fetch_all(&mut *tx).await?;
                stored = rows
                    .into_iter()
                    .map(|(k, id, hash)| (k, (id, hash)))
                    .collect();
            }
            let mut plans: Vec<Plan> = items
                .iter()
                .map(
                    |r| match r.idempotency_key.as_deref().and_then(|k| stored.get(k)) {
                        Some((id, hash)) if *hash == r.request_hash => Plan::Stored(id.clone()),
                        Some(_) => Plan::Conflict,
                        None => Plan::Pending,
                    },
                )
                .collect();

            // 2. Which pairs are this tenant's, on one platform, with a live target. On
            // PostgreSQL the people's rows are locked until commit, in id order so that two
            // batches cannot deadlock: a concurrent score for one of them waits and then sees
            // this batch's timestamps.
            let mut pairs: Vec<(String, String)> = Vec::new();
            let mut pair_seen: HashSet<(String, String)> = HashSet::new();
            for (r, plan) in items.iter().zip(&plans) {
                if matches!(plan, Plan::Pending) {
                    let pair = pair_of(r);
                    if pair_seen.insert(pair.clone()) {
                        pairs.push(pair);
                    }
                }
            }
            let mut valid: HashSet<(String, String)> = HashSet::new();
            if !pairs.is_empty() {
                // The pairs are a table joined by key, here and below (see `PairsTable`): a
                // row-value IN over them made PostgreSQL compare every target and person of
                // the platform with every pair. CROSS JOIN keeps them the outer loop on
                // SQLite, which otherwise scanned the scores for each pair; PostgreSQL plans
                // it as any join.
                let mut q = builder_for(&tx, "SELECT g.id, p.id FROM ");
                push_pairs(&mut q, &pairs);
                q.push(
                    " CROSS JOIN grade_targets g CROSS JOIN people p \
                     WHERE g.id = v.column1 AND p.id = v.column2 AND p.platform_id = g.platform_id \
                     AND g.deleted_at IS NULL AND g.tenant_id = ",
                )
                .push_bind(&tenant_s)
                .push(" AND p.tenant_id = ")
                .push_bind(&tenant_s);
                if postgres {
                    q.push(" ORDER BY p.id FOR UPDATE OF p");
                }
                let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                valid = rows.into_iter().collect();
            }

            // 3. The rest, in item order as if sent one by one: a key not stored before
            // belongs to the first item with it that is queued; an item naming an unknown
            // pair writes nothing and leaves its key free.
            let mut claimed: HashMap<&str, usize> = HashMap::new();
            for (i, r) in items.iter().enumerate() {
                if !matches!(plans[i], Plan::Pending) {
                    continue;
                }
                plans[i] = if !valid.contains(&pair_of(r)) {
                    Plan::NotFound
                } else {
                    match r.idempotency_key.as_deref() {
                        None => Plan::Insert,
                        Some(k) => match claimed.get(k) {
                            Some(&j) if items[j].request_hash == r.request_hash => Plan::SameAs(j),
                            Some(_) => Plan::Conflict,
                            None => {
                                claimed.insert(k, i);
                                Plan::Insert
                            }
                        },
                    }
                };
            }
            let mut live: Vec<(String, String)> = Vec::new();
            let mut live_seen: HashSet<(String, String)> = HashSet::new();
            for (r, plan) in items.iter().zip(&plans) {
                if matches!(plan, Plan::Insert) {
                    let pair = pair_of(r);
                    if live_seen.insert(pair.clone()) {
                        live.push(pair);
                    }
                }
            }

            let mut latest: HashMap<(String, String), Latest> = HashMap::new();
            let mut superseded_rows: Vec<(String, String, String)> = Vec::new();
            if !live.is_empty() {
                // 4. The newest score of each pair: the correction's "before" and the floor
                // of the next timestamp.
                let mut q = builder_for(
                    &tx,
                    "SELECT grade_target_id, person_id, id, score_given, score_maximum, actor_kind, actor_id, state, timestamp_micros \
                     FROM (SELECT s.grade_target_id, s.person_id, s.id, s.score_given, s.score_maximum, s.actor_kind, s.actor_id, \
                       s.state, s.timestamp_micros, \
                       ROW_NUMBER() OVER (PARTITION BY s.grade_target_id, s.person_id ORDER BY s.timestamp_micros DESC) AS newest \
                       FROM ",
                );
                push_pairs(&mut q, &live);
                q.push(
                    " CROSS JOIN scores s \
                     WHERE s.grade_target_id = v.column1 AND s.person_id = v.column2 AND s.tenant_id = ",
                )
                .push_bind(&tenant_s)
                .push(") latest WHERE newest = 1");
                let rows: Vec<Latest> = q.build_query_as().fetch_all(&mut *tx).await?;
                latest = rows
                    .into_iter()
                    .map(|l| ((l.grade_target_id.clone(), l.person_id.clone()), l))
                    .collect();

                // 5. Older queued scores of these pairs are superseded.
                let mut q =
                    builder_for(&tx, "UPDATE scores SET state = 'superseded', updated_at = ");
                q.push_bind(now).push(" WHERE id IN (SELECT s.id FROM ");
                push_pairs(&mut q, &live);
                q.push(
                    " CROSS JOIN scores s \
                     WHERE s.grade_target_id = v.column1 AND s.person_id = v.column2 \
                     AND s.state IN ('queued', 'retrying') AND s.tenant_id = ",
                )
                .push_bind(&tenant_s)
                .push(") RETURNING id, grade_target_id, person_id");
                superseded_rows = q.build_query_as().fetch_all(&mut *tx).await?;
            }

            // 6. Timestamps, states and audit entries, item by item.
            let mut last_ts: HashMap<(String, String), i64> = latest
                .iter()
                .map(|(pair, l)| (pair.clone(), l.timestamp_micros))
                .collect();
            let mut newest_in_batch: HashMap<(String, String), usize> = HashMap::new();
            let mut rows: Vec<NewRow<'_>> = Vec::new();
            let mut row_of_item: HashMap<usize, usize> = HashMap::new();
            for (i, (r, plan)) in items.iter().zip(&plans).enumerate() {
                if !matches!(plan, Plan::Insert) {
                    continue;
                }
                let pair = pair_of(r);
                let timestamp = last_ts.get(&pair).map_or(now, |l| now.max(l + 1));
                last_ts.insert(pair.clone(), timestamp);
                if let Some(prev) = newest_in_batch.insert(pair.clone(), rows.len()) {
                    rows[prev].state = ScoreState::Superseded;
                }
                row_of_item.insert(i, rows.len());
                rows.push(NewRow {
                    req: r,
                    id: ScoreId::generate(),
                    target: pair.0,
                    person: pair.1,
                    timestamp,
                    state: ScoreState::Queued,
                });
            }
            let mut entries: Vec<NewAuditEntry> =
                Vec::with_capacity(rows.len() + superseded_rows.len());
            let mut db_superseded: HashMap<(String, String), Vec<String>> = HashMap::new();
            for (id, t, p) in superseded_rows {
                db_superseded.entry((t, p)).or_default().push(id);
            }
            let mut previous_in_batch: HashMap<(String, String), usize> = HashMap::new();
            for (n, row) in rows.iter().enumerate() {
                let prev = previous_in_batch.insert((row.target.clone(), row.person.clone()), n);
                let s = &row.req.score;
                let pair = (row.target.clone(), row.person.clone());
                let mut detail = serde_json::json!({
                    "grade_target_id": row.target, "person_id": row.person,
                    "score_given": s.score_given, "score_maximum": s.score_maximum,
                    "activity_progress": s.activity_progress, "grading_progress": s.grading_progress,
                    "comment": s.comment, "idempotency_key": row.req.idempotency_key,
                });
                let before = match prev {
                    Some(prev) => {
                        let p = &rows[prev];
                        Some(serde_json::json!({
                            "score_id": p.id.to_string(), "score_given": p.req.score.score_given,
                            "score_maximum": p.req.score.score_maximum,
                            "actor": {"kind": p.req.score.actor.kind.as_str(), "id": p.req.score.actor.id},
                            // What it was when this one replaced it.
                            "state": ScoreState::Queued.as_str(),
                        }))
                    }
                    // Read before superseding, as enqueue_score reports it.
                    None => latest.get(&pair).map(|l| {
                        serde_json::json!({
                            "score_id": l.id, "score_given": l.score_given, "score_maximum": l.score_maximum,
                            "actor": {"kind": l.actor_kind, "id": l.actor_id}, "state": l.state,
                        })
                    }),
                };
                let action = match before {
                    Some(before) => {
                        detail["before"] = before;
                        "score.corrected"
                    }
                    None => "score.queued",
                };
                entries.push(NewAuditEntry::tenant(
                    tenant,
                    s.actor.clone(),
                    action,
                    format!("score:{}", row.id),
                    detail,
                ));
                let replaced: Vec<String> = match prev {
                    Some(prev) => vec![rows[prev].id.to_string()],
                    None => db_superseded.get(&pair).cloned().unwrap_or_default(),
                };
                for old in replaced {
                    entries.push(NewAuditEntry::tenant(
                        tenant,
                        s.actor.clone(),
                        "score.superseded",
                        format!("score:{old}"),
                        serde_json::json!({
                            "superseded_by": row.id.to_string(),
                            "grade_target_id": row.target, "person_id": row.person,
                        }),
                    ));
                }
            }

            // 7. One multi-row INSERT (per thousand rows).
            for chunk in rows.chunks(INSERT_CHUNK) {
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO scores (id, tenant_id, grade_target_id, person_id, score_given, score_maximum, comment, \
                       activity_progress, grading_progress, actor_kind, actor_id, timestamp_micros, idempotency_key, request_hash, \
                       state, attempts, next_attempt_at, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, row| {
                    let s = &row.req.score;
                    b.push_bind(row.id.to_string())
                        .push_bind(&tenant_s)
                        .push_bind(&row.target)
                        .push_bind(&row.person)
                        .push_bind(s.score_given)
                        .push_bind(s.score_maximum)
                        .push_bind(&s.comment)
                        .push_bind(s.activity_progress.as_str())
                        .push_bind(s.grading_progress.as_str())
                        .push_bind(s.actor.kind.as_str())
                        .push_bind(&s.actor.id)
                        .push_bind(row.timestamp)
                        .push_bind(&row.req.idempotency_key)
                        .push_bind(&row.req.request_hash)
                        .push_bind(row.state.as_str())
                        .push_bind(0_i64)
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.build().execute(&mut *tx).await?;
            }

            // 8. Every audit entry, in item order.
            for chunk in entries.chunks(AUDIT_CHUNK) {
                audit_append_all!(tx, chunk);
            }

            // 9. The stored scores that keys named, for their answers.
            let wanted: Vec<&String> = plans
                .iter()
                .filter_map(|p| match p {
                    Plan::Stored(id) => Some(id),
                    _ => None,
                })
                .collect();
            let mut replayed: HashMap<String, ScoreRecord> = HashMap::new();
            if !wanted.is_empty() {
                let mut q = builder_for(&tx, "SELECT ");
                q.push(SCORE_COLUMNS)
                    .push(" FROM scores WHERE tenant_id = ")
                    .push_bind(&tenant_s)
                    .push(" AND id IN (");
                let mut list = q.separated(", ");
                for id in &wanted {
                    list.push_bind(*id);
                }
                q.push(")");
                let found: Vec<ScoreRow> = q.build_query_as().fetch_all(&mut *tx).await?;
                for row in found {
                    let record = ScoreRecord::try_from(row)?;
                    replayed.insert(record.id.to_string(), record);
                }
            }
            tx.commit().await?;

            let created: Vec<ScoreRecord> = rows
                .iter()
                .map(|row| {
                    let s = &row.req.score;
                    ScoreRecord {
                        id: row.id,
                        grade_target_id: row.target.clone(),
                        person_id: row.person.clone(),
                        score_given: s.score_given,
                        score_maximum: s.score_maximum,
                        comment: s.comment.clone(),
                        activity_progress: s.activity_progress.as_str().to_owned(),
                        grading_progress: s.grading_progress.as_str().to_owned(),
                        actor: s.actor.clone(),
                        timestamp_micros: row.timestamp,
                        state: row.state,
                        attempts: 0,
                        next_attempt_at: (row.state == ScoreState::Queued).then_some(now),
                        last_status: None,
                        last_error: None,
                        delivered_at: None,
                        created_at: now,
                    }
                })
                .collect();
            let mut out: Vec<ScoreBatchOutcome> = Vec::with_capacity(items.len());
            for (i, plan) in plans.iter().enumerate() {
                let answer = match plan {
                    Plan::Insert => match row_of_item.get(&i) {
                        Some(&n) => ScoreBatchOutcome::Created(created[n].clone()),
                        None => return Err(corrupt("row of a batch item is missing")),
                    },
                    Plan::NotFound | Plan::Pending => ScoreBatchOutcome::NotFound,
                    Plan::Stored(id) => match replayed.get(id) {
                        Some(record) => ScoreBatchOutcome::Replayed(record.clone()),
                        None => return Err(corrupt("named by an idempotency key is missing")),
                    },
                    Plan::SameAs(first) => match &out[*first] {
                        ScoreBatchOutcome::Created(r) | ScoreBatchOutcome::Replayed(r) => {
                            ScoreBatchOutcome::Replayed(r.clone())
                        }
                        other => other.clone(),
                    },
                    Plan::Conflict => ScoreBatchOutcome::Conflict(KEY_CONFLICT),
                };
                out.push(answer);
            }
            out
        });
        Ok(outcome)
    }
}
