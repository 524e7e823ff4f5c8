//! Extraction of a layer's tar entries into a fresh snapshot directory.
//!
//! The `tar` crate only parses; every file is created here through
//! descriptors. Each entry's parent directory is opened with openat2
//! `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`, so neither `..` nor a symlink that
//! the archive planted (`a -> /`, `a -> ../../..`) can redirect a write out of
//! the snapshot root; such an entry fails the whole layer. Symlink *targets*
//! are stored verbatim: they are resolved inside the container later.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use crate::entry_meta::{read_meta, EntryMeta};
use crate::entry_path::{join, whiteout_kind, EntryPath, WhiteoutKind};
use crate::error::{OverlayError, Result};
use crate::layer::LayerStats;

/// How every directory inside the snapshot is resolved: no symlinks at all,
/// never above the root, no /proc magic links, no other mounts.
const RESOLVE: ResolveFlags = ResolveFlags::NO_SYMLINKS
    .union(ResolveFlags::BENEATH)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// The xattr that makes a directory opaque to overlayfs.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Size of the copy buffer for file contents (fewer, larger writes).
const COPY_BUFFER: usize = 256 * 1024;

/// Unpacks entries into one snapshot root.
pub(crate) struct Extractor {
    /// The snapshot root, opened as a directory.
    root: OwnedFd,
    /// The root's path, for error messages only.
    root_path: PathBuf,
    /// The chain ID, for stream errors.
    chain_id: String,
    /// Directory times, applied after all contents (creating an entry in a
    /// directory changes its mtime). Keyed by the joined path; "" is the root.
    dir_times: HashMap<Vec<u8>, Timestamps>,
    /// What was created so far.
    stats: LayerStats,
    /// Reused buffer for file contents.
    buf: Vec<u8>,
}

/// Where metadata is applied: an open descriptor, or a name in a directory
/// for nodes that must not be opened (symlinks, devices, FIFOs, whiteouts).
#[derive(Clone, Copy)]
enum Node<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

impl Extractor {
    /// Opens the (existing, empty) snapshot root `root`.
    pub(crate) fn new(root: &Path, chain_id: &str) -> Result<Self> {
        let fd = rfs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OverlayError::io("opening snapshot root", root, e))?;
        Ok(Extractor {
            root: fd,
            root_path: root.to_owned(),
            chain_id: chain_id.to_owned(),
            dir_times: HashMap::new(),
            stats: LayerStats::default(),
            buf: vec![0; COPY_BUFFER],
        })
    }

    /// Applies every entry of `archive`, stopping at the first error.
    pub(crate) fn extract<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive.entries().map_err(|e| self.stream_error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_error(e))?;
            self.apply_entry(&mut entry)?;
        }
        Ok(())
    }

    /// Sets the deferred directory times and returns what was created.
    pub(crate) fn finish(self) -> Result<LayerStats> {
        for (path, times) in &self.dir_times {
            let opened = if path.is_empty() {
                self.root.try_clone().ok()
            } else {
                rfs::openat2(
                    &self.root,
                    OsStr::from_bytes(path),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    RESOLVE,
                )
                .ok()
            };
            // A directory replaced by a later entry has nothing to stamp.
            let Some(fd) = opened else { continue };
            rfs::futimens(&fd, times)
                .map_err(|e| OverlayError::io("setting times of", self.path_of(path), e))?;
        }
        Ok(self.stats)
    }

    fn stream_error(&self, source: std::io::Error) -> OverlayError {
        OverlayError::Stream {
            chain_id: self.chain_id.clone(),
            source,
        }
    }

    /// The host path of an entry, for error messages.
    fn path_of(&self, joined: &[u8]) -> PathBuf {
        self.root_path.join(OsStr::from_bytes(joined))
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            // Global PAX headers carry nothing a snapshot needs.
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let path = EntryPath::parse(&raw).map_err(|r| OverlayError::bad_entry(&raw, r))?;
        let meta = read_meta(entry).map_err(|r| OverlayError::bad_entry(&raw, r))?;

        let Some(name) = path.file_name() else {
            if kind != EntryType::Directory {
                return Err(OverlayError::bad_entry(
                    &raw,
                    "the layer root must be a directory",
                ));
            }
            let root = self
                .root
                .try_clone()
                .map_err(|e| OverlayError::io("duplicating", &self.root_path, e))?;
            self.set_owner_mode(Node::Fd(root.as_fd()), &meta, &raw)?;
            self.set_xattrs(Node::Fd(root.as_fd()), &meta, &raw)?;
            self.dir_times.insert(Vec::new(), times(&meta));
            return Ok(());
        };
        let name = OsStr::from_bytes(name).to_owned();
        let parent = self.open_dir(path.parent(), &raw, "parent directory", true)?;
        let parent = parent.as_fd();

        match whiteout_kind(name.as_bytes()).map_err(|r| OverlayError::bad_entry(&raw, r))? {
            WhiteoutKind::Meta => Ok(()),
            WhiteoutKind::Opaque => {
                let dir = rfs::openat(
                    parent,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| OverlayError::io("opening", self.path_of(&join(path.parent())), e))?;
                rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(|e| {
                    OverlayError::io("marking opaque", self.path_of(&join(path.parent())), e)
                })
            }
            WhiteoutKind::Remove(target) => {
                let target = OsStr::from_bytes(target);
                self.create(parent, target, &raw, "creating whiteout", || {
                    rfs::mknodat(parent, target, FileType::CharacterDevice, Mode::empty(), 0)
                })?;
                self.stats.inodes += 1;
                // Mode stays 0 (c---------), as overlayfs and other runtimes make them.
                chown_at(parent, target, &meta)
                    .map_err(|e| OverlayError::io("chown", self.path_of(&raw), e))
            }
            WhiteoutKind::None => self.apply_node(entry, kind, &path, &raw, parent, &name, &meta),
        }
    }

    #[allow(clippy::too_many_arguments)] // one call site; the pieces are already split
    fn apply_node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        path: &EntryPath,
        raw: &[u8],
        parent: BorrowedFd<'_>,
        name: &OsStr,
        meta: &EntryMeta,
    ) -> Result<()> {
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(entry, raw, parent, name, meta)
            }
            EntryType::Directory => self.make_dir(path, raw, parent, name, meta),
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| OverlayError::bad_entry(raw, "symlink without a target"))?;
                if target.is_empty() || target.contains(&0) {
                    return Err(OverlayError::bad_entry(
                        raw,
                        "symlink target is empty or has a NUL byte",
                    ));
                }
                let target = OsStr::from_bytes(&target).to_owned();
                self.create(parent, name, raw, "creating symlink", || {
                    rfs::symlinkat(&target, parent, name)
                })?;
                self.stats.inodes += 1;
                self.finish_node(Node::At(parent, name), meta, raw, false)
            }
            EntryType::Link => self.make_hardlink(entry, raw, parent, name),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (file_type, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let header = entry.header();
                        let numbers = header
                            .device_major()
                            .and_then(|major| Ok((major, header.device_minor()?)));
                        let Ok((Some(major), Some(minor))) = numbers else {
                            return Err(OverlayError::bad_entry(
                                raw,
                                "device entry without valid device numbers",
                            ));
                        };
                        let file_type = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (file_type, rfs::makedev(major, minor))
                    }
                };
                self.create(parent, name, raw, "creating device node", || {
                    rfs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)
                })?;
                self.stats.inodes += 1;
                self.finish_node(Node::At(parent, name), meta, raw, true)
            }
            other => Err(OverlayError::bad_entry(
                raw,
                format!("unsupported entry type {:?}", char::from(other.as_byte())),
            )),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        parent: BorrowedFd<'_>,
        name: &OsStr,
        meta: &EntryMeta,
    ) -> Result<()> {
        let fd = self.create(parent, name, raw, "creating file", || {
            rfs::openat(
                parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })?;
        self.stats.inodes += 1;
        let mut file = File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| OverlayError::io("writing", self.path_of(raw), e))?;
            self.stats.bytes += n as u64;
        }
        self.finish_node(Node::Fd(file.as_fd()), meta, raw, true)
    }

    fn make_dir(
        &mut self,
        path: &EntryPath,
        raw: &[u8],
        parent: BorrowedFd<'_>,
        name: &OsStr,
        meta: &EntryMeta,
    ) -> Result<()> {
        let mut replaces_whiteout = false;
        match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => self.stats.inodes += 1,
            Err(Errno::EXIST) => {
                let existing = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| OverlayError::io("stat", self.path_of(raw), e))?;
                let kind = FileType::from_raw_mode(existing.st_mode);
                // An existing directory only gets its metadata updated.
                if kind != FileType::Directory {
                    replaces_whiteout = kind == FileType::CharacterDevice && existing.st_rdev == 0;
                    self.remove_existing(parent, name, raw)?;
                    rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(|e| {
                        OverlayError::io("creating directory", self.path_of(raw), e)
                    })?;
                    self.stats.inodes += 1;
                }
            }
            Err(e) => return Err(OverlayError::io("creating directory", self.path_of(raw), e)),
        }
        let dir = rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OverlayError::io("opening directory", self.path_of(raw), e))?;
        if replaces_whiteout {
            // `.wh.d` then `d/` in one layer: lower layers' `d` is deleted and
            // a new one made, so it must not merge with theirs.
            rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| OverlayError::io("marking opaque", self.path_of(raw), e))?;
        }
        self.set_owner_mode(Node::Fd(dir.as_fd()), meta, raw)?;
        self.set_xattrs(Node::Fd(dir.as_fd()), meta, raw)?;
        self.dir_times.insert(path.joined(), times(meta));
        Ok(())
    }

    fn make_hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
        parent: BorrowedFd<'_>,
        name: &OsStr,
    ) -> Result<()> {
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| OverlayError::bad_entry(raw, "hardlink without a target"))?
            .into_owned();
        let shown = String::from_utf8_lossy(&target_raw).into_owned();
        let target = EntryPath::parse(&target_raw)
            .map_err(|r| OverlayError::bad_entry(raw, format!("hardlink target {shown:?}: {r}")))?;
        let Some(target_name) = target.file_name() else {
            return Err(OverlayError::bad_entry(raw, "hardlink to the layer root"));
        };
        let target_name = OsStr::from_bytes(target_name);
        let target_dir =
            self.open_dir(target.parent(), raw, "hardlink target's directory", false)?;
        // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what
        // it points to; the target's directory was resolved inside the root.
        self.create(parent, name, raw, "creating hardlink", || {
            rfs::linkat(&target_dir, target_name, parent, name, AtFlags::empty())
        })
        .map_err(|e| match e {
            OverlayError::Io { source, .. }
                if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
            {
                OverlayError::bad_entry(
                    raw,
                    format!("hardlink target {shown:?} is not an entry of this layer"),
                )
            }
            OverlayError::Io { source, .. }
                if source.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
            {
                OverlayError::bad_entry(raw, format!("hardlink target {shown:?} is a directory"))
            }
            other => other,
        })
    }

    /// Opens the directory `components` below the root, creating missing
    /// ones (0755, root-owned, as tar does) when `create` is set. Refuses
    /// symlinks anywhere on the way.
    fn open_dir(
        &mut self,
        components: &[Vec<u8>],
        raw: &[u8],
        role: &str,
        create: bool,
    ) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if components.is_empty() {
            return self
                .root
                .try_clone()
                .map_err(|e| OverlayError::io("duplicating", &self.root_path, e));
        }
        let joined = join(components);
        match rfs::openat2(
            &self.root,
            OsStr::from_bytes(&joined),
            flags,
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(self.resolve_error(e, raw, role, &joined)),
        }
        // Slow path: walk component by component, creating what is missing.
        let mut current = self
            .root
            .try_clone()
            .map_err(|e| OverlayError::io("duplicating", &self.root_path, e))?;
        for (depth, component) in components.iter().enumerate() {
            let component = OsStr::from_bytes(component);
            let walked = join(&components[..=depth]);
            let next = match rfs::openat2(&current, component, flags, Mode::empty(), RESOLVE) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&current, component, Mode::from_raw_mode(0o755)) {
                        Ok(()) => self.stats.inodes += 1,
                        Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(OverlayError::io(
                                "creating directory",
                                self.path_of(&walked),
                                e,
                            ))
                        }
                    }
                    // The umask may have narrowed the mode.
                    rfs::chmodat(
                        &current,
                        component,
                        Mode::from_raw_mode(0o755),
                        AtFlags::empty(),
                    )
                    .map_err(|e| OverlayError::io("chmod", self.path_of(&walked), e))?;
                    rfs::openat2(&current, component, flags, Mode::empty(), RESOLVE)
                        .map_err(|e| self.resolve_error(e, raw, role, &walked))?
                }
                Err(e) => return Err(self.resolve_error(e, raw, role, &walked)),
            };
            current = next;
        }
        Ok(current)
    }

    fn resolve_error(&self, errno: Errno, raw: &[u8], role: &str, joined: &[u8]) -> OverlayError {
        let shown = String::from_utf8_lossy(joined);
        match errno {
            Errno::LOOP => {
                OverlayError::bad_entry(raw, format!("{role} {shown:?} goes through a symlink"))
            }
            Errno::NOTDIR => {
                OverlayError::bad_entry(raw, format!("{role} {shown:?} is not a directory"))
            }
            Errno::XDEV => {
                OverlayError::bad_entry(raw, format!("{role} {shown:?} leaves the layer root"))
            }
            Errno::NOENT => OverlayError::bad_entry(
                raw,
                format!("{role} {shown:?} does not exist in this layer"),
            ),
            other => OverlayError::io("resolving", self.path_of(joined), other),
        }
    }

    /// Runs `op` to create `name`; if something of that name exists (an
    /// earlier entry of the same archive), removes it and runs `op` again.
    fn create<T>(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        raw: &[u8],
        what: &'static str,
        mut op: impl FnMut() -> rustix::io::Result<T>,
    ) -> Result<T> {
        match op() {
            Err(Errno::EXIST) => {
                self.remove_existing(parent, name, raw)?;
                op().map_err(|e| OverlayError::io(what, self.path_of(raw), e))
            }
            other => other.map_err(|e| OverlayError::io(what, self.path_of(raw), e)),
        }
    }

    /// Removes `name` in `parent`, recursively for a directory.
    fn remove_existing(&self, parent: BorrowedFd<'_>, name: &OsStr, raw: &[u8]) -> Result<()> {
        let existing = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| OverlayError::io("stat", self.path_of(raw), e))?;
        if FileType::from_raw_mode(existing.st_mode) == FileType::Directory {
            // std's remove_dir_all opens each level with O_NOFOLLOW relative to
            // its parent; the /proc path pins the already-resolved parent.
            let path = proc_fd_path(parent, name);
            std::fs::remove_dir_all(&path)
                .map_err(|e| OverlayError::io("removing", self.path_of(raw), e))
        } else {
            rfs::unlinkat(parent, name, AtFlags::empty())
                .map_err(|e| OverlayError::io("removing", self.path_of(raw), e))
        }
    }

    /// Owner, mode (unless a symlink), xattrs and times, in that order:
    /// chown clears setuid bits and security.capability.
    fn finish_node(
        &self,
        node: Node<'_>,
        meta: &EntryMeta,
        raw: &[u8],
        has_mode: bool,
    ) -> Result<()> {
        if has_mode {
            self.set_owner_mode(node, meta, raw)?;
        } else if let Node::At(dir, name) = node {
            chown_at(dir, name, meta)
                .map_err(|e| OverlayError::io("chown", self.path_of(raw), e))?;
        }
        self.set_xattrs(node, meta, raw)?;
        let stamp = times(meta);
        match node {
            Node::Fd(fd) => rfs::futimens(fd, &stamp),
            Node::At(dir, name) => rfs::utimensat(dir, name, &stamp, AtFlags::SYMLINK_NOFOLLOW),
        }
        .map_err(|e| OverlayError::io("setting times of", self.path_of(raw), e))
    }

    fn set_owner_mode(&self, node: Node<'_>, meta: &EntryMeta, raw: &[u8]) -> Result<()> {
        let mode = Mode::from_raw_mode(meta.mode);
        match node {
            Node::Fd(fd) => {
                rfs::fchown(fd, Some(uid(meta)), Some(gid(meta)))
                    .map_err(|e| OverlayError::io("chown", self.path_of(raw), e))?;
                rfs::fchmod(fd, mode)
            }
            Node::At(dir, name) => {
                chown_at(dir, name, meta)
                    .map_err(|e| OverlayError::io("chown", self.path_of(raw), e))?;
                // Never a symlink here: the node was just created as a device or FIFO.
                rfs::chmodat(dir, name, mode, AtFlags::empty())
            }
        }
        .map_err(|e| OverlayError::io("chmod", self.path_of(raw), e))
    }

    fn set_xattrs(&self, node: Node<'_>, meta: &EntryMeta, raw: &[u8]) -> Result<()> {
        for (key, value) in &meta.xattrs {
            let key_os = OsStr::from_bytes(key);
            let result = match node {
                Node::Fd(fd) => rfs::fsetxattr(fd, key_os, value, XattrFlags::empty()),
                Node::At(dir, name) => {
                    rfs::lsetxattr(proc_fd_path(dir, name), key_os, value, XattrFlags::empty())
                }
            };
            match result {
                Ok(()) => {}
                // The backing filesystem or the node type cannot hold this
                // attribute (e.g. user.* on a symlink): as tar does, go on.
                Err(e @ (Errno::NOTSUP | Errno::PERM))
                    if matches!(node, Node::At(..)) || e == Errno::NOTSUP =>
                {
                    tracing::warn!(
                        entry = %String::from_utf8_lossy(raw),
                        xattr = %key_os.to_string_lossy(),
                        error = %e,
                        "xattr not applied"
                    );
                }
                Err(e) => return Err(OverlayError::io("setting xattr on", self.path_of(raw), e)),
            }
        }
        Ok(())
    }
}

fn uid(meta: &EntryMeta) -> Uid {
    Uid::from_raw(meta.uid)
}

fn gid(meta: &EntryMeta) -> Gid {
    Gid::from_raw(meta.gid)
}

fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, meta: &EntryMeta) -> rustix::io::Result<()> {
    rfs::chownat(
        dir,
        name,
        Some(uid(meta)),
        Some(gid(meta)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

fn times(meta: &EntryMeta) -> Timestamps {
    Timestamps {
        last_access: meta.atime,
        last_modification: meta.mtime,
    }
}

/// `/proc/self/fd/<dir>/<name>`: reaches `name` inside an already-resolved
/// directory for calls that take only a path (lsetxattr, remove_dir_all).
fn proc_fd_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}
