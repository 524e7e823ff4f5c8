//! Isolated criad instances: temp root/state/socket and config, started from
//! the built binary, torn down on drop with every mount, cgroup and process
//! they left behind.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::client::{connect, ImageClient, RuntimeClient};
use crate::host::{
    destroy_cgroup, kill, pids_mentioning, profile_dir, unmount_all_under, wait_for,
};
use crate::registry::Registry;

/// The parts of criad's TOML config the tests set (shim/src/config.rs owns the keys).
#[derive(Debug, Clone, Default)]
pub struct CriadConfig {
    /// `[registry] insecure`: hosts allowed over plain HTTP.
    pub insecure: Vec<String>,
    /// `[registry] auth_file`: a docker-style config.json.
    pub auth_file: Option<PathBuf>,
    /// `[registry] mirrors`: host → endpoint URLs.
    pub mirrors: Vec<(String, Vec<String>)>,
    /// `[registry] max_concurrent_downloads`.
    pub max_concurrent_downloads: Option<u32>,
    /// Extra TOML appended verbatim (for keys the harness has no field for).
    pub extra_toml: String,
}

/// TOML basic string (JSON string escaping is valid TOML for these values).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

impl CriadConfig {
    /// Renders the config for an instance whose certs.d and CNI dirs live in `dir`.
    fn render(&self, dir: &Path) -> String {
        let mut t = String::from("[registry]\n");
        t += &format!(
            "certs_dir = {}\n",
            q(&dir.join("certs.d").to_string_lossy())
        );
        let insecure: Vec<String> = self.insecure.iter().map(|h| q(h)).collect();
        t += &format!("insecure = [{}]\n", insecure.join(", "));
        if let Some(a) = &self.auth_file {
            t += &format!("auth_file = {}\n", q(&a.to_string_lossy()));
        }
        if let Some(n) = self.max_concurrent_downloads {
            t += &format!("max_concurrent_downloads = {n}\n");
        }
        if !self.mirrors.is_empty() {
            t += "[registry.mirrors]\n";
            for (host, urls) in &self.mirrors {
                let urls: Vec<String> = urls.iter().map(|u| q(u)).collect();
                t += &format!("{} = [{}]\n", q(host), urls.join(", "));
            }
        }
        t += &format!(
            "[cni]\nconf_dir = {}\n",
            q(&dir.join("cni").to_string_lossy())
        );
        t += "\n";
        t += &self.extra_toml;
        t
    }
}

/// A criad process with its own root, state, socket and config under a temp dir.
pub struct Criad {
    dir: TempDir,
    child: Option<Child>,
    binary: PathBuf,
    cgroups: Mutex<Vec<String>>,
}

/// How long criad may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed criad may take to exit before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The same on drop, where the test's clients may still hold connections.
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(2);

impl Criad {
    /// A fresh registry and a criad that pulls from it over plain HTTP: how
    /// the image tests begin.
    pub async fn with_registry() -> Result<(Registry, Criad)> {
        let reg = Registry::start().context("registry")?;
        let criad = Criad::start(CriadConfig {
            insecure: vec![reg.host()],
            ..Default::default()
        })
        .await
        .context("criad")?;
        Ok((reg, criad))
    }

    /// Starts criad with `config`, waiting (bounded) until its socket answers.
    pub async fn start(config: CriadConfig) -> Result<Criad> {
        // Short paths on purpose: the monitor's control socket lives at
        // <state>/containers/<64 hex>/control.sock, and sun_path holds 107 bytes.
        sweep_stale_instances();
        let dir = tempfile::Builder::new().prefix("c").tempdir()?;
        fs::write(
            dir.path().join(OWNER_MARKER),
            std::process::id().to_string(),
        )?;
        fs::create_dir_all(dir.path().join("certs.d"))?;
        fs::create_dir_all(dir.path().join("cni"))?;
        fs::create_dir_all(dir.path().join("logs"))?;
        fs::write(dir.path().join("config.toml"), config.render(dir.path()))?;
        let mut me = Criad {
            dir,
            child: None,
            binary: criad_binary()?,
            cgroups: Mutex::default(),
        };
        me.spawn().await?;
        Ok(me)
    }

    /// Starts criad again on the same dirs (after `kill` or `stop`).
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop().await?;
        }
        self.spawn().await
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let _ = fs::remove_file(self.socket());
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.state())
            .arg("--socket")
            .arg(self.socket())
            .arg("--log-level")
            .arg(std::env::var("CRIA_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    bail!(
                        "criad exited with {status} during start-up; log:\n{}",
                        self.log()
                    );
                }
            }
            if self.socket().exists() && connect(&self.socket()).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "criad socket {} not ready after {START_TIMEOUT:?}; log:\n{}",
                    self.socket().display(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The criad pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILLs criad (containers and their monitors must survive) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERMs criad and waits (bounded, without blocking the async
    /// runtime, so open client connections can see the server going away)
    /// for it to exit, then SIGKILLs it. Returns whether it exited in time.
    pub async fn stop(&mut self) -> Result<bool> {
        let Some(mut c) = self.child.take() else {
            return Ok(true);
        };
        kill(c.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                c.wait()?;
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(true)
    }

    /// The synchronous stop of `Drop`: a client connection still open on a
    /// blocked runtime would hold a graceful shutdown, so wait briefly only.
    fn stop_blocking(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        kill(c.id() as i32, libc::SIGTERM);
        if wait_for(DROP_STOP_TIMEOUT, Duration::from_millis(20), || {
            c.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = c.kill();
        }
        let _ = c.wait();
    }

    /// An ImageService client on this instance's socket.
    pub async fn images(&self) -> Result<ImageClient> {
        Ok(ImageClient::new(connect(&self.socket()).await?))
    }

    /// A RuntimeService client on this instance's socket.
    pub async fn runtime(&self) -> Result<RuntimeClient> {
        Ok(RuntimeClient::new(connect(&self.socket()).await?))
    }

    /// The temp dir holding everything of this instance.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `--state` (short, see `start`).
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("s")
    }

    /// `--socket`.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cria.sock")
    }

    /// `[registry] certs_dir`; a test puts `<host>/ca.crt` here.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// A dir for pod logs (`log_directory` of sandboxes).
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Where criad's stderr goes (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("criad.log")
    }

    /// criad's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A fresh cgroup parent (`/cria-test-<hex>`) for a pod; removed with
    /// everything in it when this instance is dropped.
    pub fn cgroup_parent(&self) -> String {
        let name = format!("/cria-test-{:x}-{:x}", std::process::id(), rand_u64());
        if let Ok(mut v) = self.cgroups.lock() {
            v.push(name.clone());
        }
        name
    }

    /// Kills every process of this instance that outlived criad: monitors
    /// (their pid files, or a command line naming our temp dir) and the
    /// processes in the cgroups handed out by `cgroup_parent`.
    fn kill_leftover_processes(&self) {
        let containers = self.state().join("containers");
        if let Ok(rd) = fs::read_dir(&containers) {
            for e in rd.filter_map(|e| e.ok()) {
                if let Ok(pid) = fs::read_to_string(e.path().join("monitor.pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        for pid in pids_mentioning(&self.dir.path().to_string_lossy()) {
            kill(pid, libc::SIGKILL);
        }
        kill_pauses(&self.state());
        if let Ok(v) = self.cgroups.lock() {
            for cg in v.iter() {
                destroy_cgroup(cg);
            }
        }
    }
}

impl Drop for Criad {
    fn drop(&mut self) {
        self.stop_blocking();
        self.kill_leftover_processes();
        unmount_all_under(self.dir.path());
    }
}

/// Kills the pauses of the pods recorded under a state dir
/// (`pods/<id>/sandbox.json`): their command line is a bare `cria-pause`,
/// naming no path of the instance. A pid is killed only while its command
/// line still says so (not a reused pid).
fn kill_pauses(state: &Path) {
    let Ok(rd) = fs::read_dir(state.join("pods")) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let pause = fs::read(e.path().join("sandbox.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["namespaces"]["pause_pid"].as_i64());
        let Some(pid) = pause.and_then(|p| i32::try_from(p).ok()) else {
            continue;
        };
        let is_pause =
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"cria-pause\0"));
        if is_pause {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// File naming the test process that owns an instance dir.
const OWNER_MARKER: &str = "cria-e2e-owner";

/// Cleans up after test processes that died without running `Drop` (a
/// nextest timeout kills them): instance dirs whose owner is gone lose their
/// processes, mounts and files, and `/cria-test-<owner pid>-*` cgroups of dead
/// owners are destroyed.
pub fn sweep_stale_instances() {
    let dead = |pid: &str| {
        pid.trim()
            .parse::<i32>()
            .is_ok_and(|p| !crate::host::pid_alive(p))
    };
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for e in rd.filter_map(|e| e.ok()) {
            let dir = e.path();
            let Ok(owner) = fs::read_to_string(dir.join(OWNER_MARKER)) else {
                continue;
            };
            if !dead(&owner) {
                continue;
            }
            for pid in pids_mentioning(&dir.to_string_lossy()) {
                kill(pid, libc::SIGKILL);
            }
            kill_pauses(&dir.join("s"));
            unmount_all_under(&dir);
            let _ = fs::remove_dir_all(&dir);
        }
    }
    for h in crate::host::cgroup_hierarchies() {
        let Ok(rd) = fs::read_dir(&h) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("cria-test-") else {
                continue;
            };
            let Some((pid_hex, _)) = rest.split_once('-') else {
                continue;
            };
            if i32::from_str_radix(pid_hex, 16).is_ok_and(|p| !crate::host::pid_alive(p)) {
                destroy_cgroup(&name);
            }
        }
    }
}

/// The built criad: `$CRIA_CRIAD`, else `target/<profile>/criad`.
pub fn criad_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("CRIA_CRIAD") {
        return Ok(PathBuf::from(p));
    }
    let p = profile_dir()?.join("criad");
    if !p.exists() {
        bail!(
            "{} not found: build it first (cargo build -p cria-shim) or set CRIA_CRIAD",
            p.display()
        );
    }
    Ok(p)
}

/// A random number for unique names (no rand dependency needed).
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}
