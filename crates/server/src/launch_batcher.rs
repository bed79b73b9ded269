//! Launches are recorded in batches: handlers hand their launch to a few writer tasks, which
//! take whatever has queued up (up to a limit) and record it in one transaction. Under light
//! load a batch is one launch and nothing waits; under an exam-peak load the commit and the
//! database calls are shared by everything that arrived meanwhile.
//!
//! A handler is answered only after its batch has committed, so a launch the browser was
//! told about is never lost to a crash; a crash after the commit and before the answer leaves
//! a recorded launch whose code nobody holds, which expires unused.

use std::sync::Arc;
use store::{LaunchRefusal, NewLaunch, RecordedLaunch, Store, TenantScope};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Why a launch was not recorded.
#[derive(Debug)]
pub enum RecordError {
    Refused(LaunchRefusal),
    /// The batch's transaction failed; the error was logged once for the batch.
    Failed,
}

struct Job {
    scope: TenantScope,
    launch: NewLaunch,
    reply: oneshot::Sender<Result<RecordedLaunch, RecordError>>,
}

/// The handle handlers use.
#[derive(Debug, Clone)]
pub struct LaunchBatcher {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl LaunchBatcher {
    /// Starts `writers` writer tasks (one suits SQLite's single writer; PostgreSQL gains
    /// from a few) taking up to `max_batch` launches each time.
    pub fn spawn(store: Store, writers: usize, max_batch: usize) -> Self {
        let (jobs, rx) = mpsc::channel(8192);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(store.clone(), rx.clone(), max_batch.max(1)));
        }
        Self { jobs }
    }

    /// Records one launch, in whatever batch it lands in.
    pub async fn record(
        &self,
        scope: TenantScope,
        launch: NewLaunch,
    ) -> Result<RecordedLaunch, RecordError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                scope,
                launch,
                reply,
            })
            .await
            .map_err(|_| RecordError::Failed)?;
        answer.await.unwrap_or(Err(RecordError::Failed))
    }
}

async fn write_batches(store: Store, rx: Arc<Mutex<mpsc::Receiver<Job>>>, max_batch: usize) {
    // The writer keeps its connection while launches keep coming, and gives it back to the
    // pool before it waits for the next one.
    let mut writer = store.launch_writer();
    let mut jobs = Vec::with_capacity(max_batch);
    let mut batch = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    loop {
        {
            // Never hold a connection while waiting, for launches or for another writer that
            // is: an idle writer must not keep the pool from closing at shutdown.
            let mut rx = match rx.try_lock() {
                Ok(rx) => rx,
                Err(_) => {
                    writer.release();
                    rx.lock().await
                }
            };
            if rx.is_empty() {
                writer.release();
            }
            if rx.recv_many(&mut jobs, max_batch).await == 0 {
                return;
            }
        }
        for j in jobs.drain(..) {
            batch.push((j.scope, j.launch));
            replies.push(j.reply);
        }
        match writer.record(&batch).await {
            Ok(results) => {
                for (reply, result) in replies.drain(..).zip(results) {
                    let _ = reply.send(result.map_err(RecordError::Refused));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, launches = batch.len(), "recording a batch of launches failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(RecordError::Failed));
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::testing::{TestDatabase, seed_launch};
    use store::{LaunchPerson, crypto::sha256_hex, now_micros};

    fn launch(platform: domain::PlatformId, n: usize) -> NewLaunch {
        NewLaunch {
            platform_id: platform,
            deployment_id: "dep-1".into(),
            nonce: format!("nonce-{n}"),
            nonce_expires_at: now_micros() + 3_600_000_000,
            message_type: "LtiResourceLinkRequest".into(),
            person: Some(LaunchPerson {
                platform_user_id: format!("user-{}", n % 7),
                ..Default::default()
            }),
            roles: vec![domain::Role::Learner],
            context: None,
            resource: None,
            line_item: None,
            extras: serde_json::json!({}),
            handoff_code_hash: sha256_hex(format!("code-{n}").as_bytes()),
            handoff_expires_at: now_micros() + 60_000_000,
        }
    }

    #[tokio::test]
    async fn concurrent_launches_are_batched_answered_once_each_and_writers_let_the_pool_close() {
        for db in TestDatabase::all().await.unwrap() {
            let base = url::Url::parse("https://lms.example/").unwrap();
            let seeded = seed_launch(&db.store, "batched", domain::PlatformKind::Canvas, &base)
                .await
                .unwrap();
            let batcher = LaunchBatcher::spawn(db.store.clone(), 4, 16);
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0..120 {
                let (batcher, scope) = (batcher.clone(), seeded.scope.clone());
                // Every tenth launch replays the nonce of the one before it.
                let l = launch(seeded.platform.id, if n % 10 == 9 { n - 1 } else { n });
                tasks.spawn(async move { batcher.record(scope, l).await });
            }
            let (mut ok, mut replayed) = (0, 0);
            while let Some(r) = tasks.join_next().await {
                match r.unwrap() {
                    Ok(_) => ok += 1,
                    Err(RecordError::Refused(LaunchRefusal::NonceReplayed)) => replayed += 1,
                    Err(e) => panic!("{} launch failed: {e:?}", db.label),
                }
            }
            assert_eq!((ok, replayed), (108, 12), "{}", db.label);
            let chain = seeded.scope.tenant_id().to_string();
            let report = db.store.verify_audit(Some(&chain)).await.unwrap().remove(0);
            assert!(report.is_intact(), "{report:?}");
            // Idle writers hold no connection, so shutting down does not hang.
            tokio::time::timeout(std::time::Duration::from_secs(10), db.store.close())
                .await
                .unwrap_or_else(|_| panic!("{}: the pool did not close", db.label));
            db.cleanup().await;
        }
    }
}
