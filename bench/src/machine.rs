//! The machine description written beside the results: CPU, cores, memory,
//! kernel, load, and the version of every system compared.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;

/// First line of a command's output (stdout, else stderr), or why not.
fn version(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        }
        Err(e) => format!("not runnable: {e}"),
    }
}

/// The value of `key` in a `key : value` /proc text.
fn proc_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The 1-minute load average.
pub fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A markdown list describing this machine and the systems' versions.
pub fn describe(load_start: &str, cria_commit: &str) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "- **{k}**: {v}");
    };
    line(
        "CPU",
        proc_field(&cpu, "model name").unwrap_or_else(|| "unknown".into()),
    );
    line("cores", cores.to_string());
    line("memory", proc_field(&mem, "MemTotal").unwrap_or_default());
    line("kernel", version("uname", &["-sr"]));
    line(
        "cgroups",
        if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            "v2".into()
        } else {
            "v1 (hybrid)".into()
        },
    );
    line("load average (1/5/15 min) at start", load_start.to_string());
    line("load average at end", load());
    line("cria", format!("commit {cria_commit}, release build"));
    line("runc", version("runc", &["--version"]));
    line("crun", version("crun", &["--version"]));
    line("containerd", version("containerd", &["--version"]));
    line(
        "containerd shim",
        "containerd-shim-runc-v2 (with runc) from the same package".into(),
    );
    line("skopeo", version("skopeo", &["--version"]));
    line("GNU tar", version("tar", &["--version"]));
    line("gzip", version("gzip", &["--version"]));
    line("CNI plugins", "Debian containernetworking-plugins (/usr/lib/cni): bridge + host-local + portmap, ipMasq false".into());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        assert_eq!(
            proc_field("model name\t: Some CPU\nflags : x\n", "model name").as_deref(),
            Some("Some CPU")
        );
        assert!(describe("0 0 0", "abc").contains("- **cores**: "));
    }
}
