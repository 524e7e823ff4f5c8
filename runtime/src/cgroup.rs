//! cgroups v1 and v2 through plain cgroupfs writes.
//!
//! Decision (see docs/decisions.md, "runtime: cgroupfs writes"): cgroups-rs
//! 0.5 would pull zbus and a second nix into the monitor, whose RSS we want
//! under 1 MiB, and it hides the hybrid layout of hosts like ours (v1
//! controllers plus hugetlb alone on the cgroup2 mount). What a container
//! runtime writes is a short, well-defined list of files, so we translate
//! `LinuxResources` into `(hierarchy, file, value)` writes ourselves: pure
//! functions that unit tests check for v1 *and* v2, applied under a root
//! directory that tests replace with a temp dir.

use crate::RuntimeError;
use oci_spec::runtime::LinuxResources;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default cgroupfs mount point.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Usage read from a container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory usage in bytes (including page cache).
    pub memory_usage_bytes: u64,
    /// Working set: usage minus inactive file pages.
    pub memory_working_set_bytes: u64,
    /// Anonymous resident memory in bytes.
    pub memory_rss_bytes: u64,
    /// Number of OOM kills recorded for the cgroup.
    pub oom_kills: u64,
    /// Number of tasks in the cgroup.
    pub pids_current: u64,
}

/// One container's (or pod's) cgroup, whatever the cgroup version.
pub trait Cgroup {
    /// Creates the cgroup directories (and missing parents) in every hierarchy.
    fn create(&self) -> Result<(), RuntimeError>;
    /// Writes `resources` to the cgroup's files.
    fn apply(&self, resources: &LinuxResources) -> Result<(), RuntimeError>;
    /// The cgroup2 directory (the v2 cgroup, or the unified one of a hybrid
    /// host) that a new process can be cloned straight into with clone3's
    /// `CLONE_INTO_CGROUP`, so that it never has to move there.
    fn clone_into_dir(&self) -> Option<&Path>;
    /// Moves the calling process, which must be single-threaded, into the
    /// cgroup in every hierarchy; `born_in_v2`: it was cloned into
    /// [`Cgroup::clone_into_dir`] already. On v1 the process moves itself
    /// through `tasks`: the kernel skips its global threadgroup lock for a
    /// thread moving itself, whose write side waits for an RCU grace period
    /// (6–20 ms here, the biggest single cost of a container start through
    /// `cgroup.procs`). For a single-threaded process the result is the same.
    fn join_self(&self, born_in_v2: bool) -> Result<(), RuntimeError>;
    /// Pids of every process in the cgroup.
    fn procs(&self) -> Result<Vec<i32>, RuntimeError>;
    /// Usage counters; missing files count as zero.
    fn stats(&self) -> CgroupStats;
    /// Removes the cgroup directories (retrying briefly while tasks die).
    fn remove(&self) -> Result<(), RuntimeError>;
}

/// One file write: `dir` selects the hierarchy (a v1 controller name, or
/// `""` for the v2/unified directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write1 {
    /// v1 controller whose hierarchy holds the file; `""` for v2/unified.
    pub controller: &'static str,
    /// File name inside the cgroup directory.
    pub file: String,
    /// Value to write.
    pub value: String,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl Into<String>) -> Write1 {
    Write1 {
        controller,
        file: file.into(),
        value: value.into(),
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The v1 writes for `r` (hugetlb is returned with controller `"hugetlb"`).
pub fn v1_writes(r: &LinuxResources) -> Result<Vec<Write1>, RuntimeError> {
    let mut out = Vec::new();
    if let Some(cpu) = r.cpu() {
        if let Some(s) = cpu.shares() {
            out.push(w("cpu", "cpu.shares", s.to_string()));
        }
        // The period first: the kernel checks quota against the current period.
        if let Some(p) = cpu.period() {
            out.push(w("cpu", "cpu.cfs_period_us", p.to_string()));
        }
        if let Some(q) = cpu.quota() {
            out.push(w(
                "cpu",
                "cpu.cfs_quota_us",
                if q <= 0 { -1 } else { q }.to_string(),
            ));
        }
        if let Some(c) = cpu.cpus() {
            out.push(w("cpuset", "cpuset.cpus", c.clone()));
        }
        if let Some(m) = cpu.mems() {
            out.push(w("cpuset", "cpuset.mems", m.clone()));
        }
    }
    if let Some(mem) = r.memory() {
        if let Some(l) = mem.limit() {
            out.push(w("memory", "memory.limit_in_bytes", l.to_string()));
        }
        if let Some(s) = mem.swap() {
            out.push(w("memory", "memory.memsw.limit_in_bytes", s.to_string()));
        }
        if let Some(res) = mem.reservation() {
            out.push(w("memory", "memory.soft_limit_in_bytes", res.to_string()));
        }
        if let Some(sw) = mem.swappiness() {
            if sw > 100 {
                return Err(invalid("linux.resources.memory.swappiness", "above 100"));
            }
            out.push(w("memory", "memory.swappiness", sw.to_string()));
        }
        if mem.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", "1"));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", pids_value(p.limit())));
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(
            "hugetlb",
            format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit().to_string(),
        ));
    }
    for d in r.devices().iter().flatten() {
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push(w("devices", file, d.to_string()));
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        // The devices every container gets (runc's allow list): without
        // them a "deny all" spec could not even create /dev/null.
        for rule in DEFAULT_DEVICE_RULES {
            out.push(w("devices", "devices.allow", *rule));
        }
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(invalid(
            "linux.resources.unified",
            "needs cgroup v2, this host runs cgroup v1",
        ));
    }
    Ok(out)
}

/// Device cgroup rules always allowed: mknod of any node, and use of the
/// standard devices (null, zero, full, random, urandom, tty, console, ptmx, pts).
pub const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

fn pids_value(limit: i64) -> String {
    if limit <= 0 {
        "max".into()
    } else {
        limit.to_string()
    }
}

/// cgroup v1 `cpu.shares` (2..262144) → v2 `cpu.weight` (1..10000), the
/// conversion runc, crun and the kubelet agree on.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// The v2 writes for `r`. Device rules are not files on v2: `V2Cgroup::apply`
/// attaches an eBPF program built by `devices_bpf` instead.
pub fn v2_writes(r: &LinuxResources) -> Result<Vec<Write1>, RuntimeError> {
    let mut out = Vec::new();
    if let Some(cpu) = r.cpu() {
        if let Some(s) = cpu.shares() {
            if s != 0 {
                out.push(w("", "cpu.weight", shares_to_weight(s).to_string()));
            }
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            let period = cpu.period().unwrap_or(100_000);
            let quota = match cpu.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            out.push(w("", "cpu.max", format!("{quota} {period}")));
        }
        if let Some(c) = cpu.cpus() {
            out.push(w("", "cpuset.cpus", c.clone()));
        }
        if let Some(m) = cpu.mems() {
            out.push(w("", "cpuset.mems", m.clone()));
        }
    }
    if let Some(mem) = r.memory() {
        let limit = mem.limit();
        if let Some(l) = limit {
            out.push(w("", "memory.max", max_or(l)));
        }
        // OCI swap is memory+swap; v2 limits swap alone.
        if let Some(s) = mem.swap() {
            let v = match (s, limit) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l > 0 => {
                    if s < l {
                        return Err(invalid(
                            "linux.resources.memory.swap",
                            "memory+swap below the memory limit",
                        ));
                    }
                    (s - l).to_string()
                }
                _ => {
                    return Err(invalid(
                        "linux.resources.memory.swap",
                        "needs a memory limit on cgroup v2",
                    ))
                }
            };
            out.push(w("", "memory.swap.max", v));
        }
        if let Some(res) = mem.reservation() {
            out.push(w("", "memory.low", max_or(res)));
        }
        if mem.disable_oom_killer() == Some(true) {
            return Err(invalid(
                "linux.resources.memory.disableOOMKiller",
                "not supported on cgroup v2",
            ));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("", "pids.max", pids_value(p.limit())));
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(
            "",
            format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
        ));
    }
    for (k, v) in r.unified().iter().flatten() {
        if k.contains('/') || k.starts_with('.') || !k.contains('.') {
            return Err(invalid(
                &format!("linux.resources.unified[{k}]"),
                "not a cgroup file name",
            ));
        }
        out.push(w("", k.clone(), v.clone()));
    }
    Ok(out)
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// Reads a whole small file; `None` if it is missing or unreadable.
fn read_opt(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

/// Value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`, ...).
pub fn keyed_value(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

fn read_u64(p: &Path) -> u64 {
    read_opt(p).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn write_file(p: &Path, value: &str) -> Result<(), RuntimeError> {
    // cgroupfs files take one value per write(2): no truncation, no buffering.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .map_err(|e| RuntimeError::io("open", p, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| RuntimeError::io("write", p, e))
}

/// Moves the calling process into the cgroup2 directory open as `dir`
/// (through its `cgroup.procs`), for a caller whose view of the host's
/// paths is gone (after setns into a container's mount namespace).
pub fn join_cgroup2_at(dir: &fs::File) -> Result<(), RuntimeError> {
    use rustix::fs::{Mode, OFlags};
    let procs = rustix::fs::openat(
        dir,
        "cgroup.procs",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::io("open", "cgroup.procs", e.into()))?;
    fs::File::from(procs)
        .write_all(b"0")
        .map_err(|e| RuntimeError::io("write", "cgroup.procs", e))
}

/// `clone3` flag: start the child in the cgroup2 directory given by fd.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` (clone3(2), version 2: 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks (no new stack) with the namespace flags `flags`, the child born in
/// the cgroup2 directory open as `cgroup2` (clone3 `CLONE_INTO_CGROUP`;
/// `O_RDONLY`, not `O_PATH`: the kernel takes it with fdget()), so it never
/// has to move there (decision 14). Falls back to clone(2) where clone3 or
/// the flag is refused (ENOSYS, E2BIG: an old kernel; EINVAL, EOPNOTSUPP,
/// EBUSY: a cgroup that takes no processes); ENOMEM, EAGAIN (`pids.max`) and
/// EPERM are reported, as a plain clone would fail too or slip past the
/// limit. Returns clone's result (0 in the child) and whether the child was
/// born in `cgroup2`; the child then still joins any v1 hierarchy itself
/// ([`Cgroup::join_self`]).
///
/// # Safety
/// The caller must be single-threaded: the child runs ordinary code until
/// it execs or exits.
pub unsafe fn clone_into_cgroup(
    flags: u64,
    cgroup2: Option<&fs::File>,
) -> std::io::Result<(i64, bool)> {
    use std::os::fd::AsRawFd;
    let sigchld = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup2 {
        let args = CloneArgs {
            flags: flags | CLONE_INTO_CGROUP,
            exit_signal: sigchld,
            cgroup: fd.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 without a new stack behaves like fork (the caller
        // is single-threaded); `args` outlives the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if ret >= 0 {
            return Ok((ret, true));
        }
        let e = std::io::Error::last_os_error();
        if matches!(
            e.raw_os_error(),
            Some(libc::ENOMEM | libc::EAGAIN | libc::EPERM)
        ) {
            return Err(e);
        }
    }
    // SAFETY: as above, with the classic clone(2).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | sigchld,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((ret, false))
}

fn parse_pids(s: &str) -> Vec<i32> {
    s.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Joins `rel` (a cgroupsPath, `/`-separated) under `base`, refusing `..`.
fn join_rel(base: &Path, rel: &str) -> Result<PathBuf, RuntimeError> {
    let mut p = base.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(invalid("linux.cgroupsPath", "contains `..`"));
        }
        p.push(c);
    }
    Ok(p)
}

fn rmdir_retry(dir: &Path) -> Result<(), RuntimeError> {
    // Tasks that were just killed leave the cgroup asynchronously: EBUSY
    // for a few milliseconds is normal. Bounded: 200 × 5 ms.
    for _ in 0..200 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(RuntimeError::io("rmdir", dir, e)),
        }
    }
    Err(RuntimeError::io(
        "rmdir",
        dir,
        std::io::Error::from_raw_os_error(libc::EBUSY),
    ))
}

/// The hierarchies found under a cgroupfs root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Unified hierarchy mounted at the root.
    V2,
    /// v1 controllers: (controller names, directory under root); plus the
    /// cgroup2 mount of a hybrid host and the controllers it offers.
    V1 {
        /// (controllers of the hierarchy, its mount dir).
        hierarchies: Vec<(Vec<String>, PathBuf)>,
        /// `<root>/unified` and its controllers, on hybrid hosts.
        unified: Option<(PathBuf, Vec<String>)>,
    },
}

/// Detects the layout under `root` (`/sys/fs/cgroup`, or a test's temp dir):
/// `cgroup.controllers` at the root means v2; otherwise each sub-directory is
/// a v1 hierarchy named by its controllers (`cpu,cpuacct`), `unified` being
/// the hybrid cgroup2 mount.
pub fn detect(root: &Path) -> Result<Layout, RuntimeError> {
    if root.join("cgroup.controllers").exists() {
        return Ok(Layout::V2);
    }
    let mut hierarchies = Vec::new();
    let mut unified = None;
    let mut seen = Vec::new();
    let entries = fs::read_dir(root).map_err(|e| RuntimeError::io("read dir", root, e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        // The entry type comes with the directory listing: only symlinks
        // (cpu -> cpu,cpuacct) need a stat and a resolution, the rest of
        // the ~12 entries none (this runs at every create, exec and delete).
        let Ok(kind) = e.file_type() else { continue };
        let link = kind.is_symlink();
        if !(kind.is_dir() || link && path.is_dir()) {
            continue;
        }
        if name == "unified" {
            let ctrls = read_opt(&path.join("cgroup.controllers")).unwrap_or_default();
            unified = Some((path, ctrls.split_whitespace().map(str::to_string).collect()));
            continue;
        }
        if name.starts_with("name=") || name == "systemd" {
            continue;
        }
        // cpu -> cpu,cpuacct symlinks: one hierarchy, counted once.
        // A relative link target names a sibling; `join` keeps an absolute one.
        let canon = if link {
            fs::read_link(&path).map_or_else(|_| path.clone(), |t| root.join(t))
        } else {
            path.clone()
        };
        if seen.contains(&canon) {
            continue;
        }
        let cname = canon
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(name);
        seen.push(canon);
        hierarchies.push((cname.split(',').map(str::to_string).collect(), path));
    }
    hierarchies.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(Layout::V1 {
        hierarchies,
        unified,
    })
}

/// The cgroup of `path` (a `linux.cgroupsPath`) under `root`.
pub fn open(root: &Path, path: &str) -> Result<Box<dyn Cgroup>, RuntimeError> {
    match detect(root)? {
        Layout::V2 => Ok(Box::new(V2Cgroup {
            root: root.to_path_buf(),
            dir: join_rel(root, path)?,
        })),
        Layout::V1 {
            hierarchies,
            unified,
        } => {
            let dirs = hierarchies
                .into_iter()
                .map(|(c, base)| Ok((c, join_rel(&base, path)?, base)))
                .collect::<Result<Vec<_>, RuntimeError>>()?;
            let unified = match unified {
                Some((base, ctrls)) if !ctrls.is_empty() => {
                    Some((join_rel(&base, path)?, base, ctrls))
                }
                _ => None,
            };
            Ok(Box::new(V1Cgroup { dirs, unified }))
        }
    }
}

/// cgroup v1, with the hybrid cgroup2 mount for controllers v1 lacks.
struct V1Cgroup {
    /// (controllers, cgroup dir, hierarchy root)
    dirs: Vec<(Vec<String>, PathBuf, PathBuf)>,
    /// (cgroup dir, mount root, controllers) on the hybrid cgroup2 mount.
    unified: Option<(PathBuf, PathBuf, Vec<String>)>,
}

impl V1Cgroup {
    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _, _)| c.iter().any(|x| x == controller))
            .map(|(_, d, _)| d.as_path())
    }

    /// The cgroup2 dir when it offers `controller` and v1 does not.
    fn unified_for(&self, controller: &str) -> Option<&Path> {
        if self.dir_of(controller).is_some() {
            return None;
        }
        self.unified
            .as_ref()
            .filter(|(_, _, c)| c.iter().any(|x| x == controller))
            .map(|(d, _, _)| d.as_path())
    }
}

/// mkdir -p from `base` to `dir`; with `inherit` (v1 cpuset) copy the
/// parent's cpus/mems into each new level, which the kernel leaves empty.
fn mkdir_levels(base: &Path, dir: &Path, cpuset: bool) -> Result<(), RuntimeError> {
    let rel = dir.strip_prefix(base).unwrap_or(dir);
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        let parent = cur.clone();
        cur.push(c);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RuntimeError::io("mkdir", &cur, e)),
        }
        if cpuset {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let mine = read_opt(&cur.join(f)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = read_opt(&parent.join(f)).unwrap_or_default();
                    if !theirs.trim().is_empty() {
                        write_file(&cur.join(f), theirs.trim())?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Enables `ctrls` in `subtree_control` of every level from `base` to the
/// parent of `dir` (v2: a controller is usable only if its parent enabled it).
fn enable_v2_controllers(base: &Path, dir: &Path, ctrls: &[String]) -> Result<(), RuntimeError> {
    if ctrls.is_empty() {
        return Ok(());
    }
    let value = ctrls
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let rel = dir.strip_prefix(base).unwrap_or(dir);
    let mut cur = base.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        write_file(&cur.join("cgroup.subtree_control"), &value)?;
        cur.push(c);
    }
    if !comps.is_empty() {
        write_file(&cur.join("cgroup.subtree_control"), &value)?;
    }
    Ok(())
}

impl Cgroup for V1Cgroup {
    fn create(&self) -> Result<(), RuntimeError> {
        for (c, dir, base) in &self.dirs {
            mkdir_levels(base, dir, c.iter().any(|x| x == "cpuset"))?;
        }
        if let Some(dir) = self.unified_for("hugetlb") {
            let (_, base, _) = self.unified.as_ref().expect("unified_for returned a dir");
            mkdir_levels(base, dir, false)?;
            enable_v2_controllers(base, dir, &["hugetlb".to_string()])?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), RuntimeError> {
        let writes = v1_writes(r)?;
        // With rules, start from "deny all" so the list is the whole policy.
        if writes.iter().any(|x| x.controller == "devices") {
            if let Some(d) = self.dir_of("devices") {
                write_file(&d.join("devices.deny"), "a")?;
            }
        }
        for x in &writes {
            let path = if let Some(d) = self.dir_of(x.controller) {
                d.join(&x.file)
            } else if let Some(d) = self.unified_for(x.controller) {
                // hugetlb on the hybrid cgroup2 mount takes v2 file names.
                d.join(x.file.replace(".limit_in_bytes", ".max"))
            } else {
                return Err(invalid(
                    "linux.resources",
                    format!("cgroup controller {} is not available", x.controller),
                ));
            };
            let res = write_file(&path, &x.value);
            // memory+swap must stay >= memory: when raising both, the old
            // memsw limit refuses the new memory limit; write memsw first then.
            if res.is_err() && x.file == "memory.limit_in_bytes" {
                if let Some(sw) = writes
                    .iter()
                    .find(|y| y.file == "memory.memsw.limit_in_bytes")
                {
                    write_file(&path.with_file_name(&sw.file), &sw.value)?;
                    write_file(&path, &x.value)?;
                    continue;
                }
            }
            res?;
        }
        Ok(())
    }

    fn clone_into_dir(&self) -> Option<&Path> {
        self.unified_for("hugetlb")
    }

    fn join_self(&self, born_in_v2: bool) -> Result<(), RuntimeError> {
        for (_, dir, _) in &self.dirs {
            write_file(&dir.join("tasks"), "0")?;
        }
        match self.unified_for("hugetlb") {
            Some(dir) if !born_in_v2 => write_file(&dir.join("cgroup.procs"), "0"),
            _ => Ok(()),
        }
    }

    fn procs(&self) -> Result<Vec<i32>, RuntimeError> {
        let dir = self
            .dir_of("pids")
            .or_else(|| self.dir_of("memory"))
            .or_else(|| self.dirs.first().map(|(_, d, _)| d.as_path()));
        let Some(dir) = dir else {
            return Ok(Vec::new());
        };
        let p = dir.join("cgroup.procs");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(parse_pids(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RuntimeError::io("read", p, e)),
        }
    }

    fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats::default();
        if let Some(d) = self.dir_of("cpuacct") {
            s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"));
        }
        if let Some(d) = self.dir_of("memory") {
            s.memory_usage_bytes = read_u64(&d.join("memory.usage_in_bytes"));
            let stat = read_opt(&d.join("memory.stat")).unwrap_or_default();
            let inactive = keyed_value(&stat, "total_inactive_file").unwrap_or(0);
            s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
            s.memory_rss_bytes = keyed_value(&stat, "total_rss").unwrap_or(0);
            let oom = read_opt(&d.join("memory.oom_control")).unwrap_or_default();
            s.oom_kills = keyed_value(&oom, "oom_kill").unwrap_or(0);
        }
        if let Some(d) = self.dir_of("pids") {
            s.pids_current = read_u64(&d.join("pids.current"));
        }
        s
    }

    fn remove(&self) -> Result<(), RuntimeError> {
        let mut first_err = None;
        let unified = self.unified.as_ref().map(|(d, _, _)| d);
        for dir in self.dirs.iter().map(|(_, d, _)| d).chain(unified) {
            if let Err(e) = rmdir_retry(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// cgroup v2 (unified hierarchy).
struct V2Cgroup {
    root: PathBuf,
    dir: PathBuf,
}

impl Cgroup for V2Cgroup {
    fn create(&self) -> Result<(), RuntimeError> {
        mkdir_levels(&self.root, &self.dir, false)?;
        let avail = read_opt(&self.root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"]
            .iter()
            .filter(|c| avail.split_whitespace().any(|a| a == **c))
            .map(|c| c.to_string())
            .collect();
        enable_v2_controllers(&self.root, &self.dir, &wanted)
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), RuntimeError> {
        for x in v2_writes(r)? {
            write_file(&self.dir.join(&x.file), &x.value)?;
        }
        match r.devices() {
            Some(d) if !d.is_empty() => {
                crate::devices_bpf::attach(&self.dir, &crate::devices_bpf::rules(d))
            }
            _ => Ok(()),
        }
    }

    fn clone_into_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn join_self(&self, born_in_v2: bool) -> Result<(), RuntimeError> {
        if born_in_v2 {
            return Ok(());
        }
        // v2 moves only whole processes across domain cgroups: cgroup.procs.
        write_file(&self.dir.join("cgroup.procs"), "0")
    }

    fn procs(&self) -> Result<Vec<i32>, RuntimeError> {
        let p = self.dir.join("cgroup.procs");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(parse_pids(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RuntimeError::io("read", p, e)),
        }
    }

    fn stats(&self) -> CgroupStats {
        let d = &self.dir;
        let cpu = read_opt(&d.join("cpu.stat")).unwrap_or_default();
        let stat = read_opt(&d.join("memory.stat")).unwrap_or_default();
        let events = read_opt(&d.join("memory.events")).unwrap_or_default();
        let usage = read_u64(&d.join("memory.current"));
        CgroupStats {
            cpu_usage_ns: keyed_value(&cpu, "usage_usec").unwrap_or(0) * 1000,
            memory_usage_bytes: usage,
            memory_working_set_bytes: usage
                .saturating_sub(keyed_value(&stat, "inactive_file").unwrap_or(0)),
            memory_rss_bytes: keyed_value(&stat, "anon").unwrap_or(0),
            oom_kills: keyed_value(&events, "oom_kill").unwrap_or(0),
            pids_current: read_u64(&d.join("pids.current")),
        }
    }

    fn remove(&self) -> Result<(), RuntimeError> {
        rmdir_retry(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    fn resources() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32i64 << 20)
                    .swap(64i64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(100i64).build().unwrap())
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4i64 << 20)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    fn find<'a>(ws: &'a [Write1], file: &str) -> Option<&'a str> {
        ws.iter().find(|x| x.file == file).map(|x| x.value.as_str())
    }

    #[test]
    fn v1_translation() {
        let ws = v1_writes(&resources()).unwrap();
        assert_eq!(find(&ws, "cpu.shares"), Some("1024"));
        assert_eq!(find(&ws, "cpu.cfs_quota_us"), Some("50000"));
        assert_eq!(find(&ws, "memory.limit_in_bytes"), Some("33554432"));
        assert_eq!(find(&ws, "memory.memsw.limit_in_bytes"), Some("67108864"));
        assert_eq!(find(&ws, "pids.max"), Some("100"));
        assert_eq!(find(&ws, "hugetlb.2MB.limit_in_bytes"), Some("4194304"));
        let period = ws.iter().position(|x| x.file == "cpu.cfs_period_us");
        let quota = ws.iter().position(|x| x.file == "cpu.cfs_quota_us");
        assert!(period < quota, "period must be written before quota");
    }

    #[test]
    fn v2_translation() {
        let ws = v2_writes(&resources()).unwrap();
        assert_eq!(find(&ws, "cpu.weight"), Some("39"));
        assert_eq!(find(&ws, "cpu.max"), Some("50000 100000"));
        assert_eq!(find(&ws, "memory.max"), Some("33554432"));
        // 64 MiB memory+swap with a 32 MiB limit leaves 32 MiB of swap.
        assert_eq!(find(&ws, "memory.swap.max"), Some("33554432"));
        assert_eq!(find(&ws, "hugetlb.2MB.max"), Some("4194304"));
        assert_eq!(find(&ws, "cpuset.cpus"), Some("0"));
    }

    #[test]
    fn weight_conversion_bounds() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
    }

    #[test]
    fn unified_keys_only_on_v2() {
        let r = LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                "memory.high".to_string(),
                "1000000".to_string(),
            )]))
            .build()
            .unwrap();
        assert!(v1_writes(&r).is_err());
        assert_eq!(
            find(&v2_writes(&r).unwrap(), "memory.high"),
            Some("1000000")
        );
        let bad = LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                "../x".to_string(),
                "1".to_string(),
            )]))
            .build()
            .unwrap();
        assert!(v2_writes(&bad).is_err());
    }

    #[test]
    fn v1_devices_rules_in_order() {
        let r = LinuxResourcesBuilder::default()
            .devices(crate::devices_bpf::deny_all_but_char(1, 3, "rwm"))
            .build()
            .unwrap();
        let ws = v1_writes(&r).unwrap();
        assert_eq!(ws[0], w("devices", "devices.deny", "a *:* rwm"));
        assert_eq!(ws[1], w("devices", "devices.allow", "c 1:3 rwm"));
        assert!(ws[2..].iter().any(|x| x.value == "c 136:* rwm"));
    }

    #[test]
    fn v2_fake_root_writes_and_stats() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let cg = open(root.path(), "/pod1/ctr1").unwrap();
        cg.create().unwrap();
        cg.apply(&resources()).unwrap();
        let dir = root.path().join("pod1/ctr1");
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "33554432"
        );
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("pod1/cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        fs::write(dir.join("memory.current"), "1000\n").unwrap();
        fs::write(dir.join("memory.stat"), "anon 600\ninactive_file 300\n").unwrap();
        fs::write(dir.join("memory.events"), "low 0\noom 1\noom_kill 2\n").unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 5\nuser_usec 3\n").unwrap();
        let s = cg.stats();
        assert_eq!(s.memory_working_set_bytes, 700);
        assert_eq!(s.oom_kills, 2);
        assert_eq!(s.cpu_usage_ns, 5000);
        assert!(open(root.path(), "/a/../b").is_err());
    }

    #[test]
    fn v1_fake_root_hybrid_hugetlb() {
        let root = tempfile::tempdir().unwrap();
        for d in ["cpu", "cpuset", "memory", "pids", "systemd", "unified"] {
            fs::create_dir(root.path().join(d)).unwrap();
        }
        fs::write(root.path().join("unified/cgroup.controllers"), "hugetlb").unwrap();
        match detect(root.path()).unwrap() {
            Layout::V1 {
                hierarchies,
                unified,
            } => {
                assert_eq!(hierarchies.len(), 4);
                assert_eq!(unified.unwrap().1, vec!["hugetlb".to_string()]);
            }
            Layout::V2 => panic!("detected v2"),
        }
        let cg = open(root.path(), "x/y").unwrap();
        cg.create().unwrap();
        cg.apply(&resources()).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join("unified/x/y/hugetlb.2MB.max")).unwrap(),
            "4194304"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("memory/x/y/memory.limit_in_bytes")).unwrap(),
            "33554432"
        );
        assert!(!root.path().join("systemd/x").exists());
    }

    #[test]
    fn symlinked_v1_hierarchy_counted_once() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("cpu,cpuacct")).unwrap();
        fs::create_dir(root.path().join("memory")).unwrap();
        for l in ["cpu", "cpuacct"] {
            std::os::unix::fs::symlink("cpu,cpuacct", root.path().join(l)).unwrap();
        }
        let Layout::V1 { hierarchies, .. } = detect(root.path()).unwrap() else {
            panic!("detected v2");
        };
        let names: Vec<Vec<String>> = hierarchies.into_iter().map(|(c, _)| c).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&vec!["cpu".to_string(), "cpuacct".to_string()]));
        assert!(names.contains(&vec!["memory".to_string()]));
    }

    #[test]
    fn join_self_moves_through_tasks_on_v1_and_procs_on_cgroup2() {
        let root = tempfile::tempdir().unwrap();
        for d in ["memory", "pids", "unified"] {
            fs::create_dir(root.path().join(d)).unwrap();
        }
        fs::write(root.path().join("unified/cgroup.controllers"), "hugetlb").unwrap();
        let cg = open(root.path(), "/c1").unwrap();
        cg.create().unwrap();
        let uni = root.path().join("unified/c1");
        assert_eq!(cg.clone_into_dir(), Some(uni.as_path()));
        // Born in the unified cgroup by clone3: only v1 is left to join.
        cg.join_self(true).unwrap();
        for d in ["memory", "pids"] {
            let tasks = root.path().join(d).join("c1/tasks");
            assert_eq!(fs::read_to_string(tasks).unwrap(), "0");
            assert!(!root.path().join(d).join("c1/cgroup.procs").exists());
        }
        assert!(!uni.join("cgroup.procs").exists());
        cg.join_self(false).unwrap();
        assert_eq!(fs::read_to_string(uni.join("cgroup.procs")).unwrap(), "0");

        let v2 = tempfile::tempdir().unwrap();
        fs::write(v2.path().join("cgroup.controllers"), "pids").unwrap();
        let cg = open(v2.path(), "/c2").unwrap();
        cg.create().unwrap();
        let dir = v2.path().join("c2");
        assert_eq!(cg.clone_into_dir(), Some(dir.as_path()));
        cg.join_self(true).unwrap();
        assert!(!dir.join("cgroup.procs").exists());
        cg.join_self(false).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.procs")).unwrap(), "0");
    }
}
