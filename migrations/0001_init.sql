-- Initial schema: a key/value table for daemon metadata (readiness probe, webhook secret, ...).
CREATE TABLE meta (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
