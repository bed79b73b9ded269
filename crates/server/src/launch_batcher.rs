//! Launches are recorded in batches: handlers hand their launch to a few writer tasks, which
//! take whatever has queued up (up to a limit) and record it in one transaction. Under light
//! load a batch is one launch and nothing waits; under an exam-peak load the commit and the
//! per-statement round trips are shared by everything that arrived meanwhile.

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
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| ((j.scope, j.launch), j.reply))
            .unzip();
        match store.record_launches(&batch).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.map_err(RecordError::Refused));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, launches = batch.len(), "recording a batch of launches failed");
                for reply in replies {
                    let _ = reply.send(Err(RecordError::Failed));
                }
            }
        }
    }
}
