//! Shared fixtures: a busybox rootfs, an OCI spec, an isolated state root.

#![allow(dead_code)]

use cria_runtime::{ContainerCreate, ContainerState, Created, Runtime, RuntimeConfig};
use oci_spec::runtime::{
    LinuxBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources,
    LinuxResourcesBuilder, Process, ProcessBuilder, RootBuilder, Spec,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Commands linked to busybox in the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "ls", "head", "dd", "id", "hostname",
    "readlink", "printf", "tr", "yes", "kill", "grep", "wc", "env", "pwd",
];

/// Gives the container in `spec` these cgroup resources.
pub fn set_resources(spec: &mut Spec, resources: LinuxResources) {
    let mut linux = spec.linux().clone().unwrap();
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
}

/// Resources limiting memory to `limit` bytes and, when given, memory plus
/// swap to `swap` bytes.
pub fn memory_limit(limit: i64, swap: Option<i64>) -> LinuxResources {
    let mut memory = LinuxMemoryBuilder::default().limit(limit);
    if let Some(swap) = swap {
        memory = memory.swap(swap);
    }
    LinuxResourcesBuilder::default()
        .memory(memory.build().unwrap())
        .build()
        .unwrap()
}

/// A process running `args` with `PATH=/bin` in `/` (for specs and execs).
pub fn process(args: &[&str]) -> Process {
    ProcessBuilder::default()
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .expect("a process of args, env and cwd")
}

/// One test's world: a temp dir with a rootfs, a bundle and a state root.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub rt: Runtime,
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    pub id: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Fixture {
    /// A fresh fixture; `name` makes the id recognisable.
    pub fn new(name: &str) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("cria-rt-")
            .tempdir()
            .unwrap();
        let rootfs = tmp.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static at /bin/busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        let bundle = tmp.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let rt = Runtime::new(RuntimeConfig {
            monitor_path: PathBuf::from(env!("CARGO_BIN_EXE_cria-monitor")),
            state_root: tmp.path().join("state"),
        });
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{name}-{}-{n}", std::process::id());
        Fixture {
            tmp,
            rt,
            rootfs,
            bundle,
            id,
        }
    }

    /// The cgroup path used by this fixture's container.
    pub fn cgroup_path(&self) -> String {
        format!("/cria-test/{}", self.id)
    }

    /// A spec running `args` with the OCI default mounts and namespaces.
    pub fn spec(&self, args: &[&str]) -> Spec {
        let mut spec = Spec::default();
        spec.set_hostname(Some("ctr".into()));
        spec.set_root(Some(
            RootBuilder::default()
                .path(&self.rootfs)
                .readonly(false)
                .build()
                .unwrap(),
        ));
        let mut process = process(args);
        process.set_no_new_privileges(Some(true));
        spec.set_process(Some(process));
        let ns = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ]
        .iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
        .collect::<Vec<_>>();
        let linux = LinuxBuilder::default()
            .namespaces(ns)
            .cgroups_path(PathBuf::from(self.cgroup_path()))
            .masked_paths(oci_spec::runtime::get_default_maskedpaths())
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
            .build()
            .unwrap();
        spec.set_linux(Some(linux));
        spec
    }

    /// Writes `spec` into the bundle.
    pub fn write_spec(&self, spec: &Spec) {
        spec.save(self.bundle.join("config.json")).unwrap();
    }

    /// The log path of this fixture's container.
    pub fn log_path(&self) -> PathBuf {
        self.tmp.path().join("logs/ctr.log")
    }

    /// A create request for `spec` (written first).
    pub fn request(&self, spec: &Spec) -> ContainerCreate {
        self.write_spec(spec);
        ContainerCreate {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            log_path: Some(self.log_path()),
            ..Default::default()
        }
    }

    /// Creates this fixture's container from `spec` and starts it.
    pub fn create_start(&self, spec: &Spec) -> Created {
        let created = self.rt.create(&self.request(spec)).unwrap();
        self.rt.start(&self.id).unwrap();
        created
    }

    /// Creates and starts the container, then waits (at most `timeout`) for it to exit.
    pub fn run_to_exit(&self, spec: &Spec, timeout: Duration) -> ContainerState {
        self.create_start(spec);
        self.rt.wait(&self.id, timeout).unwrap()
    }

    /// The log file's content.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The content lines of one stream, in the order logged.
    pub fn log_lines(&self, stream: &str) -> Vec<(String, String)> {
        self.log()
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(4, ' ');
                let (_ts, s, tag, text) = (p.next()?, p.next()?, p.next()?, p.next().unwrap_or(""));
                (s == stream).then(|| (tag.to_string(), text.to_string()))
            })
            .collect()
    }

    /// The v1 memory cgroup dir of this container.
    pub fn memory_cgroup_dir(&self) -> PathBuf {
        Path::new("/sys/fs/cgroup/memory").join(self.cgroup_path().trim_start_matches('/'))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Best effort: never leave a container, cgroup or mount behind.
        let _ = self.rt.delete(&self.id, true);
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup/memory").join(self.cgroup_path().trim_start_matches('/')),
        );
        // The shared parent goes once the last test's container is gone.
        for h in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "unified",
        ] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(h).join("cria-test"));
        }
        for d in ["netns", "pods"] {
            let _ = nix::mount::umount2(
                &self.tmp.path().join("state").join(d),
                nix::mount::MntFlags::MNT_DETACH,
            );
        }
    }
}

/// Polls `f` every 10 ms until true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Pids of processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&c).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}
