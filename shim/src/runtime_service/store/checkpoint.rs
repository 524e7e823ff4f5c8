//! Crash-safe file replacement: write a temp file, fsync it, rename it over
//! the old one.
//!
//! The directory is not fsynced after the rename (as containerd's CRI
//! checkpoints do it). A criad crash loses nothing: the rename is done in
//! the kernel. Only a host crash within the few seconds before the
//! filesystem commits the rename can bring back the previous version, or no
//! file for a record written first; either is a whole, readable state, and
//! after a host crash no container of the old boot runs anyway. A directory
//! fsync is a second journal commit per write, which on a busy disk was tens
//! of milliseconds of every CreateContainer and StartContainer
//! (docs/decisions.md, 13).

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `data` so that after a crash the file holds either
/// the old or the new content, never a mix.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let result = (|| {
        let mut file = File::create(tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn fails_when_the_directory_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(write_atomic(&tmp.path().join("nope/x.json"), b"x").is_err());
    }
}
