//! Containers on the real kernel: busybox rootfs, real namespaces, cgroups
//! and mounts. Needs root.

mod common;

use common::{memory_limit, processes_mentioning, set_resources, wait_until, Fixture};
use cria_runtime::{RuntimeError, SandboxCreate, Status};
use oci_spec::runtime::{
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn run_to_exit(f: &Fixture, args: &[&str]) -> cria_runtime::ContainerState {
    f.run_to_exit(&f.spec(args), T)
}

#[test]
fn exit_codes_and_log_framing() {
    let f = Fixture::new("exit");
    let st = run_to_exit(
        &f,
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; echo; printf partial; exit 3",
        ],
    );
    assert_eq!(st.status, Status::Stopped);
    assert_eq!(st.exit_code, Some(3));
    assert!(!st.oom_killed);
    assert!(st.started_at.is_some() && st.finished_at >= st.started_at);
    let out = f.log_lines("stdout");
    assert_eq!(
        out,
        vec![
            ("F".into(), "hello".into()),
            ("F".into(), "".into()),
            ("P".into(), "partial".into())
        ]
    );
    assert_eq!(f.log_lines("stderr"), vec![("F".into(), "oops".into())]);
    // Timestamps: RFC 3339, UTC, nine fraction digits.
    for line in f.log().lines() {
        let ts = line.split(' ').next().unwrap();
        assert_eq!(ts.len(), 30, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    }
    f.rt.delete(&f.id, false).unwrap();
    assert!(matches!(f.rt.state(&f.id), Err(RuntimeError::NotFound(_))));
    assert!(!f.memory_cgroup_dir().exists());

    let g = Fixture::new("exit0");
    assert_eq!(run_to_exit(&g, &["true"]).exit_code, Some(0));
}

#[test]
fn long_line_is_split_into_partials() {
    let f = Fixture::new("long");
    // 40000 'y' characters and a newline.
    let st = run_to_exit(
        &f,
        &["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' y; echo"],
    );
    assert_eq!(st.exit_code, Some(0));
    let lines = f.log_lines("stdout");
    let tags: Vec<&str> = lines.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, vec!["P", "P", "F"]);
    assert_eq!(lines[0].1.len(), 16384);
    let total: usize = lines.iter().map(|(_, s)| s.len()).sum();
    assert_eq!(total, 40000);
}

#[test]
fn container_sees_its_namespaces_mounts_and_limits() {
    let f = Fixture::new("inside");
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "hostname; id -u; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         ls /dev/null /dev/zero /dev/urandom /dev/pts/ptmx >/dev/null && echo devs-ok; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
         cat /proc/kcore 2>/dev/null | head -c 1 | wc -c; \
         echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro-ok",
    ]);
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(vec!["ro".into(), "nosuid".into()])
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    set_resources(&mut spec, memory_limit(64 << 20, None));
    let st = f.run_to_exit(&spec, T);
    let out: Vec<String> = f.log_lines("stdout").into_iter().map(|(_, s)| s).collect();
    assert_eq!(st.exit_code, Some(0), "log: {}", f.log());
    assert_eq!(out[0], "ctr");
    assert_eq!(out[1], "0");
    assert!(
        out[2].starts_with("sh -c"),
        "pid 1 is the container's sh: {}",
        out[2]
    );
    assert_eq!(out[3], "devs-ok");
    assert_eq!(out[4], (64u64 << 20).to_string());
    assert_eq!(out[5], "0", "/proc/kcore is masked");
    assert_eq!(out[6], "ro-ok", "/proc/sys is read-only");
}

#[test]
fn oom_kill_under_32_mib_is_reported() {
    let f = Fixture::new("oom");
    let mut spec = f.spec(&["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"]);
    set_resources(&mut spec, memory_limit(32 << 20, Some(32 << 20)));
    let st = f.run_to_exit(&spec, T);
    assert_eq!(st.exit_code, Some(137), "log: {}", f.log());
    assert!(st.oom_killed);
}

#[test]
fn sigterm_ignored_then_killed() {
    let f = Fixture::new("term");
    let spec = f.spec(&[
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 1; done",
    ]);
    f.create_start(&spec);
    assert!(wait_until(T, || f.log().contains("ready")));
    f.rt.kill(&f.id, libc::SIGTERM, false).unwrap();
    match f.rt.wait(&f.id, Duration::from_millis(500)) {
        Err(RuntimeError::Timeout { .. }) => {}
        other => panic!("SIGTERM should be ignored, got {other:?}"),
    }
    assert_eq!(f.rt.state(&f.id).unwrap().status, Status::Running);
    // Delete refuses a running container unless forced.
    assert!(matches!(
        f.rt.delete(&f.id, false),
        Err(RuntimeError::InvalidState { .. })
    ));
    f.rt.kill(&f.id, libc::SIGKILL, true).unwrap();
    let st = f.rt.wait(&f.id, T).unwrap();
    assert_eq!(st.exit_code, Some(137));
    assert!(!st.oom_killed);
}

#[test]
fn failed_create_leaves_nothing() {
    let f = Fixture::new("nope");
    let spec = f.spec(&["/bin/nope"]);
    let err = f.rt.create(&f.request(&spec)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(r#"exec "/bin/nope": no such file or directory"#),
        "{msg}"
    );
    assert!(!f
        .rt
        .config()
        .state_root
        .join("containers")
        .join(&f.id)
        .exists());
    assert!(!f.memory_cgroup_dir().exists(), "cgroup left behind");
    assert!(
        wait_until(Duration::from_secs(2), || processes_mentioning(&f.id)
            .is_empty()),
        "a process is left behind"
    );
    assert!(matches!(f.rt.state(&f.id), Err(RuntimeError::NotFound(_))));
}

#[test]
fn container_and_exec_processes_are_in_every_hierarchy_of_their_cgroup() {
    // The container is cloned into its cgroup2 dir and moves itself into the
    // v1 hierarchies (tasks); an exec's process the same way: both must end
    // up exactly where the cgroupsPath says, in every hierarchy.
    let f = Fixture::new("cgjoin");
    let created = f.create_start(&f.spec(&["sleep", "1000"]));
    let want = f.cgroup_path();
    let host = std::fs::read_to_string(format!("/proc/{}/cgroup", created.pid)).unwrap();
    let lines: Vec<&str> = host.lines().filter(|l| !l.contains(":name=")).collect();
    assert!(lines.len() > 1, "{host}");
    for l in &lines {
        assert!(
            l.ends_with(&format!(":{want}")),
            "container: {l} (want {want})"
        );
    }
    let p = common::process(&["cat", "/proc/self/cgroup"]);
    let out = f.rt.exec_sync(&f.id, &p, T).unwrap();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let exec = String::from_utf8_lossy(&out.stdout).into_owned();
    let exec_lines: Vec<&str> = exec.lines().filter(|l| !l.contains(":name=")).collect();
    assert_eq!(
        exec_lines, lines,
        "exec'd process is not where the container is"
    );
}

#[test]
fn exec_sync_output_exit_and_timeout() {
    let f = Fixture::new("exec");
    let spec = f.spec(&["sleep", "1000"]);
    f.create_start(&spec);
    let p = common::process(&["sh", "-c", "echo out; echo err >&2; hostname; exit 5"]);
    let out = f.rt.exec_sync(&f.id, &p, T).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nctr\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 5);
    assert!(!out.timed_out);
    let mut slow = p.clone();
    slow.set_args(Some(vec!["sleep".into(), "30".into()]));
    let t0 = std::time::Instant::now();
    let out =
        f.rt.exec_sync(&f.id, &slow, Duration::from_millis(300))
            .unwrap();
    assert!(out.timed_out);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The timed-out process is gone: only the container's sleep remains.
    assert!(wait_until(Duration::from_secs(2), || {
        let cg = f.memory_cgroup_dir().join("cgroup.procs");
        std::fs::read_to_string(cg)
            .map(|s| s.lines().count() == 1)
            .unwrap_or(false)
    }));
    let stats = f.rt.stats(&f.id).unwrap();
    assert!(stats.memory_usage_bytes > 0);
    assert!(stats.cpu_usage_ns > 0);
    f.rt.delete(&f.id, true).unwrap();
}

#[test]
fn reopen_log_after_rotation() {
    let f = Fixture::new("rotate");
    let spec = f.spec(&[
        "sh",
        "-c",
        "echo one; read x < /dev/null; sleep 1; echo two; sleep 1000",
    ]);
    f.create_start(&spec);
    assert!(wait_until(T, || f.log().contains("one")));
    let rotated = f.log_path().with_extension("log.1");
    std::fs::rename(f.log_path(), &rotated).unwrap();
    f.rt.reopen_log(&f.id).unwrap();
    assert!(wait_until(T, || f.log().contains("two")));
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("two"));
    f.rt.delete(&f.id, true).unwrap();
}

#[test]
fn sandbox_namespaces_shared_by_two_containers() {
    let f = Fixture::new("pod");
    let pod = format!("{}-sb", f.id);
    let ns =
        f.rt.create_sandbox(&SandboxCreate {
            id: pod.clone(),
            hostname: "podhost".into(),
            new_network: true,
            new_ipc: true,
            new_uts: true,
            pod_pid: true,
            shm_size: Some(1 << 20),
            cgroup_parent: None,
        })
        .unwrap();
    // Removes the sandbox even when an assertion below fails.
    struct Guard<'a>(&'a cria_runtime::Runtime, String);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove_sandbox(&self.1);
        }
    }
    let _guard = Guard(&f.rt, pod.clone());
    assert_eq!(f.rt.sandbox(&pod).unwrap(), ns);
    let mut fixtures = Vec::new();
    for i in 0..2 {
        let c = Fixture::new(&format!("podctr{i}"));
        let mut spec = c.spec(&[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid; hostname; cat /sys/class/net/lo/operstate",
        ]);
        let mut linux = spec.linux().clone().unwrap();
        let nss = vec![
            (LinuxNamespaceType::Network, ns.network.clone()),
            (LinuxNamespaceType::Ipc, ns.ipc.clone()),
            (LinuxNamespaceType::Uts, ns.uts.clone()),
            (LinuxNamespaceType::Pid, ns.pid.clone()),
            (LinuxNamespaceType::Mount, None),
        ]
        .into_iter()
        .map(|(t, p)| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = p {
                b = b.path(p);
            }
            b.build().unwrap()
        })
        .collect::<Vec<_>>();
        linux.set_namespaces(Some(nss));
        spec.set_linux(Some(linux));
        c.rt.create(&c.request(&spec)).unwrap();
        c.rt.start(&c.id).unwrap();
        assert_eq!(
            c.rt.wait(&c.id, T).unwrap().exit_code,
            Some(0),
            "{}",
            c.log()
        );
        fixtures.push(c);
    }
    let a: Vec<String> = fixtures[0]
        .log_lines("stdout")
        .into_iter()
        .map(|x| x.1)
        .collect();
    let b: Vec<String> = fixtures[1]
        .log_lines("stdout")
        .into_iter()
        .map(|x| x.1)
        .collect();
    assert_eq!(a, b, "both containers share net, ipc, pid and uts");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(a[0], host_net.to_string_lossy());
    assert_eq!(a[3], "podhost");
    assert!(a[4] == "unknown" || a[4] == "up", "lo is up: {}", a[4]);
    let pause = ns.pause_pid.unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pause}")).exists());
    drop(fixtures);
    f.rt.remove_sandbox(&pod).unwrap();
    f.rt.remove_sandbox(&pod).unwrap(); // idempotent
    assert!(!ns.network.unwrap().exists());
    assert!(wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(format!("/proc/{pause}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }));
}

/// Not a test on its own: the "caller" process of `survives_killing_the_caller`.
#[test]
fn caller_helper() {
    let Ok(state) = std::env::var("CRIA_CALLER_STATE") else {
        return;
    };
    let rt = cria_runtime::Runtime::new(cria_runtime::RuntimeConfig {
        monitor_path: env!("CARGO_BIN_EXE_cria-monitor").into(),
        state_root: state.into(),
    });
    let req = cria_runtime::ContainerCreate {
        id: std::env::var("CRIA_CALLER_ID").unwrap(),
        bundle: std::env::var("CRIA_CALLER_BUNDLE").unwrap().into(),
        log_path: Some(std::env::var("CRIA_CALLER_LOG").unwrap().into()),
        ..Default::default()
    };
    rt.create(&req).unwrap();
    rt.start(&req.id).unwrap();
    println!("started");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn survives_killing_the_caller() {
    let f = Fixture::new("survive");
    let spec = f.spec(&["sh", "-c", "echo alive; while true; do sleep 1; done"]);
    f.write_spec(&spec);
    let mut caller = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["caller_helper", "--exact", "--nocapture"])
        .env("CRIA_CALLER_STATE", &f.rt.config().state_root)
        .env("CRIA_CALLER_ID", &f.id)
        .env("CRIA_CALLER_BUNDLE", &f.bundle)
        .env("CRIA_CALLER_LOG", f.log_path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = wait_until(T, || {
        f.rt.state(&f.id)
            .map(|s| s.status == Status::Running)
            .unwrap_or(false)
    });
    caller.kill().unwrap(); // SIGKILL
    caller.wait().unwrap();
    assert!(running, "the caller did not start the container");
    std::thread::sleep(Duration::from_millis(200));
    let st = f.rt.state(&f.id).unwrap();
    assert_eq!(st.status, Status::Running);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", st.monitor_pid)).unwrap();
    let ppid: i32 = stat
        .rsplit(") ")
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, caller.id() as i32);
    assert!(f.log().contains("alive"));
    f.rt.kill(&f.id, libc::SIGKILL, true).unwrap();
    assert_eq!(f.rt.wait(&f.id, T).unwrap().exit_code, Some(137));
}

#[test]
fn tty_output_is_logged_as_stdout() {
    let f = Fixture::new("tty");
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "echo on-tty; echo also >&2; [ -t 1 ] && echo is-a-tty; readlink /proc/self/fd/0; [ -c /dev/console ] && echo console",
    ]);
    let mut p = spec.process().clone().unwrap();
    p.set_terminal(Some(true));
    spec.set_process(Some(p));
    let mut req = f.request(&spec);
    req.tty = true;
    f.rt.create(&req).unwrap();
    f.rt.start(&f.id).unwrap();
    assert_eq!(
        f.rt.wait(&f.id, T).unwrap().exit_code,
        Some(0),
        "{}",
        f.log()
    );
    let out: Vec<String> = f
        .log_lines("stdout")
        .into_iter()
        .map(|(_, s)| s.trim_end_matches('\r').to_string())
        .collect();
    // The pty comes from the container's own devpts instance.
    assert_eq!(
        out,
        vec!["on-tty", "also", "is-a-tty", "/dev/pts/0", "console"]
    );
    assert!(f.log_lines("stderr").is_empty());
}

#[test]
fn update_resources_reaches_the_live_cgroup() {
    let f = Fixture::new("update");
    let spec = f.spec(&["sleep", "1000"]);
    f.create_start(&spec);
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(48i64 << 20)
                .build()
                .unwrap(),
        )
        .pids(
            oci_spec::runtime::LinuxPidsBuilder::default()
                .limit(20i64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    f.rt.update_resources(&f.id, &res).unwrap();
    let limit =
        std::fs::read_to_string(f.memory_cgroup_dir().join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    let pids = std::path::Path::new("/sys/fs/cgroup/pids")
        .join(f.cgroup_path().trim_start_matches('/'))
        .join("pids.max");
    assert_eq!(std::fs::read_to_string(pids).unwrap().trim(), "20");
    assert!(f.rt.stats(&f.id).unwrap().pids_current >= 1);
    f.rt.delete(&f.id, true).unwrap();
    assert!(!f.memory_cgroup_dir().exists());
}

#[test]
fn created_container_can_be_deleted_without_starting() {
    let f = Fixture::new("created");
    let spec = f.spec(&["sleep", "1000"]);
    let c = f.rt.create(&f.request(&spec)).unwrap();
    let st = f.rt.state(&f.id).unwrap();
    assert_eq!(st.status, Status::Created);
    assert_eq!(st.pid, c.pid);
    assert_eq!(f.rt.list().unwrap(), vec![f.id.clone()]);
    // The process waits in its cgroup, not yet exec'd.
    let procs = std::fs::read_to_string(f.memory_cgroup_dir().join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), c.pid.to_string());
    f.rt.delete(&f.id, false).unwrap();
    assert!(f.rt.list().unwrap().is_empty());
    assert!(!f.memory_cgroup_dir().exists());
    assert!(wait_until(
        Duration::from_secs(2),
        || !std::path::Path::new(&format!("/proc/{}", c.pid)).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", c.pid))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    ));
    assert!(matches!(f.rt.start(&f.id), Err(RuntimeError::NotFound(_))));
}

#[test]
fn bind_mount_through_image_symlink_stays_in_rootfs() {
    let f = Fixture::new("symlink");
    let host_dir = f.tmp.path().join("hostvol");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("file"), "from-volume").unwrap();
    // The image has /data -> /etc: the volume must land on <rootfs>/etc.
    std::os::unix::fs::symlink("/etc", f.rootfs.join("data")).unwrap();
    let hosts = f.tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 pod\n").unwrap();
    let mut spec = f.spec(&["cat", "/etc/file", "/root/hosts"]);
    let mut mounts = spec.mounts().clone().unwrap();
    // A file bind mount (like kubelet's /etc/hosts) onto a missing file.
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/root/hosts")
            .typ("bind")
            .source(&hosts)
            .options(vec!["rbind".into(), "rprivate".into(), "ro".into()])
            .build()
            .unwrap(),
    );
    mounts.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source(&host_dir)
            .options(vec!["rbind".into(), "ro".into()])
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    f.create_start(&spec);
    assert_eq!(
        f.rt.wait(&f.id, T).unwrap().exit_code,
        Some(0),
        "{}",
        f.log()
    );
    assert_eq!(
        f.log_lines("stdout"),
        vec![("F".into(), "from-volume127.0.0.1 pod".into())]
    );
    assert!(!std::path::Path::new("/etc/file").exists());
}

#[test]
fn cpu_pids_and_hugetlb_limits_on_the_hybrid_host() {
    let f = Fixture::new("limits");
    let mut spec = f.spec(&["sleep", "1000"]);
    set_resources(
        &mut spec,
        LinuxResourcesBuilder::default()
            .cpu(
                oci_spec::runtime::LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(20_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .pids(
                oci_spec::runtime::LinuxPidsBuilder::default()
                    .limit(50i64)
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![oci_spec::runtime::LinuxHugepageLimitBuilder::default(
            )
            .page_size("2MB")
            .limit(4i64 << 20)
            .build()
            .unwrap()])
            .build()
            .unwrap(),
    );
    f.rt.create(&f.request(&spec)).unwrap();
    let rel = f.cgroup_path().trim_start_matches('/').to_string();
    let read = |h: &str, file: &str| {
        std::fs::read_to_string(
            std::path::Path::new("/sys/fs/cgroup")
                .join(h)
                .join(&rel)
                .join(file),
        )
        .unwrap_or_else(|e| panic!("{h}/{file}: {e}"))
        .trim()
        .to_string()
    };
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(read("pids", "pids.max"), "50");
    // hugetlb lives only on the cgroup2 mount of this hybrid host.
    if std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| c.contains("hugetlb"))
    {
        assert_eq!(read("unified", "hugetlb.2MB.max"), (4u64 << 20).to_string());
        let pid = f.rt.state(&f.id).unwrap().pid.to_string();
        assert_eq!(read("unified", "cgroup.procs"), pid);
    }
    f.rt.delete(&f.id, false).unwrap();
    assert!(!std::path::Path::new("/sys/fs/cgroup/unified")
        .join(&rel)
        .exists());
    assert!(!std::path::Path::new("/sys/fs/cgroup/cpu")
        .join(&rel)
        .exists());
}

#[test]
fn user_groups_capabilities_and_no_new_privs() {
    let f = Fixture::new("user");
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t ' ' '; pwd",
    ]);
    let mut p = spec.process().clone().unwrap();
    let mut user = p.user().clone();
    user.set_uid(1000);
    user.set_gid(1001);
    user.set_additional_gids(Some(vec![10]));
    p.set_user(user);
    p.set_cwd("/tmp/work".into());
    spec.set_process(Some(p));
    f.create_start(&spec);
    assert_eq!(
        f.rt.wait(&f.id, T).unwrap().exit_code,
        Some(0),
        "{}",
        f.log()
    );
    let out: Vec<String> = f.log_lines("stdout").into_iter().map(|x| x.1).collect();
    assert_eq!(out[0], "1000");
    assert_eq!(out[1], "1001");
    assert!(out[2].split(' ').any(|g| g == "10"), "groups: {}", out[2]);
    // The spec's sets apply whatever the uid, as with runc (Spec::default:
    // AUDIT_WRITE, KILL, NET_BIND_SERVICE = bits 29, 5, 10).
    let capbnd = out.iter().find(|l| l.starts_with("CapBnd")).unwrap();
    assert_eq!(capbnd, "CapBnd: 0000000020000420");
    let capeff = out.iter().find(|l| l.starts_with("CapEff")).unwrap();
    assert_eq!(capeff, "CapEff: 0000000020000420");
    assert!(out.iter().any(|l| l == "NoNewPrivs: 1"));
    assert_eq!(out.last().unwrap(), "/tmp/work");
}

#[test]
fn monitor_killed_means_unknown_and_delete_still_cleans_up() {
    let f = Fixture::new("orphan");
    let spec = f.spec(&["sleep", "1000"]);
    let c = f.create_start(&spec);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.monitor_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(T, || f
        .rt
        .state(&f.id)
        .map(|s| s.status == Status::Unknown)
        .unwrap_or(false)));
    // wait() returns at once for a container nobody watches any more.
    assert_eq!(f.rt.wait(&f.id, T).unwrap().status, Status::Unknown);
    f.rt.delete(&f.id, true).unwrap();
    assert!(!f.memory_cgroup_dir().exists());
    assert!(wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(format!("/proc/{}/stat", c.pid))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }));
}

#[test]
fn monitor_reaps_orphans_as_subreaper() {
    let f = Fixture::new("reap");
    // No PID namespace: the orphaned `sleep` is reparented to the monitor
    // (child subreaper), which must reap it when it exits.
    let mut spec = f.spec(&["sh", "-c", "sh -c 'sleep 0.6 &'; echo forked; sleep 1000"]);
    let mut linux = spec.linux().clone().unwrap();
    let nss: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Pid)
        .collect();
    linux.set_namespaces(Some(nss));
    spec.set_linux(Some(linux));
    let c = f.create_start(&spec);
    assert!(wait_until(T, || f.log().contains("forked")));
    let children_of = |ppid: i32| -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let rest: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
            if rest[1].parse::<i32>() == Ok(ppid) {
                out.push((pid, rest[0].to_string()));
            }
        }
        out
    };
    // The orphan shows up under the monitor, then is reaped (no zombie).
    let orphan_seen = wait_until(Duration::from_secs(2), || {
        children_of(c.monitor_pid).len() >= 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    let kids = children_of(c.monitor_pid);
    assert!(
        kids.iter().all(|(_, s)| s != "Z"),
        "zombies under the monitor: {kids:?}"
    );
    assert_eq!(kids.iter().map(|k| k.0).collect::<Vec<_>>(), vec![c.pid]);
    assert!(orphan_seen, "the orphan never reached the monitor");
    f.rt.delete(&f.id, true).unwrap();
}
