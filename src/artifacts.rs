//! Artifact files: each done job's result in `data_dir/artifacts/<id>.json`, written atomically
//! (temp file, fsync, rename, fsync of the directory) before the job is marked done, so a job that
//! says `done` always has its file. A crash between the rename and the commit leaves an orphan
//! file, which pruning removes.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The file name of a job's artifact. Only UUIDs reach the filesystem (no traversal).
pub fn file_name(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id).ok().map(|u| format!("{u}.json"))
}

pub fn path(dir: &Path, id: &str) -> Option<PathBuf> {
    file_name(id).map(|f| dir.join(f))
}

/// Writes `contents` as the artifact of `id`, durably.
pub fn write(dir: &Path, id: &str, contents: &[u8]) -> std::io::Result<Stored> {
    let file = file_name(id).ok_or_else(|| std::io::Error::other(format!("not a job id: {id}")))?;
    std::fs::create_dir_all(dir)?;
    let target = dir.join(&file);
    let temp = dir.join(format!(".{file}.tmp"));
    {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&temp, &target)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Stored {
        file,
        sha256: hex(&Sha256::digest(contents)),
        bytes: contents.len() as u64,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_become_file_names() {
        assert!(file_name("../../etc/passwd").is_none());
        assert!(file_name("0190b5a4-0000-7000-8000-000000000000").is_some());
    }

    #[test]
    fn write_is_atomic_and_digested() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0190b5a4-0000-7000-8000-000000000001";
        let s = write(dir.path(), id, b"{\"a\":1}").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(&s.file)).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(s.bytes, 7);
        assert_eq!(s.sha256.len(), 64);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
