//! Helpers shared by the overlay integration tests: fixture stores, layer
//! tars built by GNU tar (independent of our code) or raw headers (hostile
//! archives GNU tar will not write), and a mount guard.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cria_overlay::{Compression, LayerStats, OverlayError, SnapshotStore};
use sha2::{Digest, Sha256};

/// A temp dir holding a snapshot store and a canary dir beside it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: SnapshotStore,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::open(dir.path().join("snapshots")).expect("open store");
        let canary = dir.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("keep"), b"untouched").unwrap();
        Fixture { dir, store }
    }

    /// A directory outside the store that hostile layers aim at.
    pub fn canary(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    /// Applies an uncompressed tar with its correct diff ID.
    pub fn apply(&self, label: &str, tar: &[u8]) -> Result<LayerStats, OverlayError> {
        self.apply_blob(label, tar, Compression::None, tar)
    }

    /// Applies `blob`, compressed with `compression`, expecting the diff ID
    /// of `tar` (what the blob should decompress to).
    pub fn apply_blob(
        &self,
        label: &str,
        blob: &[u8],
        compression: Compression,
        tar: &[u8],
    ) -> Result<LayerStats, OverlayError> {
        self.store
            .apply_layer(&chain_id(label), &mut &blob[..], compression, &diff_id(tar))
    }

    /// The committed `fs` dir of `label`.
    pub fn fs(&self, label: &str) -> PathBuf {
        self.store.fs_path(&chain_id(label)).unwrap()
    }

    /// Asserts the canary holds exactly its one original file.
    pub fn assert_canary_intact(&self) {
        self.assert_canary_intact_beside(&[]);
    }

    /// Like [`Fixture::assert_canary_intact`], allowing the test's own
    /// `extra` entries beside the store.
    pub fn assert_canary_intact_beside(&self, extra: &[&str]) {
        let names: Vec<_> = std::fs::read_dir(self.canary())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["keep"], "something was written into the canary dir");
        assert_eq!(
            std::fs::read(self.canary().join("keep")).unwrap(),
            b"untouched"
        );
        // Nothing may appear beside the store either.
        let mut top: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut expected: Vec<&str> = ["canary", "snapshots"]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        expected.sort();
        top.sort();
        assert_eq!(top, expected, "something was written beside the store");
    }

    /// Asserts the store holds nothing: no committed and no temp dirs.
    pub fn assert_store_empty(&self) {
        let names: Vec<_> = std::fs::read_dir(self.store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "store not empty: {names:?}");
    }
}

/// A chain ID derived from a label.
pub fn chain_id(label: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(label.as_bytes())))
}

/// The diff ID of an uncompressed tar.
pub fn diff_id(tar: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(tar)))
}

/// Archives the contents of `src` with GNU tar (`./`-prefixed names,
/// numeric owners, xattrs), in the given `--format`.
pub fn gnu_tar(src: &Path, format: &str) -> Vec<u8> {
    let mut cmd = Command::new("tar");
    if format == "posix" {
        // GNU tar writes xattrs only into PAX archives.
        cmd.args(["--xattrs", "--xattrs-include=*"]);
    }
    let out = cmd
        .args(["--numeric-owner", "--sort=name"])
        .arg(format!("--format={format}"))
        .arg("-C")
        .arg(src)
        .args(["-cf", "-", "."])
        .output()
        .expect("run GNU tar");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Raw tar writing for hostile archives: names and link names are put in
/// the header bytes as given, bypassing the tar crate's path checks.
pub struct RawTar {
    builder: tar::Builder<Vec<u8>>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn entry(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> RawTar {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        let gnu = header.as_gnu_mut().unwrap();
        assert!(
            name.len() < 100 && link.len() < 100,
            "raw names must fit the header"
        );
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> RawTar {
        self.entry(tar::EntryType::Regular, name, "", data)
    }

    pub fn dir(self, name: &str) -> RawTar {
        self.entry(tar::EntryType::Directory, name, "", b"")
    }

    pub fn symlink(self, name: &str, target: &str) -> RawTar {
        self.entry(tar::EntryType::Symlink, name, target, b"")
    }

    pub fn hardlink(self, name: &str, target: &str) -> RawTar {
        self.entry(tar::EntryType::Link, name, target, b"")
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// A reader that yields `data`, then fails at EOF the way image-store's
/// verifying reader does on a digest mismatch.
pub struct FailAtEnd<'a> {
    pub data: &'a [u8],
}

impl Read for FailAtEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            return Err(std::io::Error::other("blob digest mismatch"));
        }
        let n = self.data.read(buf)?;
        Ok(n)
    }
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = cria_overlay::unmount(&self.0);
    }
}

/// True when `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(needle))
}
