//! Issue 3: container lifecycle — exit codes and reasons, OOM, stop timeout
//! and SIGTERM-ignoring processes, logs, ExecSync, stats, resources.

use std::fs;
use std::time::{Duration, Instant};

use cria_proto::v1;
use cria_tests::expect::{assert_status, ok};
use cria_tests::host::wait_until;
use cria_tests::pod::{
    exec, log_path, parse_log, remove_pod, sh, status, wait_state, PodEnv, EXITED, RUNNING,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn exit_codes_and_reasons() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("exits").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    for (name, script, code, reason) in [
        ("ok", "exit 0", 0, "Completed"),
        ("bad", "exit 3", 3, "Error"),
    ] {
        let id = ok(
            env.create_start(
                &mut rt,
                &pod_id,
                &pod,
                &env.container_config(name, &["sh", "-c", script]),
            )
            .await,
            &env.criad,
        );
        let st = wait_state(&mut rt, &id, EXITED, WAIT).await.expect("exits");
        assert_eq!((st.exit_code, st.reason.as_str()), (code, reason), "{name}");
        assert!(
            st.created_at > 0 && st.started_at >= st.created_at && st.finished_at >= st.started_at,
            "{st:?}"
        );
        assert_eq!(st.image_ref, env.image_id, "image_ref is the image id");
        assert!(
            st.log_path.ends_with(&format!("{name}.log")),
            "{}",
            st.log_path
        );
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn memory_hog_under_32mib_is_oom_killed() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("oom").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    // dd with a 256 MiB block size allocates and fills that buffer.
    let mut cfg = env.container_config(
        "hog",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    cfg.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            memory_swap_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    let st = wait_state(&mut rt, &id, EXITED, WAIT).await.expect("exits");
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    assert_eq!(st.exit_code, 137, "killed by SIGKILL");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn stop_honours_sigterm_and_kills_after_the_timeout() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("stop").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let polite = [
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ];
    let stubborn = [
        "sh",
        "-c",
        "trap '' TERM; sleep 1000 & while true; do sleep 0.1; done",
    ];
    let p = ok(
        env.create_start(
            &mut rt,
            &pod_id,
            &pod,
            &env.container_config("polite", &polite),
        )
        .await,
        &env.criad,
    );
    let s = ok(
        env.create_start(
            &mut rt,
            &pod_id,
            &pod,
            &env.container_config("stubborn", &stubborn),
        )
        .await,
        &env.criad,
    );
    wait_state(&mut rt, &p, RUNNING, WAIT)
        .await
        .expect("running");
    wait_state(&mut rt, &s, RUNNING, WAIT)
        .await
        .expect("running");
    // Give the shells time to install their traps.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t = Instant::now();
    ok(
        rt.stop_container(v1::StopContainerRequest {
            container_id: p.clone(),
            timeout: 30,
        })
        .await,
        &env.criad,
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a process exiting on SIGTERM stops promptly ({:?})",
        t.elapsed()
    );
    let st = status(&mut rt, &p).await.expect("status");
    assert_eq!((st.state, st.exit_code), (EXITED, 0));

    let t = Instant::now();
    ok(
        rt.stop_container(v1::StopContainerRequest {
            container_id: s.clone(),
            timeout: 2,
        })
        .await,
        &env.criad,
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the timeout is honoured ({took:?})"
    );
    assert!(took < Duration::from_secs(15), "then SIGKILL ({took:?})");
    let st = status(&mut rt, &s).await.expect("status");
    assert_eq!((st.state, st.exit_code), (EXITED, 137), "{st:?}");
    // Stop again: idempotent.
    ok(
        rt.stop_container(v1::StopContainerRequest {
            container_id: s.clone(),
            timeout: 2,
        })
        .await,
        &env.criad,
    );
    // The background `sleep 1000` died with it: no process left in the pod's cgroup.
    let cg = pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let left: Vec<i32> = cria_tests::host::cgroup_dirs(&cg)
        .iter()
        .flat_map(|d| cria_tests::host::cgroup_pids(d))
        .collect();
    let alive: Vec<i32> = left
        .into_iter()
        .filter(|p| cria_tests::host::pid_state(*p).is_some_and(|s| s != 'Z'))
        .collect();
    assert!(
        alive.len() <= 1,
        "only the pod's pause may remain: {alive:?}"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn logs_have_cri_format_partial_lines_and_rotate() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("logs").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    // 40000 'x' on one line (longer than the 16 KiB split), stdout and stderr, then a tail without newline.
    let script = "echo out-line; echo err-line >&2; head -c 40000 /dev/zero | tr '\\0' x; echo; printf no-newline";
    let cfg = env.container_config("printer", &["sh", "-c", script]);
    let id = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &id, EXITED, WAIT).await.expect("exits");
    let path = log_path(&pod, &cfg);
    let content = fs::read_to_string(&path).expect("log file");
    let lines = parse_log(&content).expect("every line is `<time> <stream> <P|F> <text>`");
    for l in &lines {
        assert!(
            l.time.len() >= 20 && l.time.as_bytes()[10] == b'T' && l.time.contains('.'),
            "RFC3339Nano: {l:?}"
        );
        assert!(l.stream == "stdout" || l.stream == "stderr", "{l:?}");
        assert!(l.tag == "P" || l.tag == "F", "{l:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.stream == "stdout" && l.tag == "F" && l.text == "out-line"),
        "{content}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == "stderr" && l.tag == "F" && l.text == "err-line"),
        "{content}"
    );
    // The long line: partial chunks then a full one, reassembling to the original.
    let mut long = String::new();
    let mut parts = 0;
    for l in lines
        .iter()
        .filter(|l| l.stream == "stdout" && l.text.starts_with('x'))
    {
        long.push_str(&l.text);
        parts += 1;
        if l.tag == "F" {
            break;
        }
        assert_eq!(l.tag, "P");
    }
    assert_eq!(long.len(), 40000, "long line reassembles");
    assert!(parts >= 3, "split into >= 3 chunks, got {parts}");
    // The unterminated tail is in the log.
    assert!(lines.iter().any(|l| l.text == "no-newline"), "{content}");

    // Rotation: a ticking container, its log renamed, ReopenContainerLog → new file.
    let cfg = env.container_config(
        "ticker",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done",
        ],
    );
    let t = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    let path = log_path(&pod, &cfg);
    let has_ticks = wait_until(WAIT, Duration::from_millis(50), || {
        fs::read_to_string(&path)
            .ok()
            .filter(|c| c.contains("tick 3"))
    })
    .await;
    assert!(has_ticks.is_some(), "ticks logged");
    let rotated = path.with_extension("log.1");
    fs::rename(&path, &rotated).expect("rotate");
    ok(
        rt.reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: t.clone(),
        })
        .await,
        &env.criad,
    );
    let fresh = wait_until(WAIT, Duration::from_millis(50), || {
        fs::read_to_string(&path)
            .ok()
            .filter(|c| c.lines().count() >= 3)
    })
    .await;
    let fresh = fresh.expect("new log file written after reopen");
    assert!(parse_log(&fresh)
        .expect("well-formed")
        .iter()
        .all(|l| l.text.starts_with("tick ")));
    let old = fs::read_to_string(&rotated).expect("rotated file");
    assert!(old.contains("tick 0"), "old lines stay in the rotated file");
    // Reopen of an exited container is refused.
    let err = rt
        .reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("not running");
    assert_ne!(err.code(), Code::Ok);
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeout() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("exec").expect("pod config");
    let (pod_id, c) = ok(
        env.run_pod_and_start(
            &mut rt,
            &pod,
            &env.container_config("c", &["sleep", "3600"]),
        )
        .await,
        &env.criad,
    );
    let r = ok(
        exec(
            &mut rt,
            &c,
            &["sh", "-c", "echo out; echo err >&2; exit 5"],
            10,
        )
        .await,
        &env.criad,
    );
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 5)
    );
    // Runs inside the container: its hostname, root and pid namespace.
    assert_eq!(
        sh(&mut rt, &c, "hostname").await.expect("hostname"),
        "exec\n"
    );
    assert_eq!(
        sh(&mut rt, &c, "cat /proc/1/cmdline | tr '\\0' ' '")
            .await
            .expect("pid 1"),
        "sleep 3600 "
    );
    // Timeout: an error kubelet understands, promptly, and the exec is killed.
    let t = Instant::now();
    let err = exec(&mut rt, &c, &["sh", "-c", "sleep 30"], 1)
        .await
        .expect_err("timeout");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_status(&err, &[Code::DeadlineExceeded], &[]);
    let msg = err.message().to_lowercase();
    assert!(
        msg.contains("timeout") || msg.contains("timed out"),
        "message names the timeout: {msg}"
    );
    let ps = sh(
        &mut rt,
        &c,
        "ps -o comm,args | grep 'sleep 30' | grep -v grep || true",
    )
    .await
    .expect("ps");
    assert!(ps.trim().is_empty(), "timed-out exec left: {ps}");
    // Not even as a zombie (critest's `pgrep sleep` found one): the
    // container's /proc lists PID 1 and this shell (the glob needs no fork).
    let procs = sh(&mut rt, &c, "echo /proc/[0-9]*").await.expect("procs");
    assert_eq!(
        procs.split_whitespace().count(),
        2,
        "timed-out exec left in /proc: {procs}"
    );
    // A missing binary: an error or non-zero exit naming it.
    match exec(&mut rt, &c, &["/no/such/binary"], 5).await {
        Ok(r) => {
            assert_ne!(r.exit_code, 0);
            assert!(
                String::from_utf8_lossy(&r.stderr).contains("/no/such/binary"),
                "{r:?}"
            );
        }
        Err(e) => assert!(e.message().contains("/no/such/binary"), "{e:?}"),
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

/// A stats value; 0 when the field is absent.
fn value_or_zero(v: Option<v1::UInt64Value>) -> u64 {
    v.map(|v| v.value).unwrap_or(0)
}

/// Bytes used by the container's writable layer, per its stats.
fn writable_layer_bytes(s: &v1::ContainerStats) -> u64 {
    value_or_zero(s.writable_layer.as_ref().and_then(|w| w.used_bytes))
}

#[tokio::test]
async fn stats_are_non_zero() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("stats").expect("pod config");
    let busy = ["sh", "-c", "head -c 20000000 /dev/urandom > /tmp/blob; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 3600"];
    let (pod_id, c) = ok(
        env.run_pod_and_start(&mut rt, &pod, &env.container_config("busy", &busy))
            .await,
        &env.criad,
    );
    // Wait (bounded) until the 20 MB file is written into the writable layer.
    let mut last = None;
    for _ in 0..200 {
        let s = ok(
            rt.container_stats(v1::ContainerStatsRequest {
                container_id: c.clone(),
            })
            .await,
            &env.criad,
        )
        .into_inner()
        .stats
        .expect("stats");
        let wl = writable_layer_bytes(&s);
        last = Some(s);
        if wl >= 20_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = last.expect("stats");
    let cpu = value_or_zero(s.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds));
    let mem = value_or_zero(s.memory.as_ref().and_then(|m| m.working_set_bytes));
    let wl = writable_layer_bytes(&s);
    let inodes = value_or_zero(s.writable_layer.as_ref().and_then(|w| w.inodes_used));
    assert!(cpu > 0, "cpu {s:?}");
    assert!(mem > 0, "memory {s:?}");
    assert!(
        wl >= 20_000_000,
        "writable layer holds the 20 MB file: {s:?}"
    );
    assert!(inodes >= 1, "{s:?}");
    assert_eq!(s.attributes.as_ref().map(|a| a.id.clone()), Some(c.clone()));
    let list = ok(
        rt.list_container_stats(v1::ListContainerStatsRequest { filter: None })
            .await,
        &env.criad,
    )
    .into_inner()
    .stats;
    assert!(list
        .iter()
        .any(|s| s.attributes.as_ref().map(|a| a.id.as_str()) == Some(c.as_str())));
    let ps = ok(
        rt.pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await,
        &env.criad,
    )
    .into_inner()
    .stats
    .expect("pod stats");
    let pcpu = value_or_zero(
        ps.linux
            .as_ref()
            .and_then(|l| l.cpu.as_ref())
            .and_then(|c| c.usage_core_nano_seconds),
    );
    assert!(pcpu > 0, "pod cpu {ps:?}");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn resources_are_visible_inside_and_updatable() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("res").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let mut cfg = env.container_config("c", &["sleep", "3600"]);
    cfg.linux = Some(v1::LinuxContainerConfig {
        resources: Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let c = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    // The container reads its own cgroup files: at /sys/fs/cgroup/<ctrl>/ (cgroup
    // namespace or bind of its own dir), else under the path /proc/self/cgroup names.
    let read = |ctrl: &'static str, file: &'static str| {
        format!(
            "f=/sys/fs/cgroup/{ctrl}/{file}; [ -r $f ] || f=/sys/fs/cgroup/{ctrl}$(grep -E ':({ctrl}|[^:]*,{ctrl}|{ctrl},[^:]*):' /proc/self/cgroup | cut -d: -f3)/{file}; cat $f"
        )
    };
    let mem = sh(&mut rt, &c, &read("memory", "memory.limit_in_bytes"))
        .await
        .expect("memory limit inside");
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let quota = sh(&mut rt, &c, &read("cpu", "cpu.cfs_quota_us"))
        .await
        .expect("quota inside");
    assert_eq!(quota.trim(), "50000");
    let period = sh(&mut rt, &c, &read("cpu", "cpu.cfs_period_us"))
        .await
        .expect("period inside");
    assert_eq!(period.trim(), "100000");
    let shares = sh(&mut rt, &c, &read("cpu", "cpu.shares"))
        .await
        .expect("shares inside");
    assert_eq!(shares.trim(), "512");

    // UpdateContainerResources applies to the live cgroup.
    let upd = v1::UpdateContainerResourcesRequest {
        container_id: c.clone(),
        linux: Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            cpu_period: 100_000,
            cpu_quota: 25_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    };
    ok(rt.update_container_resources(upd).await, &env.criad);
    let mem = sh(&mut rt, &c, &read("memory", "memory.limit_in_bytes"))
        .await
        .expect("memory limit inside");
    assert_eq!(mem.trim(), (96u64 << 20).to_string());
    let quota = sh(&mut rt, &c, &read("cpu", "cpu.cfs_quota_us"))
        .await
        .expect("quota inside");
    assert_eq!(quota.trim(), "25000");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
