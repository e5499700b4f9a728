//! Retention: finished jobs older than `retention` are deleted with their events, webhook
//! deliveries and attempts (foreign keys cascade) and their artifact files; idempotency keys
//! older than 24 h are dropped; artifact files without a job are removed. Runs in small batches so
//! each write transaction stays short. Used by the background task and by `foreman prune`.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::store::{Result, Store};

/// Idempotency keys are honoured for this long (IETF draft / Stripe).
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
const BATCH: i64 = 1000;

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub files: u64,
    pub keys: u64,
}

/// Deletes one batch of expired jobs; returns their artifact file names.
fn expired_batch(conn: &Connection, cutoff: i64) -> Result<Vec<Option<String>>> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM jobs WHERE seq IN (
            SELECT seq FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1
              AND state IN ('done', 'failed', 'canceled') LIMIT ?2)
         RETURNING artifact",
    )?;
    let files = stmt
        .query_map(params![cutoff, BATCH], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(files)
}

/// Prunes everything older than `retention_ms` before `now`.
pub async fn prune(store: &Store, artifacts: &Path, now: i64, retention_ms: i64) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    let cutoff = now - retention_ms;
    loop {
        let files = store.write(move |c| expired_batch(c, cutoff)).await?;
        pruned.jobs += files.len() as u64;
        for file in files.iter().flatten() {
            if std::fs::remove_file(artifacts.join(file)).is_ok() {
                pruned.files += 1;
            }
        }
        if (files.len() as i64) < BATCH {
            break;
        }
    }
    pruned.keys = store
        .write(move |c| {
            Ok(c.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [now - IDEMPOTENCY_TTL_MS],
            )? as u64)
        })
        .await?;
    pruned.files += remove_orphans(store, artifacts).await?;
    Ok(pruned)
}

/// Artifact files no job refers to (a crash between writing a file and committing `done`).
async fn remove_orphans(store: &Store, artifacts: &Path) -> Result<u64> {
    let Ok(entries) = std::fs::read_dir(artifacts) else {
        return Ok(0);
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .filter(|n| old_enough(&artifacts.join(n)))
        .collect();
    let mut removed = 0;
    for name in names {
        let lookup = name.clone();
        let referenced: bool = store
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE artifact = ?1)",
                    [lookup],
                    |r| r.get(0),
                )?)
            })
            .await?;
        if !referenced && std::fs::remove_file(artifacts.join(&name)).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Files younger than this may belong to a job whose `done` is about to commit.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

fn old_enough(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > ORPHAN_GRACE)
}
