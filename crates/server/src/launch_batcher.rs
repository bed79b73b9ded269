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
