//! Figures for `GET /metrics`, read from the database so that every instance reports the
//! same queue whichever process runs the worker.

use crate::Store;
use crate::error::StoreError;

/// Upper bounds (milliseconds) of the delivery latency histogram buckets.
pub const LATENCY_BUCKETS_MS: &[i64] = &[50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// What the metrics endpoint shows about grade passback.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassbackFigures {
    /// Scores by state.
    pub scores_by_state: Vec<(String, i64)>,
    /// Attempts by outcome (`delivered`, `retry`, `dead`) and platform kind.
    pub attempts: Vec<(String, String, i64)>,
    /// Attempts the platform answered with 429 (or Canvas's rate-limit 403, recorded as 429).
    pub throttled: i64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS_MS`], then the total count and the
    /// sum of latencies, over every attempt.
    pub latency_buckets: Vec<i64>,
    pub latency_count: i64,
    pub latency_sum_ms: i64,
}

impl Store {
    /// The passback figures across all tenants.
    pub async fn passback_figures(&self) -> Result<PassbackFigures, StoreError> {
        let bucket_sql: String = LATENCY_BUCKETS_MS
            .iter()
            .map(|b| format!("SUM(CASE WHEN latency_ms <= {b} THEN 1 ELSE 0 END)"))
            .collect::<Vec<_>>()
            .join(", ");
        let latency_sql = format!(
            "SELECT {bucket_sql}, COUNT(*), CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT) FROM score_attempts"
        );
        let (by_state, attempts, throttled, latency) = on_db!(&self.db, |pool| {
            let by_state: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) FROM scores GROUP BY state ORDER BY state")
                    .fetch_all(pool)
                    .await?;
            let attempts: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT a.outcome, p.kind, COUNT(*) FROM score_attempts a \
                 JOIN scores s ON s.id = a.score_id JOIN grade_targets g ON g.id = s.grade_target_id \
                 JOIN platforms p ON p.id = g.platform_id GROUP BY a.outcome, p.kind ORDER BY a.outcome, p.kind",
            )
            .fetch_all(pool)
            .await?;
            let throttled: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM score_attempts WHERE status = 429")
                    .fetch_one(pool)
                    .await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(latency_sql.clone()))
                .fetch_one(pool)
                .await?;
            let mut latency = Vec::with_capacity(LATENCY_BUCKETS_MS.len() + 2);
            for i in 0..LATENCY_BUCKETS_MS.len() + 2 {
                let v: Option<i64> = sqlx::Row::try_get(&row, i)?;
                latency.push(v.unwrap_or(0));
            }
            (by_state, attempts, throttled, latency)
        });
        let n = LATENCY_BUCKETS_MS.len();
        Ok(PassbackFigures {
            scores_by_state: by_state,
            attempts,
            throttled,
            latency_buckets: latency[..n].to_vec(),
            latency_count: latency[n],
            latency_sum_ms: latency[n + 1],
        })
    }
}
