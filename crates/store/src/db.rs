//! The two pools and the macro that runs one body of code against either.

use crate::error::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store holds. The body is expanded once per
/// dialect, so it is type-checked against both.
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Opens a write transaction. SQLite must take its write lock up front (`BEGIN IMMEDIATE`):
/// a deferred transaction that reads first and writes later fails with SQLITE_BUSY when
/// another writer got in between, without waiting for the busy timeout.
pub(crate) trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    > + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            // WAL with synchronous=NORMAL: a commit is written to the WAL file but not
            // fsynced, so it survives the process crashing or being killed (the launch
            // writer answers only after COMMIT); a power loss or OS crash can lose the last
            // commits before a checkpoint, never corrupt the database.
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma(
                    "wal_autocheckpoint",
                    SQLITE_AUTOCHECKPOINT_PAGES.to_string(),
                )
                .pragma("cache_size", SQLITE_CACHE_KIB.to_string());
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await?;
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(checkpoint_in_background(pool.clone()));
            }
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            Self::connect_postgres(opts).await
        } else {
            Err(StoreError::UnsupportedUrl(
                "expected sqlite:… or postgres://…".into(),
            ))
        }
    }

    pub(crate) async fn connect_postgres(opts: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(opts)
            .await?;
        Ok(Self::Postgres(pool))
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// WAL pages (4 KiB each) past which the connection that commits checkpoints the WAL into
/// the database file itself, and fsyncs it twice. SQLite's default of 1000 pages made the
/// launch writer do that several times a second under load; the background checkpointer below
/// normally does the copying, so this is the backstop that lets the WAL start over.
const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Page cache per connection, in KiB (SQLite's default is 2 MiB): the launch writer's working
/// set (people, enrolments, the nonce and handoff indexes) is larger.
const SQLITE_CACHE_KIB: i64 = -16_384;

/// How often the background checkpointer runs.
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies committed WAL pages into the database file on a connection of its own, so that
/// writers, the launch writer above all, do not stop to do it (or to fsync) in their COMMIT.
/// PASSIVE never blocks a writer or a reader; it ends when the pool closes.
async fn checkpoint_in_background(pool: SqlitePool) {
    let closed = pool.close_event();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            () = &mut closed => return,
            () = tokio::time::sleep(SQLITE_CHECKPOINT_EVERY) => {}
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "background WAL checkpoint failed");
        }
    }
}

/// Microseconds since the epoch: the unit of every time column.
pub fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    i64::try_from(now).unwrap_or(i64::MAX)
}
