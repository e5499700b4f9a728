//! The SQLite store: one writer thread, a small pool of read connections, embedded migrations.
//!
//! # Design (ADR 0003)
//! - `writer`: a dedicated `std::thread` owns the only write connection. Callers send closures
//!   over a bounded channel; the thread groups whatever is waiting into one transaction (group
//!   commit), runs each closure inside its own savepoint, commits, and only then replies. A
//!   failing closure rolls back its savepoint alone; a failing commit fails the whole batch.
//! - [`migrations`]: plain `.sql` files from `migrations/`, embedded at compile time and applied
//!   in one transaction at startup, recorded in `schema_migrations`.
//! - Reads run on `spawn_blocking` with pooled read-only connections, so they never queue
//!   behind writes (WAL lets readers proceed during a write).
//!
//! Query functions are plain `fn(&Connection, ..) -> Result<T, StoreError>` so they can be unit
//! tested without async.

pub mod migrations;
mod pragmas;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::config::DatabaseConfig;
pub use writer::WriterStats;

/// Errors of the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("pragma {name} did not take: wanted {wanted}, SQLite reports {got}")]
    Pragma {
        name: &'static str,
        wanted: String,
        got: String,
    },
    #[error(
        "database schema version {found} is newer than this foreman knows ({known}); upgrade foreman"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database writer has shut down")]
    Closed,
    #[error("a database operation panicked")]
    Panicked,
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// True when the disk or database is full: the edge answers 503 instead of 500.
    pub fn is_full(&self) -> bool {
        let code = match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.code),
            _ => None,
        };
        code == Some(rusqlite::ErrorCode::DiskFull)
            || matches!(self, StoreError::Commit(m) if m.contains("full"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: writer::Writer,
    readers: Arc<ReadPool>,
}

impl Store {
    /// Opens (creating if needed) the database, checks pragmas, runs migrations and starts the
    /// writer thread.
    pub fn open(path: &Path, config: &DatabaseConfig) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        pragmas::apply_write(&conn, config)?;
        migrations::apply(&mut conn)?;
        let writer = writer::Writer::spawn(conn)?;
        let readers = Arc::new(ReadPool {
            path: path.to_path_buf(),
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Self { writer, readers })
    }

    /// Runs `f` inside the writer's transaction; resolves after the commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Queues `f` without waiting for its commit (the returned future waits). Lets the worker
    /// overlap an fsync with a network call while keeping writes in order.
    pub async fn enqueue<T, F>(
        &self,
        f: F,
    ) -> Result<impl std::future::Future<Output = Result<T>> + use<T, F>>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.enqueue(f).await
    }

    /// Runs `f` on a read-only connection off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = f(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }

    /// Proves the database accepts a write (used by `/readyz`).
    pub async fn ping_write(&self) -> Result<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO meta (key, value, updated_at) VALUES ('ready_probe', 'ok', ?1)
                 ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at",
                [crate::clock::now_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }

    /// Counters of the writer thread (batches, operations).
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// Finishes queued writes, checkpoints the WAL and closes the write connection.
    pub async fn close(&self) -> Result<()> {
        self.readers.clear();
        self.writer.close().await
    }
}

/// Read-only connections reused across reads.
struct ReadPool {
    path: PathBuf,
    config: DatabaseConfig,
    idle: Mutex<Vec<Connection>>,
}

/// Idle read connections kept; more are opened on demand and dropped after use.
const MAX_IDLE_READERS: usize = 8;

impl ReadPool {
    fn take(&self) -> Result<Connection> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        pragmas::apply_read(&conn, &self.config)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
    }

    fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
