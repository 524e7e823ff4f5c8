//! Measurement 1, runtime start: `run` (create+start+wait+delete) of
//! `/bin/true` from one OCI bundle by runc, crun and cria-oci, interleaved.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cria_tests::host::run;

use super::Ctx;
use crate::cri::ms;
use crate::stats::Samples;

/// The cgroup the bundle's container gets (removed after each run by the runtime).
const CGROUP: &str = "/cria-bench-runtime";

/// One OCI runtime command line.
struct Rt {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
}

impl Rt {
    fn command(&self, bundle: &Path, id: &str) -> Command {
        let mut c = Command::new(&self.bin);
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

/// crun refuses hybrid cgroups while a controller (hugetlb here) sits on
/// cgroup2 with no v1 hierarchy; mounting a v1 hugetlb hierarchy for the
/// duration of the run moves it off cgroup2. Unmounted on drop.
pub struct HugetlbV1 {
    mounted: bool,
}

const HUGETLB: &str = "/sys/fs/cgroup/hugetlb";

impl HugetlbV1 {
    /// Mounts the hierarchy when (and only when) crun needs it.
    pub fn ensure() -> HugetlbV1 {
        let on_v2 = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
            .unwrap_or(false);
        if !on_v2 || Path::new(HUGETLB).join("cgroup.procs").exists() {
            return HugetlbV1 { mounted: false };
        }
        if fs::create_dir(HUGETLB).is_err() {
            return HugetlbV1 { mounted: false };
        }
        let ok = Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "cgroup", HUGETLB])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            // The controller is in use on cgroup2 (enabled in a subtree):
            // leave no plain directory behind that others would take for a
            // hierarchy.
            let _ = fs::remove_dir(HUGETLB);
        }
        HugetlbV1 { mounted: ok }
    }
}

impl Drop for HugetlbV1 {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        // A v1 hierarchy is destroyed at umount only without child cgroups.
        if let Ok(rd) = fs::read_dir(HUGETLB) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        let _ = Command::new("umount").arg(HUGETLB).status();
        let _ = fs::remove_dir(HUGETLB);
    }
}

/// Runs the measurement.
pub fn measure(ctx: &mut Ctx) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("cria-bench-rt-")
        .tempdir()?;
    let b = bundle(dir.path())?;
    let _hugetlb = HugetlbV1::ensure();
    let all = [
        Rt {
            name: "cria-oci",
            bin: ctx.bin_dir.join("cria-oci"),
            root: dir.path().join("cria-state"),
        },
        Rt {
            name: "runc",
            bin: "runc".into(),
            root: dir.path().join("runc-state"),
        },
        Rt {
            name: "crun",
            bin: "crun".into(),
            root: dir.path().join("crun-state"),
        },
    ];
    // One untimed warm-up each (page cache, binaries); a peer that cannot
    // run here is left out with the reason (cria's own failure is fatal).
    let mut rts = Vec::new();
    for rt in all {
        match rt.run_once(&b, &format!("warm-{}", rt.name)) {
            Ok(_) => rts.push(rt),
            Err(e) if rt.name != "cria-oci" => ctx.report.notes.push(format!(
                "Runtime start: {} left out, it cannot run on this host: {e:#}",
                rt.name
            )),
            Err(e) => return Err(e),
        }
    }
    let mut samples: Vec<Samples> = vec![Samples::default(); rts.len()];
    let n = ctx.runs(30);
    for i in 0..n {
        for k in 0..rts.len() {
            // Rotate who goes first so drift hits everybody alike.
            let j = (i + k) % rts.len();
            let rt = &rts[j];
            samples[j].push(rt.run_once(&b, &format!("b{i}-{}", rt.name))?);
        }
    }
    let series = rts
        .iter()
        .map(|r| r.name.to_string())
        .zip(samples)
        .collect();
    ctx.report.figure(
        "1. runtime start",
        "run /bin/true (create+start+wait+delete)",
        "ms",
        series,
    );
    ctx.report.notes.push(
        "Runtime start: the same bundle (busybox-static rootfs, `runc spec` defaults incl. a new \
         network namespace, process `/bin/true`, cgroupsPath /cria-bench-runtime, without the \
         `cgroup` mount cria cannot do yet on hybrid hosts) run with \
         `<runtime> --root <own dir> run --bundle`; the time includes each CLI's own exec. \
         cria-oci is runtime/src/bin/cria-oci.rs over the cria_runtime library (it starts one \
         cria-monitor per container)."
            .into(),
    );
    let missed_crun = ctx.report.target_ratio(
        "runtime start ≤ 1.2× crun (issue 8)",
        "run /bin/true (create+start+wait+delete)",
        "crun",
        1.2,
    ) == Some(false);
    let missed_runc = ctx.report.target_ratio(
        "runtime start ≤ 0.5× runc (issue 8)",
        "run /bin/true (create+start+wait+delete)",
        "runc",
        0.5,
    ) == Some(false);
    if (missed_crun || missed_runc) && !ctx.quick {
        let mut cmd = rts[0].command(&b, "profile");
        ctx.profile_command("runtime start (`strace -c -w -f cria-oci run`: wall time per syscall, monitor included)", &mut cmd);
    }
    seccomp_pair(ctx, &rts[0], &b)
}

const SECCOMP_RUN: &str = "cria-oci run /bin/true, linux.seccomp RuntimeDefault vs none";

/// cria-oci alone on the bundle with and without `linux.seccomp`
/// (RuntimeDefault), interleaved (issue 6).
fn seccomp_pair(ctx: &mut Ctx, cria: &Rt, b: &Path) -> Result<()> {
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
    let n = ctx.runs(30);
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
