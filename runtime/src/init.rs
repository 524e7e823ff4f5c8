//! The container process between clone and execve: namespaces, cgroup,
//! mounts, pivot_root, user, capabilities, rlimits, then exec.
//!
//! Runs in the monitor's child (single-threaded, so ordinary Rust is safe
//! after the raw clone). Any failure is sent to the monitor over the sync
//! socket as `E<step> <path>: <cause>`, and the child exits.

use crate::cgroup::{self, Cgroup, Layout};
use crate::mounts::{self, lower, StepError};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// What the monitor hands its child.
pub(crate) struct InitConfig<'a> {
    /// The container's spec.
    pub spec: &'a Spec,
    /// Absolute rootfs path (already mounted).
    pub rootfs: PathBuf,
    /// The container's cgroup (created and configured by the monitor).
    pub cgroup: Option<&'a dyn Cgroup>,
    /// The process was cloned into the cgroup's cgroup2 directory
    /// (`CLONE_INTO_CGROUP`); set in the child, after the clone.
    pub born_in_cgroup2: bool,
    /// `linux.cgroupsPath`, for the `cgroup` mount type.
    pub cgroup_path: Option<String>,
    /// Fds that become stdin, stdout, stderr.
    pub stdio: [RawFd; 3],
    /// Give the process a pty from the container's own devpts (bound to
    /// `/dev/console`); its master goes to the monitor over the sync socket.
    pub tty: bool,
    /// The compiled seccomp filter, loaded last.
    pub seccomp: Option<&'a crate::seccomp::Filters>,
}

/// The namespaces of the spec: (clone flag, optional path to join).
pub(crate) fn namespaces(spec: &Spec) -> Vec<(CloneFlags, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| (ns_flag(n.typ()), n.path().clone()))
        .collect()
}

/// The clone flag of a namespace type.
pub(crate) fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The program to exec, resolved and checked before `create` returns.
pub(crate) struct ExecPlan {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
    /// Loaded right before execve (with no_new_privs set).
    seccomp: Option<crate::seccomp::Filters>,
}

/// Loads `filters` now when the process keeps no_new_privs off: the kernel
/// then requires CAP_SYS_ADMIN, which only the still-root process has (as
/// runc does; the profile must allow the few setup calls that follow).
/// Returns what remains to be loaded right before execve.
pub(crate) fn seccomp_before_user(
    p: &Process,
    filters: Option<crate::seccomp::Filters>,
) -> Result<Option<crate::seccomp::Filters>, StepError> {
    match filters {
        Some(f) if p.no_new_privileges() != Some(true) => {
            f.apply().map_err(|e| e.to_string())?;
            Ok(None)
        }
        other => Ok(other),
    }
}

impl ExecPlan {
    /// The plan with a seccomp filter to load just before execve.
    pub(crate) fn with_seccomp(mut self, f: Option<crate::seccomp::Filters>) -> Self {
        self.seccomp = f;
        self
    }

    /// execve; returns only on failure, with `exec "<path>": <cause>`.
    pub(crate) fn exec(&self) -> Result<std::convert::Infallible, StepError> {
        // Last step: after no_new_privs, capabilities and setuid.
        if let Some(f) = &self.seccomp {
            f.apply().map_err(|e| e.to_string())?;
        }
        let e = match nix::unistd::execve(&self.path, &self.args, &self.env) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        Err(format!(
            "exec {:?}: {}",
            self.path.to_string_lossy(),
            lower(e.desc())
        ))
    }
}

fn cstr(what: &str, s: &str) -> Result<CString, StepError> {
    CString::new(s).map_err(|_| format!("{what} {s:?}: contains a NUL byte"))
}

/// The child's whole life: set up, report ready, wait for start, exec.
pub(crate) fn run(cfg: &InitConfig, mut sync: UnixStream) -> ! {
    let mut pty_master = None;
    let plan = match setup(cfg, &mut pty_master) {
        Ok(p) => p,
        Err(e) => fail(&mut sync, &e, 1),
    };
    if send_ready(&sync, pty_master.as_ref()).is_err() {
        std::process::exit(1);
    }
    drop(pty_master);
    let mut go = [0u8; 1];
    match sync.read(&mut go) {
        Ok(1) if go[0] == b'G' => {}
        // The monitor gave up on us (create failed or was deleted).
        _ => std::process::exit(1),
    }
    let Err(msg) = plan.exec();
    let code = if msg.ends_with("no such file or directory") {
        127
    } else {
        126
    };
    fail(&mut sync, &msg, code)
}

/// "R", with the pty master attached (SCM_RIGHTS) when there is one (also
/// the exec helper's hand-over of a tty exec's master).
pub(crate) fn send_ready(sync: &impl AsRawFd, master: Option<&OwnedFd>) -> nix::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(b"R")];
    let fds;
    let cmsgs: Vec<ControlMessage> = match master {
        Some(m) => {
            fds = [m.as_raw_fd()];
            vec![ControlMessage::ScmRights(&fds)]
        }
        None => Vec::new(),
    };
    sendmsg::<()>(sync.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
}

fn fail(sync: &mut UnixStream, msg: &str, code: i32) -> ! {
    let _ = sync.write_all(format!("E{msg}").as_bytes());
    std::process::exit(code)
}

/// Every step before exec, in order; returns the checked exec plan.
pub(crate) fn setup(
    cfg: &InitConfig,
    pty_master: &mut Option<OwnedFd>,
) -> Result<ExecPlan, StepError> {
    let spec = cfg.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| "spec: no process".to_string())?;
    // 1. cgroup first, so everything after is accounted and limited.
    if let Some(cg) = cfg.cgroup {
        cg.join_self(cfg.born_in_cgroup2)
            .map_err(|e| format!("join cgroup: {e}"))?;
    }
    // 2. namespaces given by path (the monitor did pid before cloning).
    let nss = namespaces(spec);
    for (flag, path) in &nss {
        let Some(path) = path else { continue };
        if *flag == CloneFlags::CLONE_NEWPID {
            continue;
        }
        let f = std::fs::File::open(path).map_err(|e| format!("open namespace {path:?}: {e}"))?;
        nix::sched::setns(&f, *flag).map_err(|e| format!("setns {path:?}: {}", lower(e.desc())))?;
    }
    let new = |f: CloneFlags| nss.iter().any(|(x, p)| *x == f && p.is_none());
    if new(CloneFlags::CLONE_NEWCGROUP) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| format!("unshare cgroup namespace: {}", lower(e.desc())))?;
    }
    // 3. per-process kernel settings, while still root and on the host /proc.
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            format!(
                "oom_score_adj {adj}: the kernel refused: {}",
                lower(&e.to_string())
            )
        })?;
    }
    for (k, v) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default()
    {
        if k.contains("..") || k.contains('/') {
            return Err(format!("sysctl {k:?}: invalid name"));
        }
        let p = Path::new("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&p, &v).map_err(|e| format!("sysctl {k}={v}: {}", lower(&e.to_string())))?;
    }
    if new(CloneFlags::CLONE_NEWUTS) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h)
                .map_err(|e| format!("sethostname {h:?}: {}", lower(e.desc())))?;
        }
    }
    // 4. the file system.
    if !nss.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS) {
        return Err("spec: a mount namespace is required".into());
    }
    setup_rootfs(cfg)?;
    // 5. stdio and the controlling terminal.
    let slave = if cfg.tty {
        let (master, slave) = open_console()?;
        *pty_master = Some(master);
        Some(slave)
    } else {
        None
    };
    setup_stdio(cfg, slave.as_ref())?;
    drop(slave);
    // 6. rlimits, then user and capabilities (the order matters: setuid
    //    needs CAP_SETUID, rlimits may need CAP_SYS_RESOURCE).
    set_rlimits(process)?;
    if let Some(u) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(u));
    }
    let cwd = process.cwd();
    if !cwd.as_os_str().is_empty() {
        // Created as root like runc does, entered as the user below.
        let _ = std::fs::create_dir_all(cwd);
    }
    let seccomp = seccomp_before_user(process, cfg.seccomp.cloned())?;
    set_user_and_caps(process)?;
    if !cwd.as_os_str().is_empty() {
        nix::unistd::chdir(cwd).map_err(|e| format!("chdir {cwd:?}: {}", lower(e.desc())))?;
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| format!("no_new_privs: {}", lower(e.desc())))?;
    }
    let plan = exec_plan(process)?.with_seccomp(seccomp);
    close_other_fds();
    Ok(plan)
}

fn setup_rootfs(cfg: &InitConfig) -> Result<(), StepError> {
    let spec = cfg.spec;
    let root_prop = mounts::root_propagation(spec);
    nix::mount::mount(None::<&str>, "/", None::<&str>, root_prop, None::<&str>)
        .map_err(|e| format!("set propagation of /: {}", lower(e.desc())))?;
    mounts::bind_rootfs(&cfg.rootfs, root_prop)?;
    let root: OwnedFd = std::fs::File::open(&cfg.rootfs)
        .map_err(|e| format!("open rootfs {:?}: {e}", cfg.rootfs))?
        .into();
    let plan = mounts::plan(spec);
    for op in &plan {
        if op.fstype.as_deref() == Some("cgroup") || op.fstype.as_deref() == Some("cgroup2") {
            mount_cgroups(&root, op, cfg.cgroup_path.as_deref().unwrap_or("/"))?;
        } else {
            mounts::apply_one(&root, op)?;
        }
    }
    if plan
        .iter()
        .any(|op| op.destination == Path::new("/dev") && !op.is_bind())
    {
        mounts::populate_dev(&root, spec)?;
    }
    drop(root);
    mounts::pivot_root(&cfg.rootfs, root_prop)?;
    let linux = spec.linux().as_ref();
    mounts::mask_paths(
        &linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default(),
    )?;
    mounts::readonly_paths(
        &linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default(),
    )?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mounts::readonly_root()?;
    }
    Ok(())
}

/// A `cgroup` mount: on v2 the cgroup2 file system; on v1 a tmpfs holding a
/// bind of the container's own directory of every hierarchy.
fn mount_cgroups(root: &OwnedFd, op: &mounts::MountOp, cg_path: &str) -> Result<(), StepError> {
    let ro = op.flags.contains(MsFlags::MS_RDONLY);
    let base_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let layout = cgroup::detect(Path::new(cgroup::DEFAULT_ROOT)).map_err(|e| e.to_string())?;
    let mk = |fstype: &str, data: Option<&str>, flags: MsFlags| mounts::MountOp {
        destination: op.destination.clone(),
        fstype: Some(fstype.into()),
        source: Some(fstype.into()),
        flags,
        propagation: MsFlags::empty(),
        data: data.unwrap_or("").into(),
    };
    match layout {
        Layout::V2 => mounts::apply_one(root, &mk("cgroup2", None, op.flags | base_flags)),
        Layout::V1 {
            hierarchies,
            unified,
        } => {
            mounts::apply_one(root, &mk("tmpfs", Some("mode=755"), base_flags))?;
            let uni = unified.map(|(d, _)| (vec!["unified".to_string()], d));
            for (ctrls, base) in hierarchies.into_iter().chain(uni) {
                let name = ctrls.join(",");
                let src = cg_path
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != "..")
                    .fold(base, |p, c| p.join(c));
                let bind = mounts::MountOp {
                    destination: op.destination.join(&name),
                    fstype: None,
                    source: Some(src),
                    flags: MsFlags::MS_BIND
                        | base_flags
                        | if ro {
                            MsFlags::MS_RDONLY
                        } else {
                            MsFlags::empty()
                        },
                    propagation: MsFlags::empty(),
                    data: String::new(),
                };
                mounts::apply_one(root, &bind)?;
            }
            if ro {
                let top = mounts::open_in_root(root, &op.destination, false)?;
                nix::mount::mount(
                    None::<&str>,
                    &PathBuf::from(format!("/proc/self/fd/{}", top.as_raw_fd())),
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base_flags,
                    Some("mode=755"),
                )
                .map_err(|e| {
                    format!(
                        "remount {:?} read-only: {}",
                        op.destination,
                        lower(e.desc())
                    )
                })?;
            }
            Ok(())
        }
    }
}

/// A pty of the container's own devpts (after pivot_root): the slave is
/// bound to `/dev/console`, the master returned for the monitor.
fn open_console() -> Result<(OwnedFd, OwnedFd), StepError> {
    let (master, slave, name) = open_container_pty()?;
    let console = Path::new("/dev/console");
    if std::fs::symlink_metadata(console).is_err() {
        std::fs::File::create(console)
            .map_err(|x| format!("create /dev/console: {}", lower(&x.to_string())))?;
    }
    nix::mount::mount(
        Some(name.as_str()),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|x| format!("bind /dev/console: {}", lower(x.desc())))?;
    Ok((master, slave))
}

/// A new pty (master, slave, slave's path) of the devpts mounted at
/// `/dev/pts` in the caller's mount namespace: the container's own, for
/// the container's console (init, after pivot_root) and for a tty exec
/// (the exec helper, after joining the container's mounts), so that the
/// process's `ttyname` names a `/dev/pts/N` that exists in the container.
/// Both ends close-on-exec, the slave opened without a controlling-terminal
/// side effect.
///
/// Safe in a running container's namespace: `/dev` is the runtime's tmpfs
/// and `/dev/pts` its devpts mount, but a process of the container may have
/// replaced entries in them; the lookup refuses symlinks (an exec helper
/// still root must not open a path the container chose), the result must be
/// a devpts ptmx (char 5:2), and the slave comes from the master itself
/// (TIOCGPTPEER), not from a path, so it is the same devpts's.
pub(crate) fn open_container_pty() -> Result<(OwnedFd, OwnedFd, String), StepError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    let master = rustix::fs::openat2(
        rustix::fs::CWD,
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|x| format!("open /dev/pts/ptmx: {}", lower(&x.to_string())))?;
    let st = rustix::fs::fstat(&master).map_err(|x| format!("stat /dev/pts/ptmx: {x}"))?;
    let rdev = st.st_rdev;
    let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_chr || libc::major(rdev) != 5 || libc::minor(rdev) != 2 {
        return Err("/dev/pts/ptmx is not a devpts ptmx".into());
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(os("unlock pty"));
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int to a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } < 0 {
        return Err(os("pty number"));
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if slave < 0 {
        return Err(os("open pty slave"));
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master, slave, format!("/dev/pts/{n}")))
}

fn setup_stdio(cfg: &InitConfig, tty: Option<&OwnedFd>) -> Result<(), StepError> {
    if tty.is_some() {
        nix::unistd::setsid().map_err(|e| format!("setsid: {}", lower(e.desc())))?;
    }
    let stdio = match tty {
        Some(s) => [s.as_raw_fd(); 3],
        None => cfg.stdio,
    };
    for (i, fd) in stdio.iter().enumerate() {
        if *fd != i as RawFd {
            // SAFETY: dup2 on fds we own; the target is a stdio slot.
            if unsafe { libc::dup2(*fd, i as RawFd) } < 0 {
                return Err(format!(
                    "dup2 stdio {i}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    if tty.is_some() {
        // SAFETY: TIOCSCTTY on our stdin (the pty slave), no pointers.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(format!(
                "set controlling terminal: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn set_rlimits(p: &Process) -> Result<(), StepError> {
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_string(&r.typ()).unwrap_or_default();
        let name = name.trim_matches('"');
        let res = rlimit_resource(name).ok_or_else(|| format!("rlimit {name}: unknown"))?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid resource and a pointer to a local.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(format!(
                "rlimit {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn to_caps(set: &Option<oci_spec::runtime::Capabilities>) -> Result<caps::CapsHashSet, StepError> {
    let mut out = caps::CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_string(c).unwrap_or_default();
        let name = name.trim_matches('"');
        match name.parse::<caps::Capability>() {
            Ok(cap) => {
                out.insert(cap);
            }
            // A capability this kernel/crate does not know: ignore like runc.
            Err(_) => continue,
        }
    }
    Ok(out)
}

/// Groups, gid, uid, then the five capability sets.
pub(crate) fn set_user_and_caps(p: &Process) -> Result<(), StepError> {
    use caps::CapSet;
    let c = p.capabilities().clone().unwrap_or_default_empty();
    let bounding = to_caps(c.bounding())?;
    let effective = to_caps(c.effective())?;
    let permitted = to_caps(c.permitted())?;
    let inheritable = to_caps(c.inheritable())?;
    let ambient = to_caps(c.ambient())?;
    let cap_err = |what: &str, e: caps::errors::CapsError| format!("set {what} capabilities: {e}");
    // Bounding set first, while we still hold CAP_SETPCAP.
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| cap_err("bounding", e))?;
        }
    }
    let u = p.user();
    let gids: Vec<nix::unistd::Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&gids).map_err(|e| format!("setgroups: {}", lower(e.desc())))?;
    let gid = nix::unistd::Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| format!("setgid {}: {}", u.gid(), lower(e.desc())))?;
    // Keep the permitted set across setuid; the sets are set explicitly next.
    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keepcaps: {}", lower(e.desc())))?;
    let uid = nix::unistd::Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| format!("setuid {}: {}", u.uid(), lower(e.desc())))?;
    // Inheritable first (needs CAP_SETPCAP in effective), then effective,
    // then permitted (which must keep covering effective).
    caps::set(None, CapSet::Effective, &caps::all()).ok();
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| cap_err("inheritable", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| cap_err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| cap_err("permitted", e))?;
    caps::clear(None, CapSet::Ambient).ok();
    // The kernel only allows ambient caps that are permitted and
    // inheritable; like runc, others are skipped rather than fatal
    // (`runc spec` itself asks for ambient caps without inheritable ones).
    for cap in ambient {
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap).map_err(|e| cap_err("ambient", e))?;
        }
    }
    Ok(())
}

/// `Option<LinuxCapabilities>` where `None` means "no capabilities at all".
trait OrEmpty {
    fn unwrap_or_default_empty(self) -> oci_spec::runtime::LinuxCapabilities;
}

impl OrEmpty for Option<oci_spec::runtime::LinuxCapabilities> {
    fn unwrap_or_default_empty(self) -> oci_spec::runtime::LinuxCapabilities {
        self.unwrap_or_else(|| {
            let mut c = oci_spec::runtime::LinuxCapabilities::default();
            c.set_bounding(None)
                .set_effective(None)
                .set_permitted(None)
                .set_inheritable(None)
                .set_ambient(None);
            c
        })
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolves `args[0]` (through `$PATH` when it has no `/`) and checks it is
/// executable, so a wrong command fails `create`, not `start`.
pub(crate) fn exec_plan(p: &Process) -> Result<ExecPlan, StepError> {
    let args = p.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err("spec: process.args is empty".into());
    };
    let env = p.env().clone().unwrap_or_default();
    let path = resolve_command(arg0, &env)?;
    Ok(ExecPlan {
        path: cstr("exec", &path)?,
        args: args
            .iter()
            .map(|a| cstr("argument", a))
            .collect::<Result<_, _>>()?,
        env: env
            .iter()
            .map(|e| cstr("environment variable", e))
            .collect::<Result<_, _>>()?,
        seccomp: None,
    })
}

fn check_exec(path: &str) -> Result<(), nix::errno::Errno> {
    use nix::unistd::{access, AccessFlags};
    let meta = std::fs::metadata(path)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    if meta.is_dir() {
        return Err(nix::errno::Errno::EACCES);
    }
    access(path, AccessFlags::X_OK)
}

/// The executable for `arg0` given the process env (`PATH=` in it).
pub(crate) fn resolve_command(arg0: &str, env: &[String]) -> Result<String, StepError> {
    if arg0.contains('/') {
        return check_exec(arg0)
            .map(|()| arg0.to_string())
            .map_err(|e| format!("exec {arg0:?}: {}", lower(e.desc())));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = format!("{}/{arg0}", dir.trim_end_matches('/'));
        if check_exec(&cand).is_ok() {
            return Ok(cand);
        }
    }
    Err(format!("exec {arg0:?}: executable file not found in $PATH"))
}

/// Marks every fd above stderr close-on-exec (the sync socket must live
/// until execve to report its failure).
pub(crate) fn close_other_fds() {
    // SAFETY: close_range with CLOEXEC only changes fd flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Older kernels: walk the table.
        for fd in 3..1024 {
            // SAFETY: F_SETFD on a possibly closed fd is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_resolution_messages() {
        let e = resolve_command("/bin/nope-cria", &[]).unwrap_err();
        assert_eq!(e, "exec \"/bin/nope-cria\": no such file or directory");
        let e = resolve_command("nope-cria", &["PATH=/bin".into()]).unwrap_err();
        assert_eq!(e, "exec \"nope-cria\": executable file not found in $PATH");
        assert_eq!(
            resolve_command("sh", &["PATH=/nonexistent:/bin".into()]).unwrap(),
            "/bin/sh"
        );
    }
}
