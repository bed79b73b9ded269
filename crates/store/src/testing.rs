//! Databases for tests: a fresh SQLite file, and a fresh PostgreSQL schema when
//! `LMSBRIDGE_TEST_POSTGRES_URL` is set. Without that variable the PostgreSQL half is skipped
//! with a message on stderr, except under CI (`CI` set), where its absence is an error.

use crate::db::Db;
use crate::{Store, StoreError};
use sqlx::postgres::PgConnectOptions;
use std::path::PathBuf;
use std::str::FromStr;

/// The variable that points tests at PostgreSQL.
pub const POSTGRES_URL_VAR: &str = "LMSBRIDGE_TEST_POSTGRES_URL";

/// A database made for one test, removed when dropped (SQLite) or by `cleanup` (PostgreSQL).
#[derive(Debug)]
pub struct TestDatabase {
    pub store: Store,
    pub url: String,
    pub label: &'static str,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Schema { admin_url: String, schema: String },
}

impl TestDatabase {
    /// A migrated SQLite database in a new temporary directory.
    pub async fn sqlite() -> Result<Self, StoreError> {
        let dir = std::env::temp_dir().join(format!("lmsbridge-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Invalid(format!("temp dir: {e}")))?;
        let url = format!("sqlite://{}", dir.join("test.db").display());
        let store = Store::open(&url).await?;
        Ok(Self {
            store,
            url,
            label: "sqlite",
            cleanup: Cleanup::Dir(dir),
        })
    }

    /// A migrated PostgreSQL schema of its own, or `None` (with a loud message) when no
    /// PostgreSQL is configured.
    pub async fn postgres() -> Result<Option<Self>, StoreError> {
        let Some(admin_url) = postgres_url() else {
            return Ok(None);
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(&admin_url).await?;
        on_db!(&admin.db, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(pool)
                .await?;
        });
        admin.close().await;
        let url = with_search_path(&admin_url, &schema);
        let opts = PgConnectOptions::from_str(&admin_url)?.options([("search_path", &schema)]);
        let store = Store {
            db: Db::connect_postgres(opts).await?,
        };
        store.migrate().await?;
        Ok(Some(Self {
            store,
            url,
            label: "postgres",
            cleanup: Cleanup::Schema { admin_url, schema },
        }))
    }

    /// SQLite always, PostgreSQL when configured: run the same test body over each.
    pub async fn all() -> Result<Vec<Self>, StoreError> {
        let mut dbs = vec![Self::sqlite().await?];
        dbs.extend(Self::postgres().await?);
        Ok(dbs)
    }

    /// Drops what the test created.
    pub async fn cleanup(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { admin_url, schema } => {
                if let Ok(admin) = Store::connect(&admin_url).await {
                    on_db!(&admin.db, |pool| {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(pool)
                        .await;
                    });
                    admin.close().await;
                }
            }
        }
    }
}

/// The PostgreSQL URL for tests, or `None` after saying loudly that PostgreSQL is skipped.
/// Under CI a missing URL is a failure, not a skip.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{POSTGRES_URL_VAR} must be set under CI: the PostgreSQL tests may not be skipped there"
            );
            // Written to stderr directly: the test harness captures eprintln! of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (PostgreSQL half): set {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test to run it"
            );
            None
        }
    }
}

/// A connection URL that selects `schema` (for processes started by tests).
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

impl Store {
    /// Runs raw SQL, bypassing every repository. For tests that tamper with data on purpose.
    #[doc(hidden)]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

/// A tenant with one platform and one recorded launch, for tests of code built on the store.
#[derive(Debug, Clone)]
pub struct SeededLaunch {
    pub scope: crate::TenantScope,
    pub api_key: String,
    pub platform: domain::Platform,
    pub launch: crate::RecordedLaunch,
}

/// Creates a tenant, registers a platform whose token and line item live under `lms_base`,
/// and records a launch of user `user-1` with line item `{lms_base}/line_items/1`.
pub async fn seed_launch(
    store: &Store,
    name: &str,
    kind: domain::PlatformKind,
    lms_base: &url::Url,
) -> Result<SeededLaunch, StoreError> {
    let actor = domain::Actor::system("test");
    let (_, key) = store.create_tenant(name, None, &actor).await?;
    let scope = store
        .authenticate_api_key(key.secret())
        .await?
        .ok_or(StoreError::NotFound)?;
    let at = |p: &str| {
        lms_base
            .join(p)
            .map_err(|e| StoreError::Invalid(e.to_string()))
    };
    let platform = store
        .tenant(&scope)
        .add_platform(
            &crate::NewPlatform {
                kind,
                issuer: format!("{lms_base}{name}"),
                client_id: format!("client-{name}"),
                auth_url: at("auth")?,
                token_url: at("token")?,
                jwks_url: at("jwks")?,
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &actor,
        )
        .await?;
    let now = crate::now_micros();
    let launch = store
        .tenant(&scope)
        .record_launch(&crate::NewLaunch {
            platform_id: platform.id,
            deployment_id: "dep-1".into(),
            nonce: crate::crypto::random_token(16),
            nonce_expires_at: now + 3_600_000_000,
            message_type: "LtiResourceLinkRequest".into(),
            person: Some(crate::LaunchPerson {
                platform_user_id: "user-1".into(),
                ..Default::default()
            }),
            roles: vec![domain::Role::Learner],
            context: Some(crate::LaunchContext {
                platform_context_id: "course-1".into(),
                ..Default::default()
            }),
            resource: Some(("res-1".into(), None)),
            line_item: Some((at("line_items/1")?.to_string(), None)),
            extras: serde_json::json!({}),
            handoff_code_hash: crate::crypto::random_token(16),
            handoff_expires_at: now + 60_000_000,
        })
        .await?;
    Ok(SeededLaunch {
        scope,
        api_key: key.secret().to_owned(),
        platform,
        launch,
    })
}

/// A final score (activity completed, fully graded) by an AI grader, as the product API
/// enqueues one, without an idempotency key.
pub fn final_score(
    target: domain::GradeTargetId,
    person: domain::PersonId,
    given: f64,
    maximum: f64,
) -> crate::ScoreRequest {
    crate::ScoreRequest {
        score: domain::NewScore {
            grade_target_id: target,
            person_id: person,
            score_given: Some(given),
            score_maximum: Some(maximum),
            comment: None,
            activity_progress: domain::ActivityProgress::Completed,
            grading_progress: domain::GradingProgress::FullyGraded,
            actor: domain::Actor {
                kind: domain::ActorKind::AiGrader,
                id: "grader".into(),
            },
        },
        idempotency_key: None,
        request_hash: "h".into(),
    }
}

/// Runs a scenario that takes a database URL (`None`: a SQLite file of its own) on SQLite,
/// then on a fresh PostgreSQL schema when [`POSTGRES_URL_VAR`] is set (skipped with a note
/// otherwise), each bounded by `within`; `what` names the scenario when it overruns.
pub async fn on_sqlite_then_postgres<F, Fut>(what: &str, within: std::time::Duration, run: F)
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Asked first so that a misconfigured PostgreSQL fails before the SQLite half runs.
    let pg = TestDatabase::postgres().await.unwrap();
    tokio::time::timeout(within, run(None))
        .await
        .unwrap_or_else(|_| panic!("{what} finished in time on SQLite"));
    match pg {
        Some(pg) => {
            tokio::time::timeout(within, run(Some(pg.url.clone())))
                .await
                .unwrap_or_else(|_| panic!("{what} finished in time on PostgreSQL"));
            pg.cleanup().await;
        }
        None => eprintln!("SKIPPED (PostgreSQL half: set {POSTGRES_URL_VAR})"),
    }
}

/// Claims every webhook queued and not yet claimed, as (event, data): a test reads what was
/// queued since its last call.
pub async fn claim_queued_webhooks(store: &Store) -> Vec<(String, serde_json::Value)> {
    store
        .claim_webhooks("test", crate::now_micros() + 3_600_000_000, 500)
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let v: serde_json::Value = serde_json::from_str(&c.payload).unwrap();
            (c.event, v["data"].clone())
        })
        .collect()
}

/// Whether every audit record still verifies.
pub async fn audit_intact(store: &Store) -> bool {
    store
        .verify_audit(None)
        .await
        .unwrap()
        .iter()
        .all(|r| r.is_intact())
}

/// A Moodle plugin event as it stands in a batch: `name` is the event class below
/// `\core\event\`, times in Unix seconds, `cm` the course module when there is one.
#[allow(clippy::too_many_arguments)]
pub fn moodle_event_json(
    id: &str,
    seq: i64,
    name: &str,
    at: i64,
    course: i64,
    user: i64,
    cm: Option<i64>,
    payload: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({"id": id, "seq": seq, "name": format!("\\core\\event\\{name}"),
        "occurred_at": at, "course_id": course, "user_id": user, "cm_id": cm, "payload": payload})
}
