//! `foreman backup PATH`: a consistent online copy of the database (SQLite's online backup API,
//! safe while the daemon serves) plus the artifact files, into a new directory laid out like a
//! data dir, so restoring is copying it back (docs/deploy.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::config::Config;

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, BackupError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What was copied.
#[derive(Debug)]
pub struct Report {
    pub database: PathBuf,
    pub artifacts: usize,
}

/// Copies the database and artifacts of `config.data_dir` into `dest` (which must not exist or
/// be empty).
pub fn backup(config: &Config, dest: &Path) -> Result<Report> {
    if dest.exists() && std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Err(BackupError::Invalid(format!(
            "{} exists and is not empty",
            dest.display()
        )));
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let source = Connection::open_with_flags(config.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(config.database.busy_timeout)?;
    let database = dest.join("foreman.db");
    let mut target = Connection::open(&database)?;
    {
        let copy = rusqlite::backup::Backup::new(&source, &mut target)?;
        // Small steps let the daemon keep writing while the copy runs.
        copy.run_to_completion(256, Duration::from_millis(5), None)?;
    }
    let ok: String = target.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(BackupError::Invalid(format!(
            "integrity check of the copy failed: {ok}"
        )));
    }
    target.execute_batch("PRAGMA journal_mode = DELETE")?;
    let artifacts = copy_dir(&config.artifacts_dir(), &dest.join("artifacts"))?;
    Ok(Report {
        database,
        artifacts,
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(io(from))?;
        let name = entry.file_name();
        let is_file = entry.file_type().map_err(io(from))?.is_file();
        if is_file && !name.to_string_lossy().starts_with('.') {
            std::fs::copy(entry.path(), to.join(&name)).map_err(io(to))?;
            n += 1;
        }
    }
    Ok(n)
}
