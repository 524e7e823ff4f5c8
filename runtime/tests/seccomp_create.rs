//! A bundle's `linux.seccomp` through create: the library compiles it while
//! the monitor starts, the monitor gets the program on stdin (it does not
//! parse the profile) and keeps it for exec; a profile that does not compile
//! fails the create and leaves nothing behind.

mod common;

use common::Fixture;
use oci_spec::runtime::Spec;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// `spec` with RuntimeDefault for no capabilities as its `linux.seccomp`.
fn with_runtime_default(mut spec: Spec) -> Spec {
    let mut linux = spec.linux().clone().unwrap();
    linux.set_seccomp(Some(cria_runtime::seccomp::runtime_default(&[]).unwrap()));
    spec.set_linux(Some(linux));
    spec
}

/// The `Seccomp:` mode in /proc/self/status as the process saw it.
fn seccomp_mode(status: &str) -> Option<&str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
}

#[test]
fn the_container_and_its_execs_run_under_the_bundle_s_filter() {
    let f = Fixture::new("seccomp-run");
    let spec = with_runtime_default(f.spec(&["sh", "-c", "cat /proc/self/status; sleep 1000"]));
    f.create_start(&spec);
    let dir = f.tmp.path().join("state/containers").join(&f.id);
    assert!(
        dir.join("seccomp.bpf").is_file(),
        "the program kept for exec"
    );
    let logged = common::wait_until(T, || {
        f.log_lines("stdout")
            .iter()
            .any(|(_, l)| l.starts_with("Seccomp:"))
    });
    assert!(logged, "no status in the log: {}", f.log());
    let status: Vec<String> = f.log_lines("stdout").into_iter().map(|(_, l)| l).collect();
    assert_eq!(seccomp_mode(&status.join("\n")), Some("2"), "filter mode");
    let p = common::process(&["cat", "/proc/self/status"]);
    let out = f.rt.exec_sync(&f.id, &p, T).unwrap();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        seccomp_mode(&String::from_utf8_lossy(&out.stdout)),
        Some("2")
    );
}

#[test]
fn a_profile_that_does_not_compile_fails_the_create_and_leaves_nothing() {
    for (name, profile) in [
        (
            "malformed",
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read"}]}),
        ),
        (
            "notify",
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
        ),
    ] {
        let f = Fixture::new(name);
        let mut spec = serde_json::to_value(f.spec(&["true"])).unwrap();
        spec["linux"]["seccomp"] = profile;
        std::fs::write(
            f.bundle.join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        let req = cria_runtime::ContainerCreate {
            id: f.id.clone(),
            bundle: f.bundle.clone(),
            ..Default::default()
        };
        let e = f.rt.create(&req).unwrap_err().to_string();
        assert!(e.contains("seccomp"), "{name}: {e}");
        assert!(
            !f.tmp.path().join("state/containers").join(&f.id).exists(),
            "{name}: state dir left"
        );
        assert!(!f.memory_cgroup_dir().exists(), "{name}: cgroup left: {e}");
        assert!(
            common::processes_mentioning(&f.id).is_empty(),
            "{name}: a monitor is left"
        );
    }
}
