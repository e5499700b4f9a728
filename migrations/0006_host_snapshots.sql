-- Host readings (host_metrics.enabled), one per collection, bounded by host_metrics.history_limit.
CREATE TABLE host_snapshots (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    snapshot TEXT NOT NULL  -- JSON HostStatus
) STRICT;
CREATE INDEX host_snapshots_at ON host_snapshots (at_ms);

-- Target snapshots get a sortable time for /status/history?since=.
ALTER TABLE target_snapshots ADD COLUMN at_ms INTEGER;
UPDATE target_snapshots SET at_ms = CAST(unixepoch(at, 'subsec') * 1000 AS INTEGER);
CREATE INDEX target_snapshots_at ON target_snapshots (at_ms);
