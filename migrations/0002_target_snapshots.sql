-- History of the target's state: one row per change of up/down or of the loaded-model set.
CREATE TABLE target_snapshots (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('unknown', 'up', 'down')),
    version       TEXT,
    loaded_models TEXT NOT NULL,  -- JSON array of LoadedModel
    error         TEXT
) STRICT;
