//! The single writer thread with group commit.
//!
//! Whatever is waiting in the channel when the thread wakes is run in one transaction (up to
//! [`MAX_BATCH`] operations), each inside its own savepoint. Replies are sent only after `COMMIT`
//! returns, so a caller that got `Ok` knows its write is durable (per `synchronous`). Grouping is
//! what makes `synchronous=FULL` affordable: one fsync covers every operation of the batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Result, StoreError};

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 256;
/// Capacity of the command channel; senders wait (asynchronously) when it is full.
const CHANNEL_CAPACITY: usize = 4096;

/// Delivers the outcome of one operation once the batch's commit is known.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;
/// One operation: runs on the writer's connection, says whether it succeeded, and returns how to reply.
type Op = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

enum Command {
    Op(Op, tracing::Span),
    Close(oneshot::Sender<Result<()>>),
}

/// Counters exposed for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub batches: u64,
    pub operations: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    operations: AtomicU64,
}

#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Command>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    counters: Arc<Counters>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection) -> Result<Self> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, &thread_counters))
            .map_err(|e| StoreError::Invalid(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
            counters,
        })
    }

    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.enqueue(f).await?.await
    }

    /// Queues `f` and returns once it is in the writer's channel; the returned future resolves
    /// after its commit. Writes run in channel order, so a later write commits after this one.
    pub(super) async fn enqueue<T, F>(
        &self,
        f: F,
    ) -> Result<impl std::future::Future<Output = Result<T>> + use<T, F>>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit: Result<()>| {
                let _ = reply.send(commit.and(result));
            });
            (ok, finish)
        });
        self.tx
            .send(Command::Op(op, tracing::Span::current()))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(async move { answer.await.map_err(|_| StoreError::Closed)? })
    }

    pub(super) fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            operations: self.counters.operations.load(Ordering::Relaxed),
        }
    }

    pub(super) async fn close(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Close(reply)).await.is_err() {
            return Ok(()); // already closed
        }
        let outcome = answer.await.unwrap_or(Ok(()));
        let handle = self.thread.lock().await.take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|_| StoreError::Panicked)?
                .map_err(|_| StoreError::Panicked)?;
        }
        outcome
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Command>, counters: &Counters) {
    let mut batch: Vec<(Op, tracing::Span)> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut close = None;
        match first {
            Command::Op(op, span) => batch.push((op, span)),
            Command::Close(reply) => close = Some(reply),
        }
        while close.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Command::Op(op, span)) => batch.push((op, span)),
                Ok(Command::Close(reply)) => close = Some(reply),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters
                .operations
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            run_batch(&conn, batch.drain(..));
        }
        if let Some(reply) = close {
            rx.close();
            // Writes that raced the close still get an answer.
            while let Ok(Command::Op(op, span)) = rx.try_recv() {
                run_batch(&conn, std::iter::once((op, span)));
            }
            let _ = reply.send(shut_down(conn));
            return;
        }
    }
}

fn run_batch(conn: &Connection, ops: impl Iterator<Item = (Op, tracing::Span)>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = e.to_string();
        for (op, _) in ops {
            // The op never ran; answer with the error without running it.
            drop(op);
            tracing::error!(error = %message, "cannot begin transaction");
        }
        return;
    }
    let started = std::time::Instant::now();
    let finishes: Vec<Finish> = ops.map(|(op, span)| run_op(conn, op, &span)).collect();
    let commit = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    });
    metrics::histogram!(crate::metrics::SQLITE_WRITE).record(started.elapsed().as_secs_f64());
    for finish in finishes {
        finish(commit.clone().map_err(StoreError::Commit));
    }
}

fn run_op(conn: &Connection, op: Op, span: &tracing::Span) -> Finish {
    let _entered = span.enter();
    if let Err(e) = conn.execute_batch("SAVEPOINT op") {
        let message = e.to_string();
        return Box::new(move |_| tracing::error!(error = %message, "savepoint failed"));
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| op(conn)));
    let ok = matches!(outcome, Ok((true, _)));
    let undo = if ok {
        "RELEASE op"
    } else {
        "ROLLBACK TO op; RELEASE op"
    };
    if let Err(e) = conn.execute_batch(undo) {
        tracing::error!(error = %e, "cannot end savepoint");
    }
    match outcome {
        Ok((_, finish)) => finish,
        Err(_) => {
            tracing::error!("a database operation panicked; its savepoint was rolled back");
            Box::new(|_| {})
        }
    }
}

fn shut_down(conn: Connection) -> Result<()> {
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    conn.close().map_err(|(_, e)| StoreError::Sqlite(e))
}
