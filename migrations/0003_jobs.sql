-- Durable jobs. `seq` (the rowid) is arrival order; `id` is the public UUIDv7.
CREATE TABLE jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('chat', 'generate', 'embed')),
    model       TEXT NOT NULL,
    drain_key   TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'loading', 'working', 'done', 'failed', 'canceled')),
    request     TEXT NOT NULL,      -- the Ollama body, verbatim
    webhook     TEXT,               -- JSON
    metadata    TEXT,               -- JSON
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    result      TEXT,               -- assembled Ollama response (JSON)
    usage       TEXT,               -- JSON
    created_at  INTEGER NOT NULL,   -- ms since epoch
    loading_at  INTEGER,
    working_at  INTEGER,
    finished_at INTEGER,
    not_before  INTEGER NOT NULL DEFAULT 0  -- retry backoff: not eligible before this (ms)
) STRICT;

-- Next job of a key, FIFO: an index seek, whatever the queue depth.
CREATE INDEX jobs_queued_by_key ON jobs (drain_key, seq) WHERE state = 'queued';
CREATE INDEX jobs_state ON jobs (state);

-- One row per drain key with queued jobs, maintained with every change of a job's queued-ness,
-- so choosing the next key never scans the jobs table.
CREATE TABLE queue_keys (
    drain_key   TEXT PRIMARY KEY NOT NULL,
    model       TEXT NOT NULL,
    queued      INTEGER NOT NULL,
    oldest_seq  INTEGER NOT NULL,
    oldest_at   INTEGER NOT NULL    -- created_at of the oldest queued job (ms)
) STRICT;

-- Every state change, appended in the same transaction as the change.
CREATE TABLE job_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    state   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    detail  TEXT
) STRICT;
CREATE INDEX job_events_by_job ON job_events (job_id, id);
