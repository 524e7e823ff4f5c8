//! Crash-safe file replacement: write a temp file, fsync, rename, fsync dir.

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
    result?;
    // The rename is durable only once the directory entry is.
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
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
