//! A file tree as a comparable value: every entry's type, permissions,
//! ownership, content hash, link target, device number and (for regular files)
//! mtime, plus which paths are hardlinks of each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// One entry of a tree, in the terms a layer defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `dir`, `file`, `symlink`, `fifo`, `char`, `block`, `socket`.
    pub kind: &'static str,
    /// Permission bits incl. setuid/setgid/sticky (not for symlinks).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// sha256 of a regular file's content, a symlink's target, or a device's rdev.
    pub detail: String,
    /// mtime of regular files (seconds); 0 for others, whose mtimes unpackers may touch.
    pub mtime: i64,
}

/// A tree: relative path → entry, and the sets of paths sharing an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Every path below the root.
    pub entries: BTreeMap<String, Entry>,
    /// Groups (size ≥ 2) of regular-file paths that are one inode.
    pub hardlinks: BTreeSet<BTreeSet<String>>,
}

impl Tree {
    /// Reads the tree under `root` (symlinks are not followed).
    pub fn read(root: &Path) -> Result<Tree> {
        let mut entries = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), BTreeSet<String>> = HashMap::new();
        let mut stack = vec![root.to_path_buf()];
        // Bounded by the size of the tree; each dir is visited once.
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let e = e?;
                let path = e.path();
                let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
                let md = fs::symlink_metadata(&path)?;
                let ft = md.file_type();
                let (kind, detail) = if ft.is_dir() {
                    stack.push(path.clone());
                    ("dir", String::new())
                } else if ft.is_symlink() {
                    (
                        "symlink",
                        fs::read_link(&path)?.to_string_lossy().into_owned(),
                    )
                } else if ft.is_file() {
                    inodes
                        .entry((md.dev(), md.ino()))
                        .or_default()
                        .insert(rel.clone());
                    ("file", hex::encode(Sha256::digest(fs::read(&path)?)))
                } else if ft.is_fifo() {
                    ("fifo", String::new())
                } else if ft.is_char_device() {
                    ("char", format!("{:x}", md.rdev()))
                } else if ft.is_block_device() {
                    ("block", format!("{:x}", md.rdev()))
                } else {
                    ("socket", String::new())
                };
                let mode = if kind == "symlink" {
                    0
                } else {
                    md.mode() & 0o7777
                };
                let mtime = if kind == "file" { md.mtime() } else { 0 };
                entries.insert(
                    rel,
                    Entry {
                        kind,
                        mode,
                        uid: md.uid(),
                        gid: md.gid(),
                        detail,
                        mtime,
                    },
                );
            }
        }
        let hardlinks = inodes.into_values().filter(|s| s.len() > 1).collect();
        Ok(Tree { entries, hardlinks })
    }

    /// A readable list of differences to `other` (empty when equal).
    pub fn diff(&self, other: &Tree) -> String {
        let mut out = String::new();
        for (p, e) in &self.entries {
            match other.entries.get(p) {
                None => writeln!(out, "only in expected: {p} {e:?}").unwrap_or(()),
                Some(o) if o != e => {
                    writeln!(out, "differs: {p}\n  expected {e:?}\n  actual   {o:?}").unwrap_or(())
                }
                _ => {}
            }
        }
        for (p, e) in &other.entries {
            if !self.entries.contains_key(p) {
                writeln!(out, "only in actual: {p} {e:?}").unwrap_or(());
            }
        }
        if self.hardlinks != other.hardlinks {
            writeln!(
                out,
                "hardlinks differ:\n  expected {:?}\n  actual   {:?}",
                self.hardlinks, other.hardlinks
            )
            .unwrap_or(());
        }
        out
    }
}
