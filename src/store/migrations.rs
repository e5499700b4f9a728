//! Embedded schema migrations.
//!
//! Each migration is a plain `.sql` file in `migrations/`, listed here in order. Applied
//! migrations are never edited: a change to the schema is a new file. All pending migrations run
//! in one transaction, so a failure leaves the database as it was.

use rusqlite::{Connection, OptionalExtension};

use super::{Result, StoreError};

/// One migration: its version, a short name, and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "target_snapshots",
        sql: include_str!("../../migrations/0002_target_snapshots.sql"),
    },
    Migration {
        version: 3,
        name: "jobs",
        sql: include_str!("../../migrations/0003_jobs.sql"),
    },
    Migration {
        version: 4,
        name: "webhooks",
        sql: include_str!("../../migrations/0004_webhooks.sql"),
    },
    Migration {
        version: 5,
        name: "artifacts_idempotency",
        sql: include_str!("../../migrations/0005_artifacts_idempotency.sql"),
    },
    Migration {
        version: 6,
        name: "host_snapshots",
        sql: include_str!("../../migrations/0006_host_snapshots.sql"),
    },
];

/// The schema version this binary brings.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies every migration newer than the database's version, in one transaction.
pub fn apply(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY NOT NULL,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL
        ) STRICT;",
    )?;
    let tx = conn.transaction()?;
    let current = current_version(&tx)?;
    if current > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: latest_version(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql)
            .map_err(|source| StoreError::Migration {
                version: m.version,
                name: m.name,
                source,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, crate::clock::now_rfc3339()],
        )?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit()?;
    Ok(())
}

/// The highest applied migration version (0 for an empty database).
pub fn current_version(conn: &Connection) -> Result<i64> {
    let v: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {} out of order", m.name);
        }
    }

    #[test]
    fn applying_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, MIGRATIONS.len() as i64);
        assert_eq!(current_version(&conn).unwrap(), latest_version());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 'now')",
            [],
        )
        .unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StoreError::SchemaTooNew { found: 999, .. })
        ));
    }
}
