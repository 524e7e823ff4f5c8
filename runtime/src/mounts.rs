//! The container's file system: spec mounts → a mount plan (pure), and the
//! code that carries it out in the container's new mount namespace.
//!
//! Every destination is resolved *inside* the rootfs with `openat2`
//! (`RESOLVE_IN_ROOT`): a symlink in the image pointing at `/etc` lands on
//! `<rootfs>/etc`, never on the host's. The mount is then made on the
//! `/proc/self/fd/N` of that resolved file.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// One mount to make, parsed from a `spec.mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOp {
    /// Destination inside the container (absolute, normalised).
    pub destination: PathBuf,
    /// File system type (`proc`, `tmpfs`, ...); `None` for bind mounts.
    pub fstype: Option<String>,
    /// Source (host path for binds, a name for pseudo file systems).
    pub source: Option<PathBuf>,
    /// Flags for the mount(2) call.
    pub flags: MsFlags,
    /// Propagation to set after mounting (`MS_PRIVATE|MS_REC`, ...).
    pub propagation: MsFlags,
    /// File system specific options (`mode=755,size=65536k`).
    pub data: String,
}

impl MountOp {
    /// A bind mount (MS_BIND set).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// Parses mount options the way mount(8) and runc do: known flag words set or
/// clear flags, propagation words are applied after the mount, anything else
/// is passed to the file system as data.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut prop = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                prop |= propagation_flag(p);
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, prop, data.join(","))
}

fn propagation_flag(word: &str) -> MsFlags {
    let base = match word.trim_start_matches('r') {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_UNBINDABLE,
    };
    // "rprivate" etc.; note "runbindable" trims to "unbindable".
    if word.starts_with('r') {
        base | MsFlags::MS_REC
    } else {
        base
    }
}

/// Normalises a destination: absolute, no `.`/`..` escaping above `/`.
pub fn clean_destination(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The mount plan for `spec.mounts`, in order.
pub fn plan(spec: &Spec) -> Vec<MountOp> {
    spec.mounts().iter().flatten().map(plan_one).collect()
}

fn plan_one(m: &Mount) -> MountOp {
    let (mut flags, propagation, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
    let fstype = m.typ().clone().filter(|t| !t.is_empty() && t != "none");
    if fstype.as_deref() == Some("bind") {
        flags |= MsFlags::MS_BIND;
    }
    let fstype = if flags.contains(MsFlags::MS_BIND) {
        None
    } else {
        fstype
    };
    MountOp {
        destination: clean_destination(m.destination()),
        fstype,
        source: m.source().clone(),
        flags,
        propagation,
        data,
    }
}

/// The propagation of `/` in the container (`linux.rootfsPropagation`,
/// default rslave as runc: host mounts appear, ours never leak out).
pub fn root_propagation(spec: &Spec) -> MsFlags {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .map(|p| propagation_flag(&p) | MsFlags::MS_REC)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC)
}

/// A failed step: what, on which path, why.
pub type StepError = String;

fn step<T>(what: &str, path: &Path, r: Result<T, impl std::fmt::Display>) -> Result<T, StepError> {
    r.map_err(|e| format!("{what} {:?}: {}", path, lower(&e.to_string())))
}

/// Error text in lower case (errno strings start with a capital).
pub(crate) fn lower(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn rel(dest: &Path) -> &Path {
    dest.strip_prefix("/").unwrap_or(dest)
}

/// `openat2` that retries its EAGAIN: with RESOLVE_IN_ROOT a `..` met while
/// any mount or rename happens on the system fails with EAGAIN (the kernel
/// cannot prove the walk stayed inside), and criad mounts all the time. The
/// kernel asks callers to retry; a bounded number of tries keeps a storm of
/// mounts from spinning us forever.
fn openat2_settled(
    dir: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    how: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    const TRIES: usize = 64;
    let mut last = rustix::io::Errno::AGAIN;
    for _ in 0..TRIES {
        match rustix::fs::openat2(dir, path, flags, Mode::empty(), how) {
            Err(rustix::io::Errno::AGAIN) => last = rustix::io::Errno::AGAIN,
            other => return other,
        }
    }
    Err(last)
}

/// Opens `dest` inside `root` (symlinks resolved within it) as an O_PATH fd,
/// creating missing directories, and the last component as a directory or
/// (with `file`) an empty file.
pub fn open_in_root(root: &OwnedFd, dest: &Path, file: bool) -> Result<OwnedFd, StepError> {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let path = rel(dest);
    let open = |p: &Path| {
        openat2_settled(
            root.as_fd(),
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            OFlags::PATH | OFlags::CLOEXEC,
            how,
        )
    };
    if let Ok(fd) = open(path) {
        return Ok(fd);
    }
    // Missing parts: resolve symlinks ourselves (within the root) so the
    // directories we create are where openat2 will look for them.
    let resolved = resolve_in_root(root, path)?;
    let comps: Vec<_> = resolved.components().collect();
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = step("open", dest, open(&prefix))?;
        prefix.push(c);
        if open(&prefix).is_ok() {
            continue;
        }
        let last = i + 1 == comps.len();
        let r = if last && file {
            // O_EXCL: never follows a (dangling) symlink out of the rootfs.
            rustix::fs::openat(
                parent.as_fd(),
                c.as_os_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(parent.as_fd(), c.as_os_str(), Mode::from_raw_mode(0o755))
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return step("create mount point", dest, Err(e)),
        }
    }
    step("open", dest, open(path))
}

/// `path` with every symlink resolved as if `root` were `/` (absolute links
/// restart at the root, `..` never climbs above it); missing parts are kept.
fn resolve_in_root(root: &OwnedFd, path: &Path) -> Result<PathBuf, StepError> {
    let mut queue: std::collections::VecDeque<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            current.pop();
            continue;
        }
        let next = current.join(&c);
        match rustix::fs::readlinkat(root.as_fd(), &next, Vec::new()) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return Err(format!(
                        "resolve {path:?}: too many levels of symbolic links"
                    ));
                }
                let target = PathBuf::from(
                    <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                        target.into_bytes(),
                    ),
                );
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                let mut front: Vec<std::ffi::OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                front.reverse();
                for f in front {
                    queue.push_front(f);
                }
            }
            Err(_) => current = next,
        }
    }
    Ok(current)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Carries out one mount op under `root` (still before pivot_root).
pub fn apply_one(root: &OwnedFd, op: &MountOp) -> Result<(), StepError> {
    let dest = &op.destination;
    let src_is_file = op.is_bind()
        && op
            .source
            .as_ref()
            .is_some_and(|s| std::fs::metadata(s).is_ok_and(|m| !m.is_dir()));
    if op.is_bind() {
        if let Some(s) = &op.source {
            step("stat bind source", s, std::fs::metadata(s))?;
        }
    }
    let target = open_in_root(root, dest, src_is_file)?;
    let tpath = fd_path(&target);
    let data = (!op.data.is_empty()).then_some(op.data.as_str());
    if op.is_bind() {
        let rec = op.flags & MsFlags::MS_REC;
        step(
            "bind mount",
            dest,
            mount(
                op.source.as_deref(),
                &tpath,
                None::<&str>,
                MsFlags::MS_BIND | rec,
                None::<&str>,
            ),
        )?;
        let extra = op.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            // Reopen: the old fd names the covered directory, not the new mount.
            let top = open_in_root(root, dest, src_is_file)?;
            step(
                "remount",
                dest,
                mount(
                    None::<&str>,
                    &fd_path(&top),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                    None::<&str>,
                ),
            )?;
        }
    } else {
        let fstype = op.fstype.as_deref().unwrap_or("none");
        let source = op.source.clone().unwrap_or_else(|| PathBuf::from(fstype));
        step(
            &format!("mount {fstype} on"),
            dest,
            mount(Some(&source), &tpath, Some(fstype), op.flags, data),
        )?;
    }
    if !op.propagation.is_empty() {
        let top = open_in_root(root, dest, src_is_file)?;
        step(
            "set propagation of",
            dest,
            mount(
                None::<&str>,
                &fd_path(&top),
                None::<&str>,
                op.propagation,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// The standard devices every container gets: (name, major, minor).
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Standard `/dev` symlinks: (name, target).
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// Creates the default devices, the spec's devices and the symlinks in the
/// container's `/dev` (a fresh tmpfs). `/dev/console` is bound later, to a
/// pty of the container's own devpts (see `init.rs`).
pub fn populate_dev(root: &OwnedFd, spec: &Spec) -> Result<(), StepError> {
    let dev = open_in_root(root, Path::new("/dev"), false)?;
    let devdir = step(
        "open",
        Path::new("/dev"),
        rustix::fs::openat(
            root.as_fd(),
            Path::new(&fd_path(&dev)),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
    )?;
    let mut devices: Vec<(PathBuf, rustix::fs::FileType, u64, u64, u32, u32, u32)> =
        DEFAULT_DEVICES
            .iter()
            .map(|(n, ma, mi)| {
                (
                    PathBuf::from(n),
                    rustix::fs::FileType::CharacterDevice,
                    *ma,
                    *mi,
                    0o666,
                    0,
                    0,
                )
            })
            .collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
    {
        let p = clean_destination(d.path());
        let Ok(r) = p.strip_prefix("/dev") else {
            return Err(format!("device {:?}: not under /dev", d.path()));
        };
        let ft = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => rustix::fs::FileType::BlockDevice,
            oci_spec::runtime::LinuxDeviceType::P => rustix::fs::FileType::Fifo,
            _ => rustix::fs::FileType::CharacterDevice,
        };
        devices.retain(|x| x.0 != r);
        devices.push((
            r.to_path_buf(),
            ft,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        ));
    }
    for (name, ft, major, minor, mode, uid, gid) in devices {
        let shown = Path::new("/dev").join(&name);
        if let Some(parent) = name.parent().filter(|p| !p.as_os_str().is_empty()) {
            open_in_root(root, &Path::new("/dev").join(parent), false)?;
        }
        match rustix::fs::mknodat(
            devdir.as_fd(),
            &name,
            ft,
            Mode::from_raw_mode(mode & 0o7777),
            rustix::fs::makedev(major as u32, minor as u32),
        ) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return step("mknod", &shown, Err(e)),
        }
        // mknod honours the umask: set the mode the spec asked for.
        step(
            "chmod",
            &shown,
            rustix::fs::chmodat(
                devdir.as_fd(),
                &name,
                Mode::from_raw_mode(mode & 0o7777),
                // We just made this node: not a symlink (and the kernel
                // has no fchmodat NOFOLLOW).
                rustix::fs::AtFlags::empty(),
            ),
        )?;
        if uid != 0 || gid != 0 {
            step(
                "chown",
                &shown,
                rustix::fs::chownat(
                    devdir.as_fd(),
                    &name,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                ),
            )?;
        }
    }
    for (name, target) in DEV_SYMLINKS {
        match rustix::fs::symlinkat(*target, devdir.as_fd(), *name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return step("symlink", &Path::new("/dev").join(name), Err(e)),
        }
    }
    Ok(())
}

/// Binds `rootfs` onto itself, as pivot_root needs its new root to be a
/// mount point. pivot_root also refuses (EINVAL) a new root whose mount or
/// parent mount has shared propagation, which `/` made rshared
/// (`root_prop`) passes on to both. So when shared, a first bind is made
/// private and a second bind goes on top: its parent is the private first,
/// and as a bind of a private mount it is private itself. [`pivot_root`]
/// then gives the new `/` the asked propagation (runc privatises the
/// parent mount instead; this needs no mountinfo lookup).
pub fn bind_rootfs(rootfs: &Path, root_prop: MsFlags) -> Result<(), StepError> {
    let bind = || {
        step(
            "bind rootfs",
            rootfs,
            mount(
                Some(rootfs),
                rootfs,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
        )
    };
    bind()?;
    if root_prop.contains(MsFlags::MS_SHARED) {
        step(
            "make rootfs private",
            rootfs,
            mount(
                None::<&str>,
                rootfs,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            ),
        )?;
        bind()?;
    }
    Ok(())
}

/// Moves the container into `rootfs` with pivot_root and drops the old root;
/// a shared `root_prop` is applied to the new `/` (see [`bind_rootfs`]).
pub fn pivot_root(rootfs: &Path, root_prop: MsFlags) -> Result<(), StepError> {
    let old_root: OwnedFd = std::fs::File::open("/")
        .map_err(|e| format!("open old root: {}", lower(&e.to_string())))?
        .into();
    step("chdir", rootfs, nix::unistd::chdir(rootfs))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; it is
    // then made a slave (no unmount events reach the host) and detached.
    step("pivot_root", rootfs, nix::unistd::pivot_root(".", "."))?;
    // "." is still the new root (a lookup does not descend into mounts
    // stacked on its start): without this, the rslave below would hit the new
    // root's tree and cut bidirectional volumes off from the host's peers.
    step("fchdir", Path::new("/"), nix::unistd::fchdir(&old_root))?;
    drop(old_root);
    step(
        "make old root rslave",
        rootfs,
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    step(
        "unmount old root",
        rootfs,
        umount2(".", MntFlags::MNT_DETACH),
    )?;
    step("chdir", Path::new("/"), nix::unistd::chdir("/"))?;
    if root_prop.contains(MsFlags::MS_SHARED) {
        step(
            "set propagation of",
            Path::new("/"),
            mount(None::<&str>, "/", None::<&str>, root_prop, None::<&str>),
        )?;
    }
    Ok(())
}

/// After pivot_root: hides `masked` paths (/dev/null over files, an empty
/// read-only tmpfs over directories); missing paths are skipped.
pub fn mask_paths(masked: &[String]) -> Result<(), StepError> {
    for p in masked {
        let path = Path::new(p);
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let r = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k"),
            )
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        step("mask", path, r)?;
    }
    Ok(())
}

/// After pivot_root: makes each path (if present) a read-only bind of itself.
pub fn readonly_paths(paths: &[String]) -> Result<(), StepError> {
    for p in paths {
        let path = Path::new(p);
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        remount_readonly(path, MsFlags::MS_REC)?;
    }
    Ok(())
}

/// Bind-mounts `path` on itself (with `extra` flags) and remounts it read-only.
pub fn remount_readonly(path: &Path, extra: MsFlags) -> Result<(), StepError> {
    step(
        "bind",
        path,
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | extra,
            None::<&str>,
        ),
    )?;
    step(
        "remount read-only",
        path,
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
    )
}

/// Remounts `/` read-only (`root.readonly`); keeps nosuid/nodev as they were.
pub fn readonly_root() -> Result<(), StepError> {
    let st = step("statvfs", Path::new("/"), nix::sys::statvfs::statvfs("/"))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(a) {
            flags |= b;
        }
    }
    step(
        "remount / read-only",
        Path::new("/"),
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{MountBuilder, SpecBuilder};

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = [
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "rslave",
            "ro",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (f, p, d) = parse_options(&opts);
        assert_eq!(
            f,
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME | MsFlags::MS_RDONLY
        );
        assert_eq!(p, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(d, "mode=755,size=65536k");
        let (f, _, _) = parse_options(&["ro".into(), "rw".into()]);
        assert!(!f.contains(MsFlags::MS_RDONLY), "later rw clears ro");
        assert_eq!(
            propagation_flag("runbindable"),
            MsFlags::MS_UNBINDABLE | MsFlags::MS_REC
        );
        assert_eq!(propagation_flag("private"), MsFlags::MS_PRIVATE);
    }

    #[test]
    fn plan_binds_and_pseudo_fs() {
        let spec = SpecBuilder::default()
            .mounts(vec![
                MountBuilder::default()
                    .destination("/proc")
                    .typ("proc")
                    .source("proc")
                    .build()
                    .unwrap(),
                MountBuilder::default()
                    .destination("/data/../etc/x")
                    .typ("bind")
                    .source("/srv")
                    .options(vec!["rbind".into(), "ro".into(), "rprivate".into()])
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        let p = plan(&spec);
        assert_eq!(p[0].fstype.as_deref(), Some("proc"));
        assert!(!p[0].is_bind());
        assert_eq!(p[1].destination, PathBuf::from("/etc/x"));
        assert!(p[1].is_bind() && p[1].fstype.is_none());
        assert!(p[1].flags.contains(MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert_eq!(p[1].propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn destinations_never_climb_above_root() {
        assert_eq!(
            clean_destination(Path::new("../../etc")),
            PathBuf::from("/etc")
        );
        assert_eq!(
            clean_destination(Path::new("/a/./b/../c")),
            PathBuf::from("/a/c")
        );
    }

    #[test]
    fn open_in_root_resolves_symlinks_inside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // data -> <outside> absolute symlink: must resolve to <root>/<outside>.
        std::os::unix::fs::symlink(outside.path(), root.path().join("data")).unwrap();
        let rfd: OwnedFd = std::fs::File::open(root.path()).unwrap().into();
        open_in_root(&rfd, Path::new("/data/sub/file"), true).unwrap();
        assert!(!outside.path().join("sub").exists());
        let inside = root
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("sub/file");
        assert!(inside.is_file(), "{inside:?} not created");
    }
}
