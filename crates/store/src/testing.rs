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
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Invalid(format!("temp dir: {e}")))?;
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
            eprintln!(
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
