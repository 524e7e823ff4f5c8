//! The host side of the harness: running tools, free ports, bounded waiting,
//! and cleaning up the mounts, cgroups and processes a test may leave behind.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs a command to completion; fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Runs a command and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Polls `check` every `every` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `wait_for` for async tests: sleeps on the tokio timer, so tasks spawned on
/// a current-thread runtime keep running while it waits.
pub async fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// The cargo target dir this test binary was built into (`target/`), from
/// the binary's own path `target/<profile>/deps/<test>`.
pub fn target_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("finding the test binary")?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .context("test binary is not under target/<profile>/deps")
}

/// The cargo profile dir (`target/debug`) holding the built binaries.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the test binary")?;
    exe.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .context("test binary is not under target/<profile>/deps")
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points in this mount namespace at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Lazily unmounts everything mounted at or under `dir`, deepest first.
pub fn unmount_all_under(dir: &Path) {
    // Bounded: every pass removes at least one mount or we give up.
    for _ in 0..64 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut progress = false;
        for m in mounts {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                progress = true;
            }
        }
        if !progress {
            return;
        }
    }
}

/// cgroup v1 controller hierarchies mounted on this machine (plus the v2 one).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        v.push(PathBuf::from("/sys/fs/cgroup"));
    }
    v
}

/// Every cgroup directory named `rel` (e.g. `/cria-test-xyz`) in any hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// The pids in a cgroup directory and all of its descendants.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// SIGKILLs every process in the cgroup `rel` (all hierarchies) and removes
/// its directories bottom-up. Used by test cleanup only.
pub fn destroy_cgroup(rel: &str) {
    for dir in cgroup_dirs(rel) {
        for pid in cgroup_pids(&dir) {
            kill(pid, libc::SIGKILL);
        }
    }
    // Give the kernel a moment to empty the cgroups before rmdir.
    for dir in cgroup_dirs(rel) {
        let _ = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            cgroup_pids(&dir).is_empty().then_some(())
        });
        remove_cgroup_tree(&dir);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Sends `sig` to `pid`; true if the process existed.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: plain syscall on a pid number.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether a process with this pid exists (zombies count).
pub fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The state letter of /proc/<pid>/stat (`Z` for a zombie), if the process exists.
pub fn pid_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may hold spaces; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Pids of processes whose command line mentions `needle` (e.g. a temp dir).
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A read-only view of image layers mounted with the kernel's OverlayFS by
/// the test itself (not by cria); unmounted on drop.
pub struct OverlayView {
    scratch: tempfile::TempDir,
}

impl OverlayView {
    /// Mounts `lowers` (top layer first) at a temp dir.
    pub fn mount(lowers: &[PathBuf]) -> Result<OverlayView> {
        let scratch = tempfile::Builder::new().prefix("cria-view-").tempdir()?;
        for d in ["upper", "work", "merged"] {
            fs::create_dir(scratch.path().join(d))?;
        }
        let lower: Vec<String> = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            scratch.path().join("upper").display(),
            scratch.path().join("work").display()
        );
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(scratch.path().join("merged")))?;
        Ok(OverlayView { scratch })
    }

    /// The merged view.
    pub fn path(&self) -> PathBuf {
        self.scratch.path().join("merged")
    }
}

impl Drop for OverlayView {
    fn drop(&mut self) {
        unmount_all_under(self.scratch.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }

    #[test]
    fn wait_for_is_bounded() {
        let t = Instant::now();
        let r: Option<()> = wait_for(Duration::from_millis(50), Duration::from_millis(10), || {
            None
        });
        assert!(r.is_none());
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(
            wait_for(Duration::from_secs(1), Duration::from_millis(1), || Some(3)),
            Some(3)
        );
    }
}
