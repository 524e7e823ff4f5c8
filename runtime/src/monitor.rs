//! `cria-monitor`: the per-container monitor, and its helper modes.
//!
//! Modes (argv[1]):
//! - `create --id ID --dir DIR --bundle B [--log L] [--tty] [--stdin]`: forks
//!   once (the parent exits, so the monitor is reparented to init and the
//!   caller reaps at once), `setsid`, becomes child subreaper, creates the
//!   container, prints one JSON result line on stdout, then runs the event
//!   loop until the container exits.
//! - `exec DIR`: joins the running container (namespaces, cgroup), forks,
//!   sets user/caps and execs the OCI `Process` read as JSON from stdin
//!   (or, for an interactive exec, from the environment: `exec_stream.rs`);
//!   stdout/stderr are the caller's pipes; exits with the process's code.
//! - `sandbox JSON`: pins a pod's namespaces (see `sandbox.rs`).
//!
//! Single-threaded, no async runtime: poll(2) over the control socket, a
//! signalfd for SIGCHLD and the container's output.

use crate::cgroup::{self, Cgroup};
use crate::init::{self, InitConfig};
use crate::log::{LineFramer, LogFile, Stream};
use crate::mounts::lower;
use crate::state::{self, ContainerState, Status};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The result line `create` prints for the library.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum CreateReply {
    /// The container exists and waits for start.
    Ok {
        /// Monitor pid.
        monitor_pid: i32,
        /// Container pid.
        pid: i32,
    },
    /// Creation failed; everything was undone.
    Err(String),
}

/// Entry point of `cria-monitor`; returns the process exit code.
pub fn main() -> i32 {
    // Only stdio is ours: any fd leaked by whoever started us (criad's
    // libraries, a test harness) would otherwise live as long as the
    // container. Nothing else is open yet.
    // SAFETY: closes descriptors above stderr; none is in use here.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("create") => create_main(&args[2..]),
        Some("exec") => match args.get(2) {
            Some(dir) => exec_main(Path::new(dir)),
            None => usage(),
        },
        Some("sandbox") => crate::sandbox::helper_main(),
        _ => usage(),
    }
}

fn usage() -> i32 {
    eprintln!("usage: cria-monitor create|exec|sandbox ... (started by the cria runtime)");
    2
}

/// Options of `create` mode.
#[derive(Debug, Default)]
struct CreateOpts {
    id: String,
    dir: PathBuf,
    bundle: PathBuf,
    log: Option<PathBuf>,
    tty: bool,
    stdin: bool,
    stdin_once: bool,
}

fn parse_create(args: &[String]) -> Result<CreateOpts, String> {
    let mut o = CreateOpts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a}: missing value"))
        };
        match a.as_str() {
            "--id" => o.id = val()?,
            "--dir" => o.dir = val()?.into(),
            "--bundle" => o.bundle = val()?.into(),
            "--log" => o.log = Some(val()?.into()),
            "--tty" => o.tty = true,
            "--stdin" => o.stdin = true,
            "--stdin-once" => o.stdin_once = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.id.is_empty() || o.dir.as_os_str().is_empty() || o.bundle.as_os_str().is_empty() {
        return Err("--id, --dir and --bundle are required".into());
    }
    Ok(o)
}

fn reply(r: &CreateReply) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn create_main(args: &[String]) -> i32 {
    let opts = match parse_create(args) {
        Ok(o) => o,
        Err(e) => {
            reply(&CreateReply::Err(e));
            return 2;
        }
    };
    // SAFETY: this process is single-threaded (just exec'd), so fork is safe.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            reply(&CreateReply::Err(format!(
                "fork monitor: {}",
                lower(e.desc())
            )));
            return 1;
        }
    }
    // Own session and process group: signals to criad's group, or its
    // terminal going away, do not reach us.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    match Monitor::create(&opts) {
        Err(e) => {
            reply(&CreateReply::Err(e));
            1
        }
        Ok(mut m) => {
            reply(&CreateReply::Ok {
                monitor_pid: std::process::id() as i32,
                pid: m.pid.as_raw(),
            });
            detach_stdio();
            m.run();
            0
        }
    }
}

/// Drops what setup left resident: freed heap goes back to the kernel, and
/// the page-table entries of read-only file mappings whose pages are all
/// unmodified (code, rodata; smaps `Anonymous: 0 kB`) are zapped. Those pages
/// equal the file, so the loop refaults the few it uses from the page cache
/// (minor faults, no I/O). Mappings with modified pages (RELRO, data) are
/// never touched: dropping them would lose their content. Called after setup
/// and after each control command, it keeps the monitor's RSS near what its
/// poll loop really uses.
fn trim_memory() {
    // SAFETY: malloc_trim only returns free heap memory.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    // Collected first, zapped last: parsing after a zap would refault code.
    let mut drop_ranges = Vec::with_capacity(32);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            // A mapping header: "start-end perms offset dev inode path".
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            current = match (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                (Ok(a), Ok(b)) if (perms == "r-xp" || perms == "r--p") && path.starts_with('/') => {
                    Some((a, b))
                }
                _ => None,
            };
        } else if first == "Anonymous:" {
            if let (Some(r), Some("0")) = (current.take(), f.next()) {
                drop_ranges.push(r);
            }
        }
    }
    drop(smaps);
    for (a, b) in drop_ranges {
        // SAFETY: a private read-only file mapping none of whose pages was
        // modified: MADV_DONTNEED only drops PTEs.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) };
    }
}

/// Points 0, 1, 2 at /dev/null: the caller stops reading at EOF.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the stdio slots.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// One readable output of the container (pipe read end or pty master).
struct Output {
    fd: OwnedFd,
    framer: LineFramer,
    open: bool,
}

/// The monitor of one running container.
struct Monitor {
    dir: PathBuf,
    state: ContainerState,
    pid: Pid,
    /// Our end of the sync socket with the container (until it execs).
    sync: Option<UnixStream>,
    outputs: Vec<Output>,
    /// Held for attach (issue 7): stdin write end or the pty master.
    _stdin: Option<OwnedFd>,
    /// Attach clients (`attach.rs`).
    attach: crate::attach::AttachHub,
    log: LogFile,
    listener: UnixListener,
    sigfd: SignalFd,
    cgroup: Box<dyn Cgroup>,
    own_pid_ns: bool,
    _lock: std::fs::File,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {}", lower(&e.to_string()))
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl flag change on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| err("pipe", e.desc()))
}

impl Monitor {
    fn create(o: &CreateOpts) -> Result<Monitor, String> {
        std::fs::create_dir(&o.dir).map_err(|e| err(&format!("mkdir {:?}", o.dir), e))?;
        let mut cgroup_made: Option<Box<dyn Cgroup>> = None;
        let r = Self::create_in(o, &mut cgroup_made);
        if r.is_err() {
            // Undo: the cgroup (the child, if any, was killed and reaped
            // in create_in) and the state dir.
            if let Some(cg) = cgroup_made {
                let _ = cg.remove();
            }
            let _ = std::fs::remove_dir_all(&o.dir);
        }
        r
    }

    fn create_in(o: &CreateOpts, cg_out: &mut Option<Box<dyn Cgroup>>) -> Result<Monitor, String> {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&o.dir, std::fs::Permissions::from_mode(0o700));
        let lock = std::fs::File::create(o.dir.join(state::LOCK_FILE))
            .map_err(|e| err("create lock file", e))?;
        nix::fcntl::Flock::lock(
            lock.try_clone().map_err(|e| err("dup lock", e))?,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .map(std::mem::forget)
        .map_err(|(_, e)| err("lock state dir", e.desc()))?;
        let config = o.bundle.join("config.json");
        let (spec, has_seccomp) =
            load_spec(&config).map_err(|e| format!("load spec {config:?}: {e}"))?;
        let seccomp = receive_seccomp(has_seccomp)?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| "spec: root.path is missing".to_string())?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            o.bundle.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(format!("rootfs {rootfs:?}: no such directory"));
        }
        // cgroup: created and configured here; the child joins it first thing.
        let cg_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("/cria/{}", o.id));
        let cg =
            cgroup::open(Path::new(cgroup::DEFAULT_ROOT), &cg_path).map_err(|e| e.to_string())?;
        cg.create()
            .map_err(|e| format!("create cgroup {cg_path}: {e}"))?;
        let cg = cg_out.insert(cg);
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cg.apply(res)
                .map_err(|e| format!("cgroup {cg_path}: {e}"))?;
        }
        // stdio
        let mut outputs = Vec::new();
        let mut keep_stdin = None;
        let mut child_fds: Vec<OwnedFd> = Vec::new();
        let stdio: [RawFd; 3];
        if o.tty {
            // The child opens the pty in its own devpts and sends us the master.
            stdio = [-1; 3];
        } else {
            let (in_r, in_w) = if o.stdin {
                let (r, w) = cloexec_pipe()?;
                (r, Some(w))
            } else {
                let null =
                    std::fs::File::open("/dev/null").map_err(|e| err("open /dev/null", e))?;
                (OwnedFd::from(null), None)
            };
            keep_stdin = keep_stdin.or(in_w);
            let (out_r, out_w) = cloexec_pipe()?;
            let (err_r, err_w) = cloexec_pipe()?;
            set_nonblock(out_r.as_raw_fd());
            set_nonblock(err_r.as_raw_fd());
            stdio = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
            outputs.push(Output {
                fd: out_r,
                framer: LineFramer::new(Stream::Stdout),
                open: true,
            });
            outputs.push(Output {
                fd: err_r,
                framer: LineFramer::new(Stream::Stderr),
                open: true,
            });
            child_fds.extend([in_r, out_w, err_w]);
        }
        let log = LogFile::open(o.log.as_deref())
            .map_err(|e| err(&format!("open log {:?}", o.log), e))?;
        let (mine, theirs) = UnixStream::pair().map_err(|e| err("socketpair", e))?;
        // SIGCHLD is read from a signalfd; block it before the child exists.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| err("block SIGCHLD", e.desc()))?;
        let sigfd = SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )
        .map_err(|e| err("signalfd", e.desc()))?;
        // Namespaces: new ones by clone flags; a pid ns by path is joined by
        // us (it applies to our children); others by the child.
        let nss = init::namespaces(&spec);
        let mut flags = CloneFlags::empty();
        let mut own_pid_ns = false;
        for (f, path) in &nss {
            if *f == CloneFlags::CLONE_NEWUSER {
                return Err("user namespaces are not supported".into());
            }
            match path {
                None if *f == CloneFlags::CLONE_NEWCGROUP => {}
                None => {
                    flags |= *f;
                    own_pid_ns |= *f == CloneFlags::CLONE_NEWPID;
                }
                Some(p) if *f == CloneFlags::CLONE_NEWPID => {
                    let ns = std::fs::File::open(p)
                        .map_err(|e| err(&format!("open namespace {p:?}"), e))?;
                    nix::sched::setns(&ns, CloneFlags::CLONE_NEWPID)
                        .map_err(|e| err(&format!("setns {p:?}"), e.desc()))?;
                }
                Some(_) => {}
            }
        }
        let mut cfg = InitConfig {
            spec: &spec,
            rootfs,
            cgroup: Some(cg.as_ref()),
            born_in_cgroup2: false,
            cgroup_path: Some(cg_path.clone()),
            stdio,
            tty: o.tty,
            seccomp: seccomp.as_ref().map(|(f, _)| f),
        };
        let cg2 = cg
            .clone_into_dir()
            .map(std::fs::File::open)
            .transpose()
            .map_err(|e| err("open cgroup2 dir", e))?;
        // SAFETY: the monitor is single-threaded; the child only sets itself
        // up and execs (init.rs).
        let (ret, born_in_cgroup2) =
            unsafe { crate::cgroup::clone_into_cgroup(flags.bits() as u64, cg2.as_ref()) }
                .map_err(|e| err("clone container process", e))?;
        drop(cg2);
        if ret == 0 {
            drop(mine);
            child_prepare_signals();
            cfg.born_in_cgroup2 = born_in_cgroup2;
            init::run(&cfg, theirs);
        }
        let pid = Pid::from_raw(ret as i32);
        drop(theirs);
        drop(child_fds);
        // Kept for exec; written while the container sets itself up.
        if let Some((_, bytes)) = &seccomp {
            if let Err(e) = std::fs::write(o.dir.join(crate::seccomp::FILE), bytes) {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(err("write seccomp.bpf", e));
            }
        }
        let sync = mine;
        let mut buf = vec![0u8; 4096];
        let (n, pty_master) = recv_ready(&sync, &mut buf);
        if let Some(master) = pty_master {
            set_nonblock(master.as_raw_fd());
            keep_stdin = Some(master.try_clone().map_err(|e| err("dup pty", e))?);
            outputs.push(Output {
                fd: master,
                framer: LineFramer::new(Stream::Stdout),
                open: true,
            });
        }
        if n != 1 || buf[0] != b'R' {
            let msg = if n > 1 && buf[0] == b'E' {
                String::from_utf8_lossy(&buf[1..n]).into_owned()
            } else {
                "container process died during setup".to_string()
            };
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(msg);
        }
        let now = SystemTime::now();
        let state = ContainerState {
            id: o.id.clone(),
            status: Status::Created,
            pid: pid.as_raw(),
            monitor_pid: std::process::id() as i32,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            message: None,
            bundle: o.bundle.clone(),
            log_path: o.log.clone(),
            cgroup_path: Some(cg_path),
        };
        let fail = |msg: String| {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            msg
        };
        state
            .save(&o.dir)
            .map_err(|e| fail(err("write status.json", e)))?;
        state::write_atomic(
            &o.dir,
            state::PID_FILE,
            std::process::id().to_string().as_bytes(),
        )
        .map_err(|e| fail(err("write monitor.pid", e)))?;
        let listener = state::bind_socket(&o.dir, state::CONTROL_SOCKET)
            .map_err(|e| fail(err("bind control socket", e)))?;
        listener.set_nonblocking(true).ok();
        let dup = |fd: &Option<OwnedFd>| fd.as_ref().and_then(|f| f.try_clone().ok());
        // Without a tty the hub takes the pipe's only write end, so that
        // `stdin_once` can close the container's stdin by dropping it.
        let attach = crate::attach::AttachHub::bind(
            &o.dir,
            if o.tty {
                dup(&keep_stdin)
            } else {
                keep_stdin.take()
            },
            if o.tty { dup(&keep_stdin) } else { None },
            o.stdin_once,
        )
        .map_err(fail)?;
        let cgroup = cg_out.take().expect("cgroup stored above");
        Ok(Monitor {
            dir: o.dir.clone(),
            state,
            pid,
            sync: Some(sync),
            outputs,
            _stdin: keep_stdin,
            attach,
            log,
            listener,
            sigfd,
            cgroup,
            own_pid_ns,
            _lock: lock,
        })
    }

    fn save(&self) {
        // A failed write leaves the previous state; nothing better to do
        // than keep running (the library reports the old state).
        let _ = self.state.save(&self.dir);
    }

    /// The event loop; returns when the container has exited.
    fn run(&mut self) {
        let mut exited = false;
        // Trimming waits for a quiet moment: short-lived containers never
        // pay for it, and it never delays noticing an exit.
        let mut trim_pending = true;
        while !exited {
            let mut fds = vec![
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            ];
            let open: Vec<usize> = (0..self.outputs.len())
                .filter(|i| self.outputs[*i].open)
                .collect();
            for i in &open {
                fds.push(PollFd::new(self.outputs[*i].fd.as_fd(), PollFlags::POLLIN));
            }
            let attach_at = fds.len();
            fds.extend(self.attach.poll_fds());
            let timeout = if trim_pending {
                PollTimeout::from(100u16)
            } else {
                PollTimeout::NONE
            };
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) => {
                    trim_memory();
                    trim_pending = false;
                    continue;
                }
                Ok(_) => {}
                Err(_) => continue,
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let accept = ready(&fds[0]);
            let sig = ready(&fds[1]);
            let outs: Vec<usize> = open
                .iter()
                .enumerate()
                .filter(|(k, _)| ready(&fds[k + 2]))
                .map(|(_, i)| *i)
                .collect();
            let attach_ready: Vec<bool> = fds[attach_at..].iter().map(ready).collect();
            drop(fds);
            for i in outs {
                self.read_output(i);
            }
            self.attach.handle(&attach_ready);
            if accept {
                self.handle_control();
                trim_pending = true;
            }
            if sig {
                while self.sigfd.read_signal().ok().flatten().is_some() {}
                exited = self.reap();
            }
        }
        self.finish();
    }

    /// Reads what is available from output `i` into the log.
    fn read_output(&mut self, i: usize) {
        let mut buf = [0u8; 32 * 1024];
        let mut out = Vec::new();
        // Bounded: at most 8 reads per wakeup so control stays responsive.
        for _ in 0..8 {
            let o = &mut self.outputs[i];
            match nix::unistd::read(&o.fd, &mut buf) {
                Ok(0) => {
                    o.open = false;
                    break;
                }
                Ok(n) => {
                    o.framer.push(&buf[..n], SystemTime::now(), &mut out);
                    let kind = if i == 0 {
                        crate::attach::FRAME_STDOUT
                    } else {
                        crate::attach::FRAME_STDERR
                    };
                    self.attach.broadcast(kind, &buf[..n]);
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                // EIO: the pty's last slave fd was closed.
                Err(_) => {
                    o.open = false;
                    break;
                }
            }
        }
        let _ = self.log.write(&out);
    }

    /// Reaps every exited child; true when the container process is gone.
    fn reap(&mut self) -> bool {
        let mut container_gone = false;
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) => {
                    if p == self.pid {
                        self.state.exit_code = Some(code);
                        container_gone = true;
                    }
                }
                Ok(WaitStatus::Signaled(p, s, _)) => {
                    if p == self.pid {
                        self.state.exit_code = Some(128 + s as i32);
                        container_gone = true;
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        container_gone
    }

    /// After the container exited: stop its leftovers, drain output, record.
    fn finish(&mut self) {
        self.state.finished_at = Some(SystemTime::now());
        self.sync = None;
        if !self.own_pid_ns {
            // Without its own PID namespace nothing kills the container's
            // other processes; do it, as containerd's shim does.
            for p in self.cgroup.procs().unwrap_or_default() {
                let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        // Drain: bounded to 50 rounds of 10 ms waiting for EOF.
        for _ in 0..50 {
            let open: Vec<usize> = (0..self.outputs.len())
                .filter(|i| self.outputs[*i].open)
                .collect();
            if open.is_empty() {
                break;
            }
            let mut fds: Vec<PollFd> = open
                .iter()
                .map(|i| PollFd::new(self.outputs[*i].fd.as_fd(), PollFlags::POLLIN))
                .collect();
            let n = nix::poll::poll(&mut fds, PollTimeout::from(10u16)).unwrap_or(0);
            drop(fds);
            if n == 0 {
                break;
            }
            for i in open {
                self.read_output(i);
            }
            self.reap();
        }
        let mut out = Vec::new();
        for o in &mut self.outputs {
            o.framer.finish(SystemTime::now(), &mut out);
        }
        let _ = self.log.write(&out);
        self.state.oom_killed = self.cgroup.stats().oom_kills > 0;
        self.state.status = Status::Stopped;
        self.save();
        let _ = std::fs::remove_file(self.dir.join(state::CONTROL_SOCKET));
        self.attach.close();
        let _ = std::fs::remove_file(self.dir.join(crate::attach::ATTACH_SOCKET));
        self.reap();
    }

    /// Serves one control connection: a command line, an answer line.
    fn handle_control(&mut self) {
        let Ok((conn, _)) = self.listener.accept() else {
            return;
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let mut reader = BufReader::new(&conn);
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let answer = match line.trim() {
            "start" => self.start(),
            "reopen_log" => self.log.reopen().map_err(|e| err("reopen log", e)),
            other => Err(format!("unknown command {other:?}")),
        };
        let text = match answer {
            Ok(()) => "ok\n".to_string(),
            Err(e) => format!("err {}\n", e.replace('\n', " ")),
        };
        let _ = (&conn).write_all(text.as_bytes());
    }

    fn start(&mut self) -> Result<(), String> {
        if self.state.status != Status::Created {
            return Err(format!("container is {}", self.state.status));
        }
        let Some(mut sync) = self.sync.take() else {
            return Err("container is not waiting to start".into());
        };
        sync.write_all(b"G")
            .map_err(|e| err("start container", e))?;
        let mut buf = vec![0u8; 4096];
        // EOF: the socket was closed by a successful execve (CLOEXEC).
        let n = sync.read(&mut buf).unwrap_or(0);
        if n > 1 && buf[0] == b'E' {
            let msg = String::from_utf8_lossy(&buf[1..n]).into_owned();
            self.state.message = Some(msg.clone());
            self.save();
            return Err(msg);
        }
        self.state.status = Status::Running;
        self.state.started_at = Some(SystemTime::now());
        self.save();
        Ok(())
    }
}

/// Reads the child's first message into `buf`: its length, and the pty
/// master when one came with it (SCM_RIGHTS, received close-on-exec).
pub(crate) fn recv_ready(sync: &UnixStream, buf: &mut [u8]) -> (usize, Option<OwnedFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let Ok(msg) = recvmsg::<()>(
        sync.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return (0, None);
    };
    let mut master = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these fds for us.
                master = fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    (msg.bytes, master)
}

/// In a fresh child: default signal dispositions and an empty mask, as a
/// new program expects (Rust ignores SIGPIPE; we block SIGCHLD).
pub(crate) fn child_prepare_signals() {
    for s in Signal::iterator() {
        if s == Signal::SIGKILL || s == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL installs no handler.
        unsafe {
            let _ = nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl);
        }
    }
    let _ = SigSet::empty().thread_set_mask();
}

/// Reads and parses a `config.json`, and says whether it has a
/// `linux.seccomp`, which is left out of the returned spec: the library
/// sends it compiled (`receive_seccomp`). The whole file is read, then
/// parsed in one pass over the bytes (`Spec::load` parses through an
/// `io::Read`, a byte at a time with line/column tracking, and
/// RuntimeDefault's `linux.seccomp` alone is ~11 KiB).
fn load_spec(path: &Path) -> Result<(oci_spec::runtime::Spec, bool), String> {
    let mut bytes = std::fs::read(path).map_err(|e| lower(&e.to_string()))?;
    let seccomp = crate::seccomp::take_spec_seccomp(&mut bytes);
    let spec = serde_json::from_slice(&bytes).map_err(|e| lower(&e.to_string()))?;
    Ok((spec, seccomp))
}

/// Reads the filter of `linux.seccomp` when the spec has one, compiled by
/// the runtime library (`seccomp::bundle_filter`) and sent on stdin, before
/// the clone (the child inherits it): the program and the bytes to keep in
/// the state dir for exec. A spec with a filter and nothing valid on stdin
/// is an error, never an unfiltered container.
fn receive_seccomp(has: bool) -> Result<Option<(crate::seccomp::Filters, Vec<u8>)>, String> {
    if !has {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| err("read seccomp filter", e))?;
    let f = crate::seccomp::Filters::from_bytes(&bytes).map_err(|e| e.to_string())?;
    Ok(Some((f, bytes)))
}

/// `exec` mode: see the module doc.
fn exec_main(dir: &Path) -> i32 {
    if let Err(e) = crate::exec_helper::block_signals() {
        eprintln!("cria-monitor exec: {e}");
        return 126;
    }
    match exec_in(dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cria-monitor exec: {e}");
            126
        }
    }
}

const NS_ORDER: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    // mnt last: after it, host paths (/proc, /sys/fs/cgroup) are gone.
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn exec_in(dir: &Path) -> Result<i32, String> {
    use std::os::unix::fs::MetadataExt;
    let st = ContainerState::load(dir).map_err(|e| err("read status.json", e))?;
    if st.status != Status::Running {
        return Err(format!("container {} is {}", st.id, st.status));
    }
    // The container's own filter, compiled at create; read while the state
    // dir is still visible (before setns into the container's mounts).
    let seccomp = match std::fs::read(dir.join(crate::seccomp::FILE)) {
        Ok(b) => Some(crate::seccomp::Filters::from_bytes(&b).map_err(|e| e.to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(err("read seccomp.bpf", e)),
    };
    let process: oci_spec::runtime::Process = match crate::exec_stream::process_from_env() {
        Some(p) => p?,
        None => {
            let mut json = Vec::new();
            std::io::stdin()
                .read_to_end(&mut json)
                .map_err(|e| err("read process", e))?;
            serde_json::from_slice(&json).map_err(|e| err("parse process", e))?
        }
    };
    // Open every namespace first (the pid's /proc goes away after setns mnt).
    let mut nss = Vec::new();
    for (name, flag) in NS_ORDER {
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let mine = format!("/proc/self/ns/{name}");
        let (a, b) = (std::fs::metadata(&theirs), std::fs::metadata(&mine));
        let (Ok(a), Ok(b)) = (a, b) else {
            return Err(format!("container {} has no process {}", st.id, st.pid));
        };
        if a.ino() != b.ino() || a.dev() != b.dev() {
            let f = std::fs::File::open(&theirs).map_err(|e| err(&format!("open {theirs}"), e))?;
            nss.push((f, *flag, name));
        }
    }
    // v1 hierarchies now (single-threaded: the cheap self-move; the child
    // inherits them); the cgroup2 one by cloning the child into it below,
    // through a descriptor opened while host paths are still visible.
    let mut cg2 = None;
    if let Some(p) = &st.cgroup_path {
        let cg = cgroup::open(Path::new(cgroup::DEFAULT_ROOT), p).map_err(|e| e.to_string())?;
        cg.join_self(true)
            .map_err(|e| format!("join cgroup: {e}"))?;
        cg2 = cg
            .clone_into_dir()
            .map(std::fs::File::open)
            .transpose()
            .map_err(|e| err("open cgroup2 dir", e))?;
    }
    for (f, flag, name) in &nss {
        nix::sched::setns(f, *flag).map_err(|e| err(&format!("setns {name}"), e.desc()))?;
    }
    // In the container's mounts now: a tty exec's pty comes from its devpts.
    crate::exec_stream::hand_over_terminal()?;
    // The pid namespace applies to children only: fork into it.
    // SAFETY: the exec helper is single-threaded; the child only sets itself
    // up and execs.
    let (ret, born_in_cgroup2) =
        unsafe { crate::cgroup::clone_into_cgroup(0, cg2.as_ref()) }.map_err(|e| err("fork", e))?;
    match ret {
        0 => {
            if let (Some(dir), false) = (&cg2, born_in_cgroup2) {
                if let Err(e) = cgroup::join_cgroup2_at(dir) {
                    eprintln!("cria-monitor exec: join cgroup: {e}");
                    std::process::exit(126);
                }
            }
            drop(cg2);
            child_prepare_signals();
            let code = match exec_child(&process, seccomp) {
                Ok(never) => match never {},
                Err(e) => {
                    eprintln!("cria-monitor exec: {e}");
                    if e.contains("no such file") || e.contains("not found") {
                        127
                    } else {
                        126
                    }
                }
            };
            std::process::exit(code);
        }
        // Reaped here even when stopped: see exec_helper.rs.
        child => crate::exec_helper::wait_process(Pid::from_raw(child as i32)),
    }
}

fn exec_child(
    p: &oci_spec::runtime::Process,
    seccomp: Option<crate::seccomp::Filters>,
) -> Result<std::convert::Infallible, String> {
    crate::exec_stream::take_terminal()?;
    crate::exec_helper::own_process_group()?;
    let seccomp = init::seccomp_before_user(p, seccomp)?;
    init::set_user_and_caps(p)?;
    // Dies with its parent should the helper be SIGKILLed (a fallback:
    // exec_helper.rs); set after setuid, which clears it.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| err("pdeathsig", e.desc()))?;
    let cwd = p.cwd();
    if !cwd.as_os_str().is_empty() {
        nix::unistd::chdir(cwd).map_err(|e| err(&format!("chdir {cwd:?}"), e.desc()))?;
    }
    if p.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| err("no_new_privs", e.desc()))?;
    }
    let plan = init::exec_plan(p)?.with_seccomp(seccomp);
    init::close_other_fds();
    plan.exec()
}
