//! The durable job queue: SQL over the `jobs`, `queue_keys` and `job_events` tables.
//!
//! Every function here is a plain `fn(&Connection, ..)` that runs inside the writer's
//! transaction (or on a read connection), so a state change, its event row and the
//! `queue_keys` bookkeeping commit together or not at all.
//!
//! - [`transition`] is the one place that validates a state change ([`allowed`]).
//! - [`select`] holds the drain-by-model policy, a pure function over per-key summaries.

pub mod bus;
pub mod select;

use foreman_api::jobs::{JobEvent, JobKind, JobState, JobView, Timestamps, Usage};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::store::{Result, StoreError};

/// Whether `from → to` is a legal transition.
pub fn allowed(from: JobState, to: JobState) -> bool {
    use JobState::*;
    matches!(
        (from, to),
        (Queued, Loading)
            | (Queued, Canceled)
            | (Loading, Working)
            | (Loading, Queued)
            | (Loading, Failed)
            | (Loading, Canceled)
            | (Working, Done)
            | (Working, Failed)
            | (Working, Queued)
            | (Working, Canceled)
    )
}

/// A job as the worker needs it.
#[derive(Debug, Clone)]
pub struct Job {
    pub seq: i64,
    pub id: String,
    pub kind: JobKind,
    pub model: String,
    pub drain_key: String,
    pub state: JobState,
    pub request: Value,
    pub attempts: u32,
}

/// Runner options that force Ollama to reload a model when they differ (ollama-wire.md §6.2).
pub const RELOAD_OPTIONS: &[&str] = &[
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "num_thread",
];

/// `llama3.2` and `llama3.2:latest` are the same model.
pub fn canonical_model(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// The drain key: the canonical model name plus the reload-forcing options it sets, sorted.
pub fn drain_key(model: &str, request: &Value) -> String {
    let mut key = canonical_model(model);
    let Some(options) = request.get("options").and_then(Value::as_object) else {
        return key;
    };
    let mut parts: Vec<String> = RELOAD_OPTIONS
        .iter()
        .filter_map(|k| options.get(*k).map(|v| format!("{k}={v}")))
        .collect();
    parts.sort();
    if !parts.is_empty() {
        key.push('|');
        key.push_str(&parts.join(","));
    }
    key
}

/// Data of a new job.
pub struct NewJob {
    pub id: String,
    pub kind: JobKind,
    pub model: String,
    pub request: Value,
    pub webhook: Option<Value>,
    pub metadata: Option<Value>,
    pub now_ms: i64,
}

/// Inserts a queued job with its first event; returns its view.
pub fn insert(conn: &Connection, job: &NewJob) -> Result<JobView> {
    let key = drain_key(&job.model, &job.request);
    let model = canonical_model(&job.model);
    conn.execute(
        "INSERT INTO jobs (id, kind, model, drain_key, state, request, webhook, metadata, created_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8)",
        params![
            job.id,
            job.kind.as_str(),
            job.model,
            key,
            job.request.to_string(),
            job.webhook.as_ref().map(Value::to_string),
            job.metadata.as_ref().map(Value::to_string),
            job.now_ms
        ],
    )?;
    let seq = conn.last_insert_rowid();
    key_gained(conn, &key, &model, seq, job.now_ms)?;
    event(conn, &job.id, JobState::Queued, job.now_ms, 0, None)?;
    crate::webhooks::outbox(conn, &job.id, JobState::Queued, job.now_ms)?;
    view(conn, &job.id)?.ok_or_else(|| StoreError::Invalid("job vanished".into()))
}

/// Records that a job of `key` became queued.
fn key_gained(conn: &Connection, key: &str, model: &str, seq: i64, created_at: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO queue_keys (drain_key, model, queued, oldest_seq, oldest_at) VALUES (?1, ?2, 1, ?3, ?4)
         ON CONFLICT (drain_key) DO UPDATE SET
            queued = queued + 1,
            oldest_at = CASE WHEN excluded.oldest_seq < oldest_seq THEN excluded.oldest_at ELSE oldest_at END,
            oldest_seq = min(oldest_seq, excluded.oldest_seq)",
        params![key, model, seq, created_at],
    )?;
    Ok(())
}

/// Records that a job of `key` left the queued state (claimed or canceled).
fn key_lost(conn: &Connection, key: &str) -> Result<()> {
    let next: Option<(i64, i64)> = conn
        .query_row(
            "SELECT seq, created_at FROM jobs WHERE state = 'queued' AND drain_key = ?1 ORDER BY seq LIMIT 1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match next {
        Some((seq, at)) => conn.execute(
            "UPDATE queue_keys SET queued = queued - 1, oldest_seq = ?2, oldest_at = ?3 WHERE drain_key = ?1",
            params![key, seq, at],
        )?,
        None => conn.execute("DELETE FROM queue_keys WHERE drain_key = ?1", [key])?,
    };
    Ok(())
}

fn event(
    conn: &Connection,
    id: &str,
    state: JobState,
    at: i64,
    attempt: u32,
    detail: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO job_events (job_id, state, at, attempt, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, state.as_str(), at, attempt, detail],
    )?;
    Ok(())
}

/// What else a transition writes.
#[derive(Debug, Default, Clone)]
pub struct Change {
    pub detail: Option<String>,
    pub last_error: Option<String>,
    pub result: Option<Value>,
    pub usage: Option<Usage>,
    /// Retry backoff: not eligible again before this time (ms).
    pub not_before: Option<i64>,
    /// Give back the attempt counted at claim (target unreachable: not the job's fault).
    pub refund_attempt: bool,
    /// The stored result file of a done job.
    pub artifact: Option<crate::artifacts::Stored>,
}

/// Moves job `id` to `to`, validating the transition, and appends the event.
/// Returns the new state, or an error if the job is unknown or the transition is illegal.
pub fn transition(
    conn: &Connection,
    id: &str,
    to: JobState,
    now_ms: i64,
    change: &Change,
) -> Result<JobState> {
    let (from, key, model, attempts): (String, String, String, u32) = conn
        .query_row(
            "SELECT state, drain_key, model, attempts FROM jobs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::Invalid(format!("no job {id}")))?;
    let from =
        JobState::parse(&from).ok_or_else(|| StoreError::Invalid(format!("bad state {from}")))?;
    if !allowed(from, to) {
        return Err(StoreError::Invalid(format!(
            "illegal transition {} -> {} for job {id}",
            from.as_str(),
            to.as_str()
        )));
    }
    let attempts = if change.refund_attempt {
        attempts.saturating_sub(1)
    } else if to == JobState::Loading {
        attempts + 1
    } else {
        attempts
    };
    let column = match to {
        JobState::Loading => Some("loading_at"),
        JobState::Working => Some("working_at"),
        s if s.is_terminal() => Some("finished_at"),
        _ => None,
    };
    conn.execute(
        "UPDATE jobs SET state = ?2, attempts = ?3,
            last_error = coalesce(?4, last_error),
            result = coalesce(?5, result),
            usage = coalesce(?6, usage),
            not_before = coalesce(?7, not_before)
         WHERE id = ?1",
        params![
            id,
            to.as_str(),
            attempts,
            change.last_error,
            change.result.as_ref().map(Value::to_string),
            change
                .usage
                .as_ref()
                .and_then(|u| serde_json::to_string(u).ok()),
            change.not_before
        ],
    )?;
    if let Some(a) = &change.artifact {
        conn.execute(
            "UPDATE jobs SET artifact = ?2, artifact_sha256 = ?3, artifact_bytes = ?4 WHERE id = ?1",
            params![id, a.file, a.sha256, a.bytes],
        )?;
    }
    if let Some(column) = column {
        conn.execute(
            &format!("UPDATE jobs SET {column} = ?2 WHERE id = ?1"),
            params![id, now_ms],
        )?;
    }
    if from == JobState::Queued {
        key_lost(conn, &key)?;
    }
    if to == JobState::Queued {
        let (seq, created): (i64, i64) = conn.query_row(
            "SELECT seq, created_at FROM jobs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        key_gained(conn, &key, &canonical_model(&model), seq, created)?;
    }
    event(conn, id, to, now_ms, attempts, change.detail.as_deref())?;
    crate::webhooks::outbox(conn, id, to, now_ms)?;
    Ok(to)
}

/// Claims the next eligible job of `key` (FIFO), moving it to `loading`.
pub fn claim(conn: &Connection, key: &str, now_ms: i64) -> Result<Option<Job>> {
    let id: Option<String> = conn
        .query_row(
            "SELECT id FROM jobs WHERE state = 'queued' AND drain_key = ?1 AND not_before <= ?2
             ORDER BY seq LIMIT 1",
            params![key, now_ms],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = id else { return Ok(None) };
    transition(conn, &id, JobState::Loading, now_ms, &Change::default())?;
    load(conn, &id)
}

/// Loads a job for the worker.
pub fn load(conn: &Connection, id: &str) -> Result<Option<Job>> {
    conn.query_row(
        "SELECT seq, id, kind, model, drain_key, state, request, attempts FROM jobs WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, u32>(7)?,
            ))
        },
    )
    .optional()?
    .map(
        |(seq, id, kind, model, drain_key, state, request, attempts)| {
            Ok(Job {
                seq,
                id,
                kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Invalid(kind.clone()))?,
                model,
                drain_key,
                state: JobState::parse(&state).ok_or_else(|| StoreError::Invalid(state.clone()))?,
                request: serde_json::from_str(&request).unwrap_or(Value::Null),
                attempts,
            })
        },
    )
    .transpose()
}

/// Per-key summaries for the selection policy (one row per key with queued jobs).
pub fn keys(conn: &Connection) -> Result<Vec<select::KeyInfo>> {
    let mut stmt = conn
        .prepare_cached("SELECT drain_key, model, queued, oldest_seq, oldest_at FROM queue_keys")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(select::KeyInfo {
                key: r.get(0)?,
                model: r.get(1)?,
                queued: r.get(2)?,
                oldest_seq: r.get(3)?,
                oldest_at_ms: r.get(4)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Total queued jobs (for admission).
pub fn queued_total(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT coalesce(sum(queued), 0) FROM queue_keys", [], |r| {
            r.get(0)
        })?,
    )
}

/// Earliest `not_before` among queued jobs (`None` when nothing is queued). Called when a claim
/// found nothing: every queued job is in retry backoff, or one just became eligible after the
/// claim looked (then the answer lies in the past and the worker retries at once).
pub fn next_eligible_at(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT min(not_before) FROM jobs WHERE state = 'queued'",
        [],
        |r| r.get(0),
    )?)
}

/// Jobs per state.
pub fn counts_by_state(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

/// Startup recovery: jobs left `loading`/`working` by a dead process go back to `queued`
/// (their attempt counted) or to `failed` when attempts are exhausted. Returns how many.
pub fn recover(conn: &Connection, max_attempts: u32, now_ms: i64) -> Result<(usize, usize)> {
    let mut stmt = conn.prepare(
        "SELECT id, attempts FROM jobs WHERE state IN ('loading', 'working') ORDER BY seq",
    )?;
    let stuck: Vec<(String, u32)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let (mut requeued, mut failed) = (0, 0);
    for (id, attempts) in stuck {
        let message = "interrupted: foreman stopped while the job ran".to_string();
        if attempts >= max_attempts {
            let change = Change {
                detail: Some(format!("{message}; attempts exhausted")),
                last_error: Some(message),
                ..Change::default()
            };
            transition(conn, &id, JobState::Failed, now_ms, &change)?;
            failed += 1;
        } else {
            let change = Change {
                detail: Some(format!("{message}; requeued")),
                last_error: Some(message),
                ..Change::default()
            };
            transition(conn, &id, JobState::Queued, now_ms, &change)?;
            requeued += 1;
        }
    }
    Ok((requeued, failed))
}

/// The public view of a job.
pub fn view(conn: &Connection, id: &str) -> Result<Option<JobView>> {
    conn.query_row(
        "SELECT id, kind, model, drain_key, state, attempts, last_error, usage, metadata, result,
                created_at, loading_at, working_at, finished_at
         FROM jobs WHERE id = ?1",
        [id],
        |r| {
            let json = |i: usize| -> rusqlite::Result<Option<Value>> {
                Ok(r.get::<_, Option<String>>(i)?
                    .and_then(|s| serde_json::from_str(&s).ok()))
            };
            let time = |i: usize| -> rusqlite::Result<Option<String>> {
                Ok(r.get::<_, Option<i64>>(i)?.map(crate::clock::ms_to_rfc3339))
            };
            Ok(JobView {
                id: r.get(0)?,
                kind: JobKind::parse(&r.get::<_, String>(1)?).unwrap_or(JobKind::Chat),
                model: r.get(2)?,
                drain_key: r.get(3)?,
                state: JobState::parse(&r.get::<_, String>(4)?).unwrap_or(JobState::Failed),
                attempts: r.get(5)?,
                last_error: r.get(6)?,
                usage: json(7)?.and_then(|v| serde_json::from_value(v).ok()),
                metadata: json(8)?,
                result: json(9)?,
                timestamps: Timestamps {
                    created_at: time(10)?.unwrap_or_default(),
                    loading_at: time(11)?,
                    working_at: time(12)?,
                    finished_at: time(13)?,
                },
            })
        },
    )
    .optional()
    .map_err(StoreError::from)
}

/// Filters of `GET /jobs`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    pub model: Option<String>,
    pub since_ms: Option<i64>,
    /// Only jobs older than this `seq` (the cursor).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// Jobs newest first; returns the views and the cursor of the next page.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<(Vec<JobView>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id FROM jobs
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR model = ?2 OR model || ':latest' = ?2)
           AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR seq < ?4)
         ORDER BY seq DESC LIMIT ?5",
    )?;
    let rows: Vec<(i64, String)> = stmt
        .query_map(
            params![
                f.state.map(JobState::as_str),
                f.model,
                f.since_ms,
                f.before_seq,
                i64::from(f.limit) + 1
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<std::result::Result<_, _>>()?;
    let more = rows.len() > f.limit as usize;
    let page = &rows[..rows.len().min(f.limit as usize)];
    let next = if more {
        page.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    let mut views = Vec::with_capacity(page.len());
    for (_, id) in page {
        if let Some(v) = view(conn, id)? {
            views.push(v);
        }
    }
    Ok((views, next))
}

/// Events of a job after event id `after`, oldest first.
pub fn events(conn: &Connection, id: &str, after: i64) -> Result<Vec<JobEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, state, at, attempt, detail FROM job_events WHERE job_id = ?1 AND id > ?2 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![id, after], |r| {
            Ok(JobEvent {
                id: r.get(0)?,
                state: JobState::parse(&r.get::<_, String>(1)?).unwrap_or(JobState::Failed),
                at: crate::clock::ms_to_rfc3339(r.get(2)?),
                attempt: r.get(3)?,
                detail: r.get(4)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn the_state_machine_allows_only_forward_moves_and_retries() {
        let legal = [
            (Queued, Loading),
            (Queued, Canceled),
            (Loading, Working),
            (Loading, Queued),
            (Loading, Failed),
            (Loading, Canceled),
            (Working, Done),
            (Working, Failed),
            (Working, Queued),
            (Working, Canceled),
        ];
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(
                    allowed(from, to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
        for terminal in [Done, Failed, Canceled] {
            assert!(JobState::ALL.iter().all(|to| !allowed(terminal, *to)));
        }
    }

    #[test]
    fn drain_key_includes_only_reload_options_sorted() {
        let r =
            serde_json::json!({"options": {"temperature": 0.2, "num_ctx": 8192, "num_batch": 256}});
        assert_eq!(
            drain_key("llama3.2", &r),
            "llama3.2:latest|num_batch=256,num_ctx=8192"
        );
        assert_eq!(drain_key("qwen3:8b", &serde_json::json!({})), "qwen3:8b");
    }

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrations::apply(&mut c).unwrap();
        c
    }

    fn add(c: &Connection, id: &str, model: &str, at: i64) {
        insert(
            c,
            &NewJob {
                id: id.into(),
                kind: JobKind::Generate,
                model: model.into(),
                request: serde_json::json!({"model": model, "prompt": "x"}),
                webhook: None,
                metadata: None,
                now_ms: at,
            },
        )
        .unwrap();
    }

    #[test]
    fn queue_keys_track_count_and_oldest_through_claims_and_requeues() {
        let c = db();
        add(&c, "a1", "a", 10);
        add(&c, "b1", "b", 20);
        add(&c, "a2", "a", 30);
        let k = keys(&c).unwrap();
        let a = k.iter().find(|k| k.key == "a:latest").unwrap();
        assert_eq!((a.queued, a.oldest_at_ms), (2, 10));
        let job = claim(&c, "a:latest", 40).unwrap().unwrap();
        assert_eq!((job.id.as_str(), job.attempts), ("a1", 1));
        let a = keys(&c)
            .unwrap()
            .into_iter()
            .find(|k| k.key == "a:latest")
            .unwrap();
        assert_eq!((a.queued, a.oldest_at_ms), (1, 30));
        transition(
            &c,
            "a1",
            Queued,
            50,
            &Change {
                refund_attempt: true,
                ..Change::default()
            },
        )
        .unwrap();
        let a = keys(&c)
            .unwrap()
            .into_iter()
            .find(|k| k.key == "a:latest")
            .unwrap();
        assert_eq!(
            (a.queued, a.oldest_at_ms),
            (2, 10),
            "requeued job is the oldest again"
        );
        assert_eq!(load(&c, "a1").unwrap().unwrap().attempts, 0, "refunded");
        claim(&c, "b:latest", 60).unwrap().unwrap();
        assert!(
            keys(&c).unwrap().iter().all(|k| k.key != "b:latest"),
            "empty key removed"
        );
        assert_eq!(queued_total(&c).unwrap(), 2);
    }

    #[test]
    fn illegal_transitions_are_refused_and_change_nothing() {
        let c = db();
        add(&c, "j", "a", 1);
        assert!(transition(&c, "j", Done, 2, &Change::default()).is_err());
        assert_eq!(view(&c, "j").unwrap().unwrap().state, Queued);
        let events: i64 = c
            .query_row("SELECT count(*) FROM job_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 1);
    }

    #[test]
    fn recovery_requeues_or_fails_interrupted_jobs() {
        let c = db();
        add(&c, "x", "a", 1);
        add(&c, "y", "a", 2);
        claim(&c, "a:latest", 3).unwrap();
        transition(&c, "x", Working, 4, &Change::default()).unwrap();
        let (requeued, failed) = recover(&c, 3, 5).unwrap();
        assert_eq!((requeued, failed), (1, 0));
        assert_eq!(view(&c, "x").unwrap().unwrap().state, Queued);
        // Exhausted attempts: failed.
        for t in 0..3 {
            claim(&c, "a:latest", 10 + t).unwrap();
            if t < 2 {
                transition(&c, "x", Queued, 11 + t, &Change::default()).unwrap();
            }
        }
        let (_, failed) = recover(&c, 3, 20).unwrap();
        assert_eq!(failed, 1);
        assert_eq!(view(&c, "x").unwrap().unwrap().state, Failed);
    }
}
