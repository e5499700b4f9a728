-- Artifacts: the stored result file of a done job, with the digest used as its ETag.
ALTER TABLE jobs ADD COLUMN artifact TEXT;
ALTER TABLE jobs ADD COLUMN artifact_sha256 TEXT;
ALTER TABLE jobs ADD COLUMN artifact_bytes INTEGER;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Idempotency keys of POST /jobs (IETF draft): same key + same body replays the job.
CREATE TABLE idempotency_keys (
    key        TEXT PRIMARY KEY NOT NULL,
    body_hash  TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
