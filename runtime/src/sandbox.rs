//! Pod sandboxes: pinned namespaces, no process per pod.
//!
//! A short-lived helper (`cria-monitor sandbox`, fork+exec like every
//! process we start) unshares the pod's network, IPC and UTS namespaces,
//! sets the hostname, brings `lo` up, bind-mounts its `/proc/self/ns/*` onto
//! files under the state dir and exits. The bind mounts keep the namespaces
//! alive with no process at all: faster to start and lighter than a pause
//! container (no image, no monitor, no RSS per pod). Only a pod-wide PID
//! namespace needs a live process (a PID namespace whose init died accepts
//! no new members), so then the helper leaves a pause behind: PID 1 of the
//! new namespace, which reaps orphans and sleeps. The pause is born in the
//! pod's cgroup, in a leaf of its own (`<pod cgroup>/<sandbox id>`, see
//! [`pause_cgroup_path`]), so the pod's accounting and limits cover it and
//! the pod's cgroup finds it when criad's records do not (decision 19).
//!
//! The pin files live on private bind mounts (`<state>/netns`,
//! `<state>/pods`), so the nsfs mounts never propagate into other mount
//! namespaces (where they would keep a removed pod's namespaces alive).

use crate::cgroup;
use crate::container::{check_id, mkdir_private};
use crate::mounts::lower;
use crate::{Runtime, RuntimeError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a pod sandbox needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxCreate {
    /// Sandbox id.
    pub id: String,
    /// Hostname set in the new UTS namespace.
    pub hostname: String,
    /// A new network namespace with `lo` up (false: the host's).
    pub new_network: bool,
    /// A new IPC namespace (false: the host's).
    pub new_ipc: bool,
    /// A new UTS namespace (false: the host's; hostname is then not set).
    pub new_uts: bool,
    /// A pod-wide PID namespace held by a pause process.
    pub pod_pid: bool,
    /// Size in bytes of the pod's `/dev/shm` tmpfs (mounted at
    /// `<state>/pods/<id>/shm`); `None` = no pod shm.
    pub shm_size: Option<u64>,
    /// Pod cgroup (cgroupfs path, e.g. `/kubepods/pod<uid>`) created in every
    /// hierarchy and removed with the sandbox.
    pub cgroup_parent: Option<String>,
}

/// The paths of a sandbox's namespaces, for `linux.namespaces[].path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxNamespaces {
    /// `<state>/netns/<id>` when the pod has its own netns.
    pub network: Option<PathBuf>,
    /// `<state>/pods/<id>/ns/ipc`.
    pub ipc: Option<PathBuf>,
    /// `<state>/pods/<id>/ns/uts`.
    pub uts: Option<PathBuf>,
    /// `<state>/pods/<id>/ns/pid` (held alive by the pause).
    pub pid: Option<PathBuf>,
    /// Host pid of the pause (PID 1 of the pod PID namespace).
    pub pause_pid: Option<i32>,
    /// The pod's `/dev/shm` tmpfs, to bind into every container.
    pub shm: Option<PathBuf>,
}

/// What is recorded on disk for `load`, `stop` and `remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    request: SandboxCreate,
    namespaces: SandboxNamespaces,
    /// The cgroupfs root the pod cgroup was made under (records older than
    /// the field: the default root).
    #[serde(default = "default_cgroup_root")]
    cgroup_root: PathBuf,
}

fn default_cgroup_root() -> PathBuf {
    PathBuf::from(cgroup::DEFAULT_ROOT)
}

/// The helper's request (argv) and answer (stdout).
#[derive(Debug, Serialize, Deserialize)]
struct HelperRequest {
    request: SandboxCreate,
    paths: SandboxNamespaces,
    /// The cgroup the pause is born in: (cgroupfs root, cgroup path).
    pause_cgroup: Option<(PathBuf, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
enum HelperReply {
    Ok { pause_pid: Option<i32> },
    Err(String),
}

const RECORD: &str = "sandbox.json";

/// argv[0] of the sandbox helper, and so of the pause it leaves behind (what
/// the pod's containers see as their PID 1's command line).
pub const PAUSE_ARGV0: &str = "cria-pause";

/// The pause's cgroup: a leaf named by the sandbox id under the pod cgroup,
/// beside the containers' `<pod cgroup>/<container id>` leaves (where
/// containerd's pause container sits too). Not the pod cgroup itself: on
/// cgroup v2 a cgroup with controllers enabled for its children holds no
/// process (decision 19).
pub fn pause_cgroup_path(pod_cgroup: &str, sandbox_id: &str) -> String {
    format!("{}/{sandbox_id}", pod_cgroup.trim_end_matches('/'))
}

/// Makes the pod cgroup in every hierarchy under `root`, then the pause's
/// leaf in it when the pod has a pause; returns the leaf's path.
fn create_cgroups(root: &Path, req: &SandboxCreate) -> Result<Option<String>, RuntimeError> {
    let Some(parent) = &req.cgroup_parent else {
        return Ok(None);
    };
    cgroup::open(root, parent)?.create()?;
    if !req.pod_pid {
        return Ok(None);
    }
    let leaf = pause_cgroup_path(parent, &req.id);
    cgroup::open(root, &leaf)?.create()?;
    Ok(Some(leaf))
}

/// SIGKILLs every process in the pause's cgroup (the pause, and anything
/// that joined it); returns their pids. This finds a pause whose pid was
/// never recorded (criad died between the helper's answer and the record).
fn kill_pause_cgroup(root: &Path, req: &SandboxCreate) -> Result<Vec<i32>, RuntimeError> {
    let (Some(parent), true) = (&req.cgroup_parent, req.pod_pid) else {
        return Ok(Vec::new());
    };
    let pids = cgroup::open(root, &pause_cgroup_path(parent, &req.id))?.procs()?;
    for pid in &pids {
        // It may exit meanwhile: ESRCH is fine.
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    Ok(pids)
}

/// Removes the pause's leaf, then the pod cgroup (missing is fine).
fn remove_cgroups(root: &Path, req: &SandboxCreate) -> Result<(), RuntimeError> {
    let Some(parent) = &req.cgroup_parent else {
        return Ok(());
    };
    if req.pod_pid {
        cgroup::open(root, &pause_cgroup_path(parent, &req.id))?.remove()?;
    }
    cgroup::open(root, parent)?.remove()
}

fn pod_dir(rt: &Runtime, id: &str) -> PathBuf {
    rt.config.state_root.join("pods").join(id)
}

fn paths_for(rt: &Runtime, req: &SandboxCreate) -> SandboxNamespaces {
    let pod = pod_dir(rt, &req.id);
    SandboxNamespaces {
        network: req
            .new_network
            .then(|| rt.config.state_root.join("netns").join(&req.id)),
        ipc: req.new_ipc.then(|| pod.join("ns/ipc")),
        uts: req.new_uts.then(|| pod.join("ns/uts")),
        pid: req.pod_pid.then(|| pod.join("ns/pid")),
        pause_pid: None,
        shm: req.shm_size.map(|_| pod.join("shm")),
    }
}

/// Mount points in a mountinfo text (field 5, octal escapes undone) that
/// are `dir` itself (`at`) or lie under it (`under`).
fn mount_points(info: &str, dir: &Path) -> (usize, Vec<PathBuf>) {
    let (mut at, mut under) = (0, Vec::new());
    for m in info.lines().filter_map(|l| l.split(' ').nth(4)) {
        let m = PathBuf::from(unescape_mountinfo(m));
        if m == dir {
            at += 1;
        } else if m.starts_with(dir) {
            under.push(m);
        }
    }
    (at, under)
}

/// Undoes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_mountinfo() -> Result<String, RuntimeError> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RuntimeError::io("read", "/proc/self/mountinfo", e))
}

/// Serialises `ensure_private_mount`: its look-then-bind is not atomic, and
/// concurrent first creates on a fresh state root each bound the dir, stacking
/// binds. Pins and shm made on the lower bind were then hidden under the upper
/// one, where `remove` could not unmount them, and unlinking their files
/// failed with EBUSY (they were still mount points in our namespace).
static PRIVATE_MOUNT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes `dir` a private bind mount of itself unless it is a mount already.
fn ensure_private_mount(dir: &Path) -> Result<(), RuntimeError> {
    // A poisoned lock only means another create panicked; the mount state
    // is re-read from the kernel below, so the guard is still good.
    let _guard = PRIVATE_MOUNT_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    mkdir_private(dir)?;
    let canon = std::fs::canonicalize(dir).map_err(|e| RuntimeError::io("resolve", dir, e))?;
    let (at, _) = mount_points(&read_mountinfo()?, &canon);
    if at == 0 {
        mount(
            Some(&canon),
            &canon,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| RuntimeError::sys(format!("bind {canon:?}"), e))?;
    }
    mount(
        None::<&str>,
        &canon,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| RuntimeError::sys(format!("make {canon:?} private"), e))
}

pub(crate) fn create(rt: &Runtime, req: &SandboxCreate) -> Result<SandboxNamespaces, RuntimeError> {
    check_id(&req.id)?;
    let pod = pod_dir(rt, &req.id);
    if pod.exists() {
        return Err(RuntimeError::AlreadyExists(req.id.clone()));
    }
    ensure_private_mount(&rt.config.state_root.join("netns"))?;
    ensure_private_mount(&rt.config.state_root.join("pods"))?;
    mkdir_private(&pod.join("ns"))?;
    let mut ns = paths_for(rt, req);
    // Record first: a failure part-way is then undone by `remove`.
    let save = |ns: &SandboxNamespaces| {
        let rec = Record {
            request: req.clone(),
            namespaces: ns.clone(),
            cgroup_root: rt.pod_cgroup_root().to_path_buf(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(std::io::Error::other);
        bytes
            .and_then(|b| crate::state::write_atomic(&pod, RECORD, &b))
            .map_err(|e| RuntimeError::io("write", pod.join(RECORD), e))
    };
    let r = save(&ns)
        .and_then(|()| create_parts(rt, req, &mut ns))
        .and_then(|()| save(&ns));
    match r {
        Ok(()) => Ok(ns),
        Err(e) => {
            let _ = remove(rt, &req.id);
            Err(e)
        }
    }
}

fn create_parts(
    rt: &Runtime,
    req: &SandboxCreate,
    ns: &mut SandboxNamespaces,
) -> Result<(), RuntimeError> {
    // The pod cgroup and the pause's leaf exist before the pause is cloned
    // into them; a failure later removes them with the rest (`remove`).
    let root = rt.pod_cgroup_root();
    let pause_cgroup = create_cgroups(root, req)?.map(|leaf| (root.to_path_buf(), leaf));
    if let (Some(size), Some(shm)) = (req.shm_size, &ns.shm) {
        mkdir_private(shm)?;
        mount(
            Some("shm"),
            shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={size}").as_str()),
        )
        .map_err(|e| RuntimeError::sys(format!("mount shm {shm:?}"), e))?;
    }
    if !(req.new_network || req.new_ipc || req.new_uts || req.pod_pid) {
        return Ok(());
    }
    let helper = HelperRequest {
        request: req.clone(),
        paths: ns.clone(),
        pause_cgroup,
    };
    let json = serde_json::to_string(&helper).map_err(|e| RuntimeError::InvalidArgument {
        field: "sandbox".into(),
        reason: e.to_string(),
    })?;
    let monitor_err = |message: String| RuntimeError::Monitor {
        id: req.id.clone(),
        message,
    };
    // The pause is a fork of this helper and PID 1 of the pod's containers,
    // which read its /proc/1/cmdline and environ: so a path-free argv[0],
    // the request on stdin rather than in argv, and no environment.
    let mut child = Command::new(&rt.config.monitor_path)
        .arg0(PAUSE_ARGV0)
        .arg("sandbox")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| monitor_err(format!("spawn sandbox helper: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows up as the helper's "bad request" answer.
        let _ = stdin.write_all(json.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| monitor_err(format!("wait for sandbox helper: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<HelperReply>(text.trim()) {
        Ok(HelperReply::Ok { pause_pid }) => {
            ns.pause_pid = pause_pid;
            Ok(())
        }
        Ok(HelperReply::Err(message)) => Err(RuntimeError::Setup {
            id: req.id.clone(),
            message,
        }),
        Err(_) => Err(monitor_err(format!(
            "sandbox helper exited without an answer: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The sandbox's record; `NotFound` when it has none.
fn read_record(rt: &Runtime, id: &str) -> Result<Record, RuntimeError> {
    check_id(id)?;
    let p = pod_dir(rt, id).join(RECORD);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RuntimeError::NotFound(id.into()))
        }
        Err(e) => return Err(RuntimeError::io("read", p, e)),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::io("parse", &p, std::io::Error::other(e)))
}

pub(crate) fn load(rt: &Runtime, id: &str) -> Result<SandboxNamespaces, RuntimeError> {
    Ok(read_record(rt, id)?.namespaces)
}

/// Ids of the sandboxes with a dir under `<state>/pods` (recovery compares
/// them with its pod records to find the ones a crash left behind).
pub(crate) fn list(rt: &Runtime) -> Result<Vec<String>, RuntimeError> {
    let dir = rt.config.state_root.join("pods");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::io("read dir", dir, e)),
    };
    Ok(rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| check_id(id).is_ok())
        .collect())
}

/// Kills the pause: by its recorded pid while that pid still holds the
/// pod's PID namespace (not a reused pid; also a pause made before pauses
/// had a cgroup), and whatever runs in the pause's cgroup.
fn kill_pause(
    root: &Path,
    req: &SandboxCreate,
    ns: &SandboxNamespaces,
) -> Result<(), RuntimeError> {
    if let (Some(pid), Some(pin)) = (ns.pause_pid, &ns.pid) {
        if same_pid_ns(pid, pin) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    kill_pause_cgroup(root, req).map(drop)
}

/// How long `stop` waits for a killed pause to leave its cgroup.
const PAUSE_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// StopPodSandbox's part: kills the pause (the pod's PID namespace dies
/// with it) and waits until its cgroup is empty; namespaces, pins and
/// cgroups stay for `remove`. Idempotent; an unknown id is success.
pub(crate) fn stop(rt: &Runtime, id: &str) -> Result<(), RuntimeError> {
    let rec = match read_record(rt, id) {
        Ok(rec) => rec,
        Err(RuntimeError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let (root, req) = (&rec.cgroup_root, &rec.request);
    kill_pause(root, req, &rec.namespaces)?;
    let deadline = std::time::Instant::now() + PAUSE_EXIT_WAIT;
    // Bounded: SIGKILLed tasks leave the cgroup within milliseconds.
    while !kill_pause_cgroup(root, req)?.is_empty() {
        if std::time::Instant::now() >= deadline {
            return Err(RuntimeError::Timeout {
                id: id.into(),
                op: "the killed pause to exit".into(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

/// Unmounts and unlinks a pin file; missing is fine.
fn unpin(path: &Path) -> Result<(), RuntimeError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(RuntimeError::sys(format!("unmount {path:?}"), e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("remove", path, e)),
    }
}

/// True if `pid`'s PID namespace is the one pinned at `pin`.
fn same_pid_ns(pid: i32, pin: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(format!("/proc/{pid}/ns/pid_for_children")),
        std::fs::metadata(format!("/proc/{pid}/ns/pid")),
        std::fs::metadata(pin),
    ) {
        (_, Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

pub(crate) fn remove(rt: &Runtime, id: &str) -> Result<(), RuntimeError> {
    check_id(id)?;
    let pod = pod_dir(rt, id);
    let rec: Option<Record> = std::fs::read(pod.join(RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // Without a record, remove what the layout says may exist.
    let (req, ns, cgroup_root) = match rec {
        Some(r) => (r.request, r.namespaces, r.cgroup_root),
        None => {
            let req = SandboxCreate {
                id: id.into(),
                new_network: true,
                new_ipc: true,
                new_uts: true,
                pod_pid: true,
                shm_size: Some(0),
                ..Default::default()
            };
            let ns = paths_for(rt, &req);
            (
                SandboxCreate {
                    shm_size: None,
                    ..req
                },
                ns,
                rt.pod_cgroup_root().to_path_buf(),
            )
        }
    };
    kill_pause(&cgroup_root, &req, &ns)?;
    for p in [&ns.network, &ns.ipc, &ns.uts, &ns.pid]
        .into_iter()
        .flatten()
    {
        unpin(p)?;
    }
    if let Some(shm) = &ns.shm {
        match umount2(shm, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(RuntimeError::sys(format!("unmount {shm:?}"), e)),
        }
    }
    // The cgroups before the record: if the killed pause has not left yet
    // (EBUSY past the retries), a retry still knows where they are.
    remove_cgroups(&cgroup_root, &req)?;
    match std::fs::remove_dir_all(&pod) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            // remove_dir_all does not say which entry failed; a mount still
            // under the pod dir is what makes it busy, so name that one.
            let busy = std::fs::canonicalize(&pod)
                .ok()
                .zip(read_mountinfo().ok())
                .and_then(|(dir, info)| mount_points(&info, &dir).1.into_iter().next());
            return Err(match busy {
                Some(m) => RuntimeError::io("remove mount point", m, e),
                None => RuntimeError::io("remove", pod, e),
            });
        }
    }
    Ok(())
}

/// `cria-monitor sandbox` with the JSON request on stdin: runs in the
/// helper process.
pub(crate) fn helper_main() -> i32 {
    let mut json = String::new();
    let parsed = std::io::stdin()
        .read_to_string(&mut json)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str::<HelperRequest>(&json).map_err(|e| e.to_string()));
    let reply = match parsed {
        Err(e) => HelperReply::Err(format!("bad request: {e}")),
        Ok(h) => match helper(&h) {
            Ok(pause_pid) => HelperReply::Ok { pause_pid },
            Err(e) => {
                // Undo pins made so far (the library also calls remove).
                for p in [&h.paths.network, &h.paths.ipc, &h.paths.uts, &h.paths.pid]
                    .into_iter()
                    .flatten()
                {
                    let _ = unpin(p);
                }
                HelperReply::Err(e)
            }
        },
    };
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    i32::from(!matches!(reply, HelperReply::Ok { .. }))
}

fn pin(ns_file: &Path, target: &Path) -> Result<(), String> {
    if let Some(d) = target.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {d:?}: {e}"))?;
    }
    std::fs::File::create(target).map_err(|e| format!("create {target:?}: {e}"))?;
    mount(
        Some(ns_file),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("pin {ns_file:?} at {target:?}: {}", lower(e.desc())))
}

fn helper(h: &HelperRequest) -> Result<Option<i32>, String> {
    let r = &h.request;
    let mut flags = CloneFlags::empty();
    for (on, f) in [
        (r.new_network, CloneFlags::CLONE_NEWNET),
        (r.new_ipc, CloneFlags::CLONE_NEWIPC),
        (r.new_uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare: {}", lower(e.desc())))?;
    if r.new_uts && !r.hostname.is_empty() {
        nix::unistd::sethostname(&r.hostname)
            .map_err(|e| format!("sethostname {:?}: {}", r.hostname, lower(e.desc())))?;
    }
    if r.new_network {
        loopback_up().map_err(|e| format!("bring up lo: {}", lower(&e.to_string())))?;
    }
    for (p, name) in [
        (&h.paths.network, "net"),
        (&h.paths.ipc, "ipc"),
        (&h.paths.uts, "uts"),
    ] {
        if let Some(p) = p {
            pin(Path::new(&format!("/proc/self/ns/{name}")), p)?;
        }
    }
    let Some(pid_pin) = &h.paths.pid else {
        return Ok(None);
    };
    // The pause: PID 1 of a new PID namespace, in the pod's other namespaces,
    // with a mount namespace of its own (see `isolate_pause`). It reports
    // its set-up over a pipe: "ok" or the failed step.
    let pause_root = pid_pin.with_file_name("pause-root");
    mkdir_private(&pause_root).map_err(|e| e.to_string())?;
    // The pause lives in the pod's cgroup (its own leaf), never in criad's:
    // born in the cgroup2 directory, it joins the v1 hierarchies itself.
    let cg = match &h.pause_cgroup {
        Some((root, path)) => Some(cgroup::open(root, path).map_err(|e| e.to_string())?),
        None => None,
    };
    let cg2 = cg
        .as_ref()
        .and_then(|c| c.clone_into_dir())
        .map(|d| std::fs::File::open(d).map_err(|e| format!("open cgroup {d:?}: {e}")))
        .transpose()?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("pipe: {}", lower(e.desc())))?;
    // SAFETY: the helper is single-threaded.
    let (ret, born_in_cgroup2) = unsafe {
        cgroup::clone_into_cgroup(
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64,
            cg2.as_ref(),
        )
    }
    .map_err(|e| format!("clone pause: {e}"))?;
    if ret == 0 {
        drop(report_r);
        drop(cg2);
        pause(&pause_root, cg.as_deref(), born_in_cgroup2, report_w);
    }
    drop(report_w);
    let pid = ret as i32;
    let kill_pause = || {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    };
    let mut report = String::new();
    let _ = std::fs::File::from(report_r).read_to_string(&mut report);
    if report != "ok" {
        kill_pause();
        return Err(if report.is_empty() {
            "pause exited during set-up".into()
        } else {
            format!("pause: {report}")
        });
    }
    pin(Path::new(&format!("/proc/{pid}/ns/pid")), pid_pin).inspect_err(|_| kill_pause())?;
    Ok(Some(pid))
}

/// Cuts the pause off from the host. The pod's containers see it as their
/// PID 1, so its /proc/1/{root,cwd,exe,environ} and the process itself
/// must lead nowhere even for a container holding CAP_SYS_PTRACE: its root
/// is an empty read-only tmpfs in a private mount namespace (made by the
/// clone), it holds no capability (bounding set included) and sets
/// no_new_privs, and it is not dumpable.
fn isolate_pause(root: &Path) -> Result<(), String> {
    let sys = |what: &str, e: nix::errno::Errno| format!("{what}: {}", lower(e.desc()));
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| sys("make / private", e))?;
    mount(
        Some("pause"),
        root,
        Some("tmpfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=0555"),
    )
    .map_err(|e| sys(&format!("mount tmpfs on {root:?}"), e))?;
    nix::unistd::chdir(root).map_err(|e| sys(&format!("chdir {root:?}"), e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| sys("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| sys("detach the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| sys("chdir /", e))?;
    // SAFETY: plain prctls on ourselves.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return Err(format!("prctl: {}", std::io::Error::last_os_error()));
        }
    }
    // Bounding first: dropping from it needs CAP_SETPCAP, still effective.
    for set in [
        caps::CapSet::Bounding,
        caps::CapSet::Ambient,
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| format!("drop {set:?} capabilities: {e}"))?;
    }
    Ok(())
}

/// The oom_score_adj containerd gives a pod's sandbox: the pause is in the
/// pod's memory cgroup, and an OOM kill of it would end the pod's PID
/// namespace with every process in it.
const PAUSE_OOM_SCORE_ADJ: i32 = -998;

/// Lowers our oom_score_adj to [`PAUSE_OOM_SCORE_ADJ`] (never raises it).
/// Best effort: lowering needs CAP_SYS_RESOURCE, which not every root has;
/// the inherited value stays then.
fn protect_from_oom() {
    let path = "/proc/self/oom_score_adj";
    let current = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if current.is_some_and(|c| c > PAUSE_OOM_SCORE_ADJ) {
        let _ = std::fs::write(path, PAUSE_OOM_SCORE_ADJ.to_string());
    }
}

/// The pause process: joins its cgroup (`born_in_cgroup2`: clone3 put it
/// in the cgroup2 directory already), isolates itself, reports on
/// `report`, then reaps orphans of the pod's PID namespace, forever.
fn pause(
    root: &Path,
    cgroup: Option<&dyn cgroup::Cgroup>,
    born_in_cgroup2: bool,
    report: std::os::fd::OwnedFd,
) -> ! {
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto stdio slots.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // Cgroups first: the host's cgroupfs is out of sight once isolated.
    let joined = cgroup.map_or(Ok(()), |cg| {
        cg.join_self(born_in_cgroup2)
            .map_err(|e| format!("join cgroup: {e}"))
    });
    protect_from_oom();
    let result = joined.and_then(|()| isolate_pause(root));
    let answer = match &result {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let _ = std::fs::File::from(report).write_all(answer.as_bytes());
    if result.is_err() {
        // SAFETY: leaving the forked child without running the parent's
        // exit handlers.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: closes every fd above stdio; nothing else is in use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let _ = set.thread_block();
    loop {
        while let Ok(s) =
            nix::sys::wait::waitpid(None::<Pid>, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        let _ = set.wait();
    }
}

/// `ip link set lo up` in the current network namespace.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ioctls on a socket with a properly initialised ifreq.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
76 27 254:0 /s/pods /s/pods rw,relatime - ext4 /dev/vda rw
85 76 254:0 /s/pods /s/pods rw,relatime - ext4 /dev/vda rw
53 85 0:43 / /s/pods/a/shm rw - tmpfs shm rw
56 85 0:4 ipc:[1] /s/pods/a/ns/ipc rw - nsfs nsfs rw
57 27 0:4 / /s/pods2 rw - tmpfs t rw
58 27 0:4 / /s/with\\040space rw - tmpfs t rw
";

    #[test]
    fn mount_points_counts_stacked_mounts_and_lists_those_under() {
        let (at, under) = mount_points(INFO, Path::new("/s/pods"));
        assert_eq!(at, 2);
        assert_eq!(
            under,
            [
                PathBuf::from("/s/pods/a/shm"),
                PathBuf::from("/s/pods/a/ns/ipc")
            ]
        );
        assert_eq!(mount_points(INFO, Path::new("/s/with space")).0, 1);
        assert_eq!(mount_points(INFO, Path::new("/s/none")), (0, vec![]));
    }

    fn pod(id: &str, parent: Option<&str>, pod_pid: bool) -> SandboxCreate {
        SandboxCreate {
            id: id.into(),
            pod_pid,
            cgroup_parent: parent.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_pause_cgroup_is_a_leaf_named_by_the_sandbox_under_the_pod_cgroup() {
        assert_eq!(
            pause_cgroup_path("/kubepods/podu", "s1"),
            "/kubepods/podu/s1"
        );
        assert_eq!(
            pause_cgroup_path("/kubepods/podu/", "s1"),
            "/kubepods/podu/s1"
        );
    }

    #[test]
    fn v2_pod_cgroup_is_an_inner_node_and_the_pause_gets_a_leaf() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let leaf = create_cgroups(root.path(), &pod("s1", Some("/kp/podu"), true)).unwrap();
        assert_eq!(leaf.as_deref(), Some("/kp/podu/s1"));
        let pod_dir = root.path().join("kp/podu");
        // Controllers are enabled for the pod's children, so on v2 the pod
        // cgroup itself can hold no process: the pause is born in its leaf.
        assert_eq!(
            std::fs::read_to_string(pod_dir.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        let cg = cgroup::open(root.path(), "/kp/podu/s1").unwrap();
        assert_eq!(cg.clone_into_dir(), Some(pod_dir.join("s1").as_path()));
        assert!(pod_dir.join("s1").is_dir());
        // A pod without a pod PID namespace has no pause and no leaf.
        let none = create_cgroups(root.path(), &pod("s2", Some("/kp/podv"), false)).unwrap();
        assert_eq!(none, None);
        assert!(root.path().join("kp/podv").is_dir());
        assert!(!root.path().join("kp/podv/s2").exists());
        assert_eq!(
            create_cgroups(root.path(), &pod("s3", None, true)).unwrap(),
            None
        );
    }

    #[test]
    fn v1_pause_leaf_in_every_hierarchy_and_the_hybrid_cgroup2_mount() {
        let root = tempfile::tempdir().unwrap();
        for d in ["cpuset", "memory", "pids", "unified"] {
            std::fs::create_dir(root.path().join(d)).unwrap();
        }
        std::fs::write(root.path().join("unified/cgroup.controllers"), "hugetlb").unwrap();
        std::fs::write(root.path().join("cpuset/cpuset.cpus"), "0-1").unwrap();
        std::fs::write(root.path().join("cpuset/cpuset.mems"), "0").unwrap();
        create_cgroups(root.path(), &pod("s1", Some("podu"), true)).unwrap();
        for d in ["cpuset", "memory", "pids", "unified"] {
            assert!(root.path().join(d).join("podu/s1").is_dir(), "{d}");
        }
        // cpuset levels inherit cpus and mems, or joining them would fail.
        assert_eq!(
            std::fs::read_to_string(root.path().join("cpuset/podu/s1/cpuset.cpus")).unwrap(),
            "0-1"
        );
        let cg = cgroup::open(root.path(), &pause_cgroup_path("podu", "s1")).unwrap();
        let unified = root.path().join("unified/podu/s1");
        assert_eq!(cg.clone_into_dir(), Some(unified.as_path()));
    }

    #[test]
    fn remove_cgroups_takes_the_pause_leaf_then_the_pod_cgroup() {
        let root = tempfile::tempdir().unwrap();
        for d in ["memory", "pids"] {
            std::fs::create_dir(root.path().join(d)).unwrap();
        }
        let req = pod("s1", Some("/kp/podu"), true);
        create_cgroups(root.path(), &req).unwrap();
        remove_cgroups(root.path(), &req).unwrap();
        for d in ["memory", "pids"] {
            assert!(!root.path().join(d).join("kp/podu").exists(), "{d}");
            assert!(root.path().join(d).join("kp").is_dir(), "{d}: parent kept");
        }
        // Idempotent: nothing left to remove is success.
        remove_cgroups(root.path(), &req).unwrap();
        assert!(kill_pause_cgroup(root.path(), &req).unwrap().is_empty());
    }

    #[test]
    fn records_from_before_the_cgroup_root_use_the_default_root() {
        let old = r#"{"request":{"id":"s1","hostname":"h","new_network":true,
            "new_ipc":true,"new_uts":true,"pod_pid":true,"shm_size":null,
            "cgroup_parent":"/p"},"namespaces":{"network":null,"ipc":null,
            "uts":null,"pid":"/s/pods/s1/ns/pid","pause_pid":42,"shm":null}}"#;
        let rec: Record = serde_json::from_str(old).unwrap();
        assert_eq!(rec.cgroup_root, Path::new(cgroup::DEFAULT_ROOT));
        assert_eq!(rec.namespaces.pause_pid, Some(42));
    }

    #[test]
    fn unescape_mountinfo_decodes_octal_and_keeps_the_rest() {
        assert_eq!(unescape_mountinfo(r"a\040b\011c\134d"), "a b\tc\\d");
        assert_eq!(unescape_mountinfo(r"trail\04"), r"trail\04");
        assert_eq!(unescape_mountinfo(r"x\999"), r"x\999");
    }
}
