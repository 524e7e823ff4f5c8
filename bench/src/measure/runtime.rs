//! Measurement 1, runtime start: `run` (create+start+wait+delete) of
//! `/bin/true` from one OCI bundle by runc, crun and cria-oci, interleaved.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cria_tests::host::run;

use super::Ctx;
use crate::cri::ms;
use crate::stats::Samples;

/// The cgroup the bundle's container gets (removed after each run by the runtime).
const CGROUP: &str = "/cria-bench-runtime";

/// One OCI runtime command line.
struct Rt<'a> {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    /// Started inside the cgroup v1 view.
    view: Option<&'a V1View>,
}

impl Rt<'_> {
    fn command(&self, bundle: &Path, id: &str) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(v) = self.view {
            v.enter(&mut c);
        }
        c.arg("--root")
            .arg(&self.root)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs the container once; returns milliseconds.
    fn run_once(&self, bundle: &Path, id: &str) -> Result<f64> {
        let t = Instant::now();
        let out = self
            .command(bundle, id)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let took = ms(t.elapsed());
        if !out.status.success() {
            bail!(
                "{} run {id} failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    }
}

/// Makes a bundle: busybox-static rootfs, `runc spec` config running `/bin/true`.
fn bundle(dir: &Path) -> Result<PathBuf> {
    let b = dir.join("bundle");
    let bin = b.join("rootfs/bin");
    fs::create_dir_all(&bin)?;
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(b.join("rootfs").join(d))?;
    }
    fs::copy("/bin/busybox", bin.join("busybox"))
        .context("copying /bin/busybox (busybox-static)")?;
    std::os::unix::fs::symlink("busybox", bin.join("true"))?;
    run(Command::new("runc").args(["spec", "--bundle"]).arg(&b))?;
    let path = b.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["linux"]["cgroupsPath"] = CGROUP.into();
    // cria's runtime cannot yet bind the container's cgroup2 dir for the
    // `cgroup` mount on a hybrid host (it stats a unified cgroup it did not
    // create); drop that mount for every runtime alike.
    if let Some(m) = spec["mounts"].as_array_mut() {
        m.retain(|m| m["type"] != "cgroup");
    }
    fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(b)
}

/// A bundle `name` beside `b`, on the same rootfs, whose config adds
/// `linux.seccomp` = the runtime's RuntimeDefault for the process's
/// bounding set (what criad puts in a RuntimeDefault container's spec) and
/// runs `args`.
fn seccomp_bundle(b: &Path, name: &str, args: &[&str]) -> Result<PathBuf> {
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(b.join("config.json"))?)?;
    let caps: Vec<String> =
        serde_json::from_value(spec["process"]["capabilities"]["bounding"].clone())
            .context("bounding capabilities of the bundle")?;
    let profile = cria_runtime::seccomp::runtime_default(&caps)?;
    spec["linux"]["seccomp"] = serde_json::to_value(profile)?;
    spec["root"]["path"] = b.join("rootfs").display().to_string().into();
    spec["process"]["args"] = serde_json::json!(args);
    let sb = b.with_file_name(name);
    fs::create_dir_all(&sb)?;
    fs::write(sb.join("config.json"), serde_json::to_vec_pretty(&spec)?)?;
    Ok(sb)
}

/// A private mount namespace whose `/sys/fs/cgroup` holds the host's v1
/// hierarchies but no `unified` (cgroup2) mount: a runtime started in it sees
/// a pure cgroup v1 host.
/// crun 1.8.1 refuses a hybrid host whose cgroup2 mount has any controller
/// (`libcrun_cgroup_enter` reads `/sys/fs/cgroup/unified/cgroup.controllers`;
/// hugetlb sits there on this host, enabled in live subtrees, so it cannot
/// be moved to v1 without disturbing them); the `unified` directory must be
/// gone, not just empty, or crun (legacy mode) still tries to make its
/// cgroup there. The namespace is held by one
/// `sleep` (killed on drop, and with the bench through PDEATHSIG); the host
/// is never changed, so there is nothing to restore, even after ctrl-C.
struct V1View {
    holder: Child,
    ns: fs::File,
}

/// The row of runtimes run in the v1 view.
const RUN_V1: &str = "run /bin/true, cgroup v1 view (cgroup2 mount hidden)";

/// Builds the view in the new namespace ($1: an empty staging directory):
/// a fresh tmpfs with a bind of every v1 hierarchy (symlinks copied), moved
/// over /sys/fs/cgroup. Private propagation keeps all of it off the host.
const V1_VIEW_SCRIPT: &str = r#"set -e
S="$1"
mount -t tmpfs -o mode=755 cria-bench-v1-view "$S"
for h in /sys/fs/cgroup/*; do
  n=${h##*/}
  [ "$n" = unified ] && continue
  if [ -L "$h" ]; then ln -s "$(readlink "$h")" "$S/$n"
  else mkdir "$S/$n" && mount --bind "$h" "$S/$n"; fi
done
mount --move "$S" /sys/fs/cgroup
echo ready
exec sleep 86400"#;
/// The row of runtimes run on the host as it is.
const RUN_HOST: &str = "run /bin/true (create+start+wait+delete)";

impl V1View {
    /// The view, staged in `staging` (an empty directory of the bench's own).
    fn new(staging: &Path) -> Result<V1View> {
        fs::create_dir_all(staging)?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(V1_VIEW_SCRIPT)
            .arg("sh")
            .arg(staging)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut holder = cmd
            .spawn()
            .context("unshare (util-linux) for the v1 view")?;
        let mut line = String::new();
        if let Some(out) = holder.stdout.take() {
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
        }
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            bail!(
                "could not build a cgroup v1 view of /sys/fs/cgroup in a private mount namespace"
            );
        }
        let ns = fs::File::open(format!("/proc/{}/ns/mnt", holder.id()))?;
        Ok(V1View { holder, ns })
    }

    /// Makes `cmd` start inside the view (setns in the forked child).
    fn enter(&self, cmd: &mut Command) {
        let fd = self.ns.as_raw_fd();
        // SAFETY: setns is async-signal-safe; `fd` stays open (self outlives
        // the spawn, and the child gets its own copy at fork).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for V1View {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Runs the measurement.
pub fn measure(ctx: &mut Ctx) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("cria-bench-rt-")
        .tempdir()?;
    let b = bundle(dir.path())?;
    let view = V1View::new(&dir.path().join("v1-view"))?;
    let runtimes = |row: &str| {
        [
            ("cria-oci", ctx.bin_dir.join("cria-oci")),
            ("runc", "runc".into()),
            ("crun", "crun".into()),
        ]
        .map(|(name, bin)| Rt {
            name,
            bin,
            root: dir.path().join(format!("{row}-{name}-state")),
            view: (row == "v1").then_some(&view),
        })
    };
    // Row 1: the host as it is; row 1v: the v1 view, where crun runs too.
    let rows = [(RUN_HOST, runtimes("host")), (RUN_V1, runtimes("v1"))];
    // One untimed warm-up each (page cache, binaries); a peer that cannot
    // run is left out with the reason (cria's own failure is fatal).
    let mut rts: Vec<(&str, Vec<&Rt>)> = Vec::new();
    for (row, all) in &rows {
        let mut ok = Vec::new();
        for rt in all {
            match rt.run_once(&b, &format!("warm-{}", rt.name)) {
                Ok(_) => ok.push(rt),
                Err(e) if rt.name != "cria-oci" => ctx.report.notes.push(format!(
                    "Runtime start ({row}): {} left out, it cannot run there: {e:#}",
                    rt.name
                )),
                Err(e) => return Err(e),
            }
        }
        rts.push((row, ok));
    }
    let mut samples: Vec<Vec<Samples>> = rts
        .iter()
        .map(|(_, r)| vec![Samples::default(); r.len()])
        .collect();
    let n = ctx.runs(30);
    for i in 0..n {
        for (k, (_, row)) in rts.iter().enumerate() {
            for step in 0..row.len() {
                // Rotate who goes first so drift hits everybody alike.
                let j = (i + step) % row.len();
                let rt = row[j];
                samples[k][j].push(rt.run_once(&b, &format!("b{i}-{k}-{}", rt.name))?);
            }
        }
    }
    for ((row, r), s) in rts.iter().zip(samples) {
        let series = r.iter().map(|r| r.name.to_string()).zip(s).collect();
        ctx.report.figure("1. runtime start", row, "ms", series);
    }
    ctx.report.notes.push(
        "Runtime start: the same bundle (busybox-static rootfs, `runc spec` defaults incl. a new \
         network namespace, process `/bin/true`, cgroupsPath /cria-bench-runtime, without the \
         `cgroup` mount cria cannot do yet on hybrid hosts) run with \
         `<runtime> --root <own dir> run --bundle`; the time includes each CLI's own exec. \
         cria-oci is runtime/src/bin/cria-oci.rs over the cria_runtime library (it starts one \
         cria-monitor per container). The second row runs all three in a private mount \
         namespace whose /sys/fs/cgroup has the v1 hierarchies but no cgroup2 mount (entered \
         with setns before each exec, the same for all three), so they see a pure cgroup v1 \
         host: crun 1.8.1 \
         refuses hybrid hosts whose cgroup2 mount holds a controller (hugetlb here); in that \
         row no runtime joins a cgroup2 cgroup."
            .into(),
    );
    let missed_crun = ctx.report.target_ratio(
        "runtime start ≤ 1.2× crun (issue 8; cgroup v1 view, where crun runs)",
        RUN_V1,
        "crun",
        1.2,
    ) == Some(false);
    let missed_runc =
        ctx.report
            .target_ratio("runtime start ≤ 0.5× runc (issue 8)", RUN_HOST, "runc", 0.5)
            == Some(false);
    let cria = &rows[0].1[0];
    if (missed_crun || missed_runc) && !ctx.quick {
        let mut cmd = cria.command(&b, "profile");
        ctx.profile_command("runtime start (`strace -c -w -f cria-oci run`: wall time per syscall, monitor included)", &mut cmd);
    }
    seccomp_pair(ctx, cria, &b)
}

const SECCOMP_RUN: &str = "cria-oci run /bin/true, linux.seccomp RuntimeDefault vs none";

/// cria-oci alone on the bundle with and without `linux.seccomp`
/// (RuntimeDefault), interleaved (issue 6).
fn seccomp_pair(ctx: &mut Ctx, cria: &Rt<'_>, b: &Path) -> Result<()> {
    let bundles = [
        seccomp_bundle(b, "bundle-seccomp", &["/bin/true"])?,
        b.to_path_buf(),
    ];
    let names = ["cria-oci RuntimeDefault", "cria-oci no seccomp"];
    // The filter is really loaded: busybox grep exits 0 only when the
    // process runs in seccomp mode 2 (filter).
    let check = seccomp_bundle(
        b,
        "bundle-seccomp-check",
        &[
            "/bin/busybox",
            "grep",
            "-q",
            "^Seccomp:[[:space:]]*2$",
            "/proc/self/status",
        ],
    )?;
    cria.run_once(&check, "seccomp-check")
        .context("cria-oci did not load the bundle's linux.seccomp filter")?;
    for (k, bundle) in bundles.iter().enumerate() {
        cria.run_once(bundle, &format!("swarm-{k}"))?;
    }
    let mut samples = [Samples::default(), Samples::default()];
    // The difference sought is a few hundred µs on ~8 ms, about the spread
    // between runs on a VM: 30 samples per side are not enough to see it.
    let n = ctx.runs(100);
    for i in 0..n {
        for step in 0..2 {
            let k = (i + step) % 2;
            samples[k].push(cria.run_once(&bundles[k], &format!("s{i}-{k}"))?);
        }
    }
    let series = names.iter().map(|s| s.to_string()).zip(samples).collect();
    ctx.report
        .figure("1. runtime start", SECCOMP_RUN, "ms", series);
    ctx.report.notes.push(format!(
        "Seccomp at the runtime (issue 6): cria-oci alone, {n} runs per bundle, interleaved; the \
         same bundle with `linux.seccomp` = cria_runtime::seccomp::runtime_default(bounding set) \
         and without it; cria/this is RuntimeDefault over none."
    ));
    ctx.report.target_ratio(
        "cria-oci run with seccomp RuntimeDefault ≤ 1.05× without (issue 6)",
        SECCOMP_RUN,
        "cria-oci no seccomp",
        1.05,
    );
    Ok(())
}
