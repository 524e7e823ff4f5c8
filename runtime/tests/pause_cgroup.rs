//! The pause of a pod PID namespace lives in the pod's cgroup (a leaf of its
//! own, `<pod cgroup>/<sandbox id>`), not in its creator's: on this host's
//! v1 hierarchies and hybrid cgroup2 mount, and on that cgroup2 mount used as
//! a pure v2 root. Stopping the sandbox kills it, removing it removes the
//! leaf and the pod cgroup, and a pause whose pid never made it into the
//! record is still found (through its cgroup) and killed.

mod common;

use common::{wait_until, Fixture};
use cria_runtime::sandbox::pause_cgroup_path;
use cria_runtime::{Runtime, SandboxCreate, SandboxNamespaces};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// The hybrid host's cgroup2 mount, a v2 root of its own (`hugetlb`).
const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

/// A pod with its own PID namespace (so a pause) under `parent`.
fn pod(id: &str, parent: &str) -> SandboxCreate {
    SandboxCreate {
        id: id.into(),
        hostname: "pausecg".into(),
        new_network: true,
        new_ipc: true,
        new_uts: true,
        pod_pid: true,
        shm_size: None,
        cgroup_parent: Some(parent.into()),
    }
}

/// Removes the sandbox (and so its pause and cgroups) even when an
/// assertion fails.
struct Guard<'a>(&'a Runtime, String);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.remove_sandbox(&self.1);
    }
}

/// `/proc/<pid>/cgroup` as (hierarchy controllers, path) pairs; `""` is
/// the cgroup2 line.
fn proc_cgroups(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':').skip(1);
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// True while `pid` is a live (not zombie) pause.
fn is_live_pause(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"cria-pause\0"))
}

/// The dirs of cgroup `rel` under `root`'s hierarchies (`root` itself for
/// a v2 root) that exist.
fn cgroup_dirs(root: &Path, rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut hierarchies = vec![root.to_path_buf()];
    if !root.join("cgroup.controllers").exists() {
        hierarchies = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
    }
    hierarchies
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// The pause's leaf relative to a cgroupfs hierarchy.
fn leaf_of(parent: &str, sid: &str) -> String {
    pause_cgroup_path(parent, sid)
        .trim_start_matches('/')
        .to_string()
}

fn pause_pid(ns: &SandboxNamespaces) -> i32 {
    let pid = ns.pause_pid.expect("a pod PID namespace has a pause");
    assert!(is_live_pause(pid), "pause {pid} runs");
    pid
}

#[test]
fn the_pause_is_born_in_its_leaf_of_the_pod_cgroup_in_every_hierarchy() {
    let f = Fixture::new("pausecg");
    let parent = f.cgroup_path();
    let sid = format!("{}-sb", f.id);
    let leaf = pause_cgroup_path(&parent, &sid);
    let ns = f.rt.create_sandbox(&pod(&sid, &parent)).unwrap();
    let guard = Guard(&f.rt, sid.clone());
    let pid = pause_pid(&ns);
    let cgroups = proc_cgroups(pid);
    // Every hierarchy cria manages (the v1 controllers and the hybrid
    // cgroup2 mount); only the named systemd one is not ours.
    let managed: Vec<_> = cgroups
        .iter()
        .filter(|(c, _)| !c.starts_with("name="))
        .collect();
    assert!(managed.len() >= 2, "{cgroups:?}");
    for (c, p) in &managed {
        assert_eq!(p, &leaf, "hierarchy {c:?} of the pause: {cgroups:?}");
    }
    let mine = proc_cgroups(std::process::id() as i32);
    assert_ne!(mine, cgroups, "the pause is not in its creator's cgroups");
    // The pod cgroup's accounting sees it (v1 memory: hierarchical).
    let memory_pod = Path::new("/sys/fs/cgroup/memory").join(parent.trim_start_matches('/'));
    let pod_tasks = std::fs::read_to_string(memory_pod.join(&sid).join("cgroup.procs")).unwrap();
    assert_eq!(pod_tasks.trim(), pid.to_string());

    // Stop kills it and leaves the cgroups (and pins) for remove.
    f.rt.stop_sandbox(&sid).unwrap();
    assert!(!is_live_pause(pid), "stop killed the pause");
    assert!(!cgroup_dirs(Path::new("/sys/fs/cgroup"), &leaf).is_empty());
    assert!(
        ns.pid.as_ref().unwrap().exists(),
        "the pid pin stays for remove"
    );
    f.rt.stop_sandbox(&sid).expect("stop is idempotent");

    f.rt.remove_sandbox(&sid).unwrap();
    drop(guard);
    assert_eq!(
        cgroup_dirs(Path::new("/sys/fs/cgroup"), &parent),
        Vec::<PathBuf>::new(),
        "pod cgroup left"
    );
}

#[test]
fn on_cgroup_v2_the_pod_cgroup_is_an_inner_node_and_the_pause_sits_in_a_leaf() {
    let f = Fixture::new("pausecg2");
    let root = Path::new(CGROUP2_ROOT);
    assert!(
        root.join("cgroup.controllers").exists(),
        "this host has a cgroup2 mount"
    );
    let rt = f.rt.clone().with_pod_cgroup_root(root);
    let parent = f.cgroup_path();
    let sid = format!("{}-sb", f.id);
    let ns = rt.create_sandbox(&pod(&sid, &parent)).unwrap();
    let guard = Guard(&rt, sid.clone());
    let pid = pause_pid(&ns);
    let leaf = pause_cgroup_path(&parent, &sid);
    let v2 = proc_cgroups(pid)
        .into_iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| p);
    assert_eq!(
        v2.as_deref(),
        Some(leaf.as_str()),
        "the pause's cgroup2 cgroup"
    );
    let pod_dir = root.join(parent.trim_start_matches('/'));
    let enabled = std::fs::read_to_string(pod_dir.join("cgroup.subtree_control")).unwrap();
    assert!(
        enabled.contains("hugetlb"),
        "controllers for the pod's children: {enabled:?}"
    );
    // Why the leaf: v2 refuses a process in a cgroup that distributes
    // controllers to its children (no internal processes).
    let err = std::fs::write(pod_dir.join("cgroup.procs"), pid.to_string()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
    assert_eq!(
        std::fs::read_to_string(pod_dir.join("cgroup.procs")).unwrap(),
        ""
    );

    rt.remove_sandbox(&sid).unwrap();
    drop(guard);
    assert!(wait_until(T, || !is_live_pause(pid)), "pause killed");
    assert!(!pod_dir.exists(), "pod cgroup left on cgroup2");
}

#[test]
fn a_pause_missing_from_the_record_is_found_by_its_cgroup_and_killed() {
    let f = Fixture::new("pausecg3");
    let parent = f.cgroup_path();
    let sid = format!("{}-sb", f.id);
    let ns = f.rt.create_sandbox(&pod(&sid, &parent)).unwrap();
    let guard = Guard(&f.rt, sid.clone());
    let pid = pause_pid(&ns);
    // As if criad died between the helper's answer and the record's update.
    let record = f
        .tmp
        .path()
        .join("state/pods")
        .join(&sid)
        .join("sandbox.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["namespaces"]["pause_pid"] = serde_json::Value::Null;
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(f.rt.sandbox(&sid).unwrap().pause_pid, None);
    assert_eq!(f.rt.sandboxes().unwrap(), vec![sid.clone()]);

    f.rt.remove_sandbox(&sid).unwrap();
    drop(guard);
    assert!(
        wait_until(T, || !is_live_pause(pid)),
        "pause {pid} still runs"
    );
    assert_eq!(
        cgroup_dirs(Path::new("/sys/fs/cgroup"), &parent),
        Vec::<PathBuf>::new()
    );
    assert!(f.rt.sandboxes().unwrap().is_empty());
}

#[test]
fn a_failed_create_removes_the_pod_cgroup_and_the_pause_leaf() {
    let f = Fixture::new("pausecg4");
    let parent = f.cgroup_path();
    let sid = format!("{}-sb", f.id);
    // sethostname refuses more than 64 bytes: the helper fails after the
    // cgroups were made.
    let mut req = pod(&sid, &parent);
    req.hostname = "h".repeat(65);
    let err = f.rt.create_sandbox(&req).unwrap_err().to_string();
    assert!(err.contains("sethostname"), "{err}");
    assert_eq!(
        cgroup_dirs(Path::new("/sys/fs/cgroup"), &parent),
        Vec::<PathBuf>::new()
    );
    assert!(!f.tmp.path().join("state/pods").join(&sid).exists());

    // The pause itself fails once in its cgroup: a memory limit of one
    // page on its leaf (made beforehand; create finds it there) stops its
    // set-up, and the whole sandbox goes.
    let memory = Path::new("/sys/fs/cgroup/memory");
    let memory_leaf = memory.join(leaf_of(&parent, &sid));
    std::fs::create_dir_all(&memory_leaf).unwrap();
    std::fs::write(memory_leaf.join("memory.limit_in_bytes"), "4096").unwrap();
    let err = f.rt.create_sandbox(&pod(&sid, &parent));
    if err.is_ok() {
        // Nothing of it may outlive the failing assertion below.
        let _ = f.rt.remove_sandbox(&sid);
    }
    let left = cgroup_dirs(Path::new("/sys/fs/cgroup"), &parent);
    for d in [&memory_leaf, &memory.join(parent.trim_start_matches('/'))] {
        let _ = std::fs::remove_dir(d);
    }
    let err = err
        .expect_err("the pause cannot run in one page")
        .to_string();
    assert!(
        err.contains("pause: ") || err.contains("pause exited"),
        "{err}"
    );
    assert_eq!(left, Vec::<PathBuf>::new());
    assert!(!f.tmp.path().join("state/pods").join(&sid).exists());
}
