//! Connection pragmas, set at open time and read back: SQLite silently ignores unknown or
//! misplaced pragmas, so a setting that did not take must stop startup (style-anchors §7.3).

use rusqlite::Connection;

use super::{Result, StoreError};
use crate::config::DatabaseConfig;

/// Pragmas for the single write connection.
pub fn apply_write(conn: &Connection, config: &DatabaseConfig) -> Result<()> {
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    expect("journal_mode", "wal", &mode.to_ascii_lowercase())?;
    apply_common(conn, config)?;
    conn.pragma_update(None, "synchronous", config.synchronous.pragma_value())?;
    let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    expect(
        "synchronous",
        &config.synchronous.pragma_value().to_string(),
        &sync.to_string(),
    )
}

/// Pragmas for read connections.
pub fn apply_read(conn: &Connection, config: &DatabaseConfig) -> Result<()> {
    apply_common(conn, config)
}

fn apply_common(conn: &Connection, config: &DatabaseConfig) -> Result<()> {
    conn.busy_timeout(config.busy_timeout)?;
    let timeout: i64 = conn.pragma_query_value(None, "busy_timeout", |r| r.get(0))?;
    let wanted = i64::try_from(config.busy_timeout.as_millis()).unwrap_or(i64::MAX);
    expect("busy_timeout", &wanted.to_string(), &timeout.to_string())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    expect("foreign_keys", "1", &fk.to_string())
}

fn expect(name: &'static str, wanted: &str, got: &str) -> Result<()> {
    if wanted == got {
        Ok(())
    } else {
        Err(StoreError::Pragma {
            name,
            wanted: wanted.into(),
            got: got.into(),
        })
    }
}
