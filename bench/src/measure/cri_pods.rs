//! Measurements through CRI on one criad and one containerd started side by
//! side: 2. pod start (and 7. RunPodSandbox with the bridge plugin),
//! 4. memory, 5. density, 6. list latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cria_proto::v1;
use cria_tests::RuntimeClient;

use super::Ctx;
use crate::cri::{self, ms, start_pod, start_pod_with};
use crate::procmem::Mem;
use crate::stats::Samples;
use crate::systems::{start_both, System};

const POD_START: &str = "pod start: RunPodSandbox → exit of `true` seen";
const RUN_POD: &str = "RunPodSandbox (bridge CNI)";
const SECCOMP_POD_START: &str = "pod start (criad), seccomp RuntimeDefault vs Unconfined";
const SLEEP: &[&str] = &["sleep", "3600"];
/// Settling time before memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs measurements 2, 4, 5, 6 and 7.
pub async fn measure(ctx: &mut Ctx, only: Option<&str>) -> Result<()> {
    let systems = start_both(&ctx.images.registry.host(), &ctx.images.pause).await?;
    for s in &systems {
        let mut im = s.images().await?;
        cri::pull(&mut im, &ctx.images.small).await?;
        cri::pull(&mut im, &ctx.images.pause).await?;
    }
    let want = |name: &str| only.is_none_or(|o| o == name);
    if want("memory") {
        idle_memory(ctx, &systems);
    }
    if want("pod") {
        pod_start(ctx, &systems).await?;
        seccomp_pod_start(ctx, &systems[0]).await?;
    }
    if want("memory") {
        memory(ctx, &systems).await?;
    }
    if want("density") {
        density(ctx, &systems).await?;
    }
    if want("list") {
        list(ctx, &systems).await?;
    }
    for s in &systems {
        cri::remove_all_pods(&mut s.runtime().await?).await?;
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn one(v: f64) -> Samples {
    let mut s = Samples::default();
    s.push(v);
    s
}

fn idle_memory(ctx: &mut Ctx, systems: &[System; 2]) {
    std::thread::sleep(SETTLE);
    let series = |f: fn(&Mem) -> u64| {
        systems
            .iter()
            .map(|s| (s.kind().name().to_string(), one(mib(f(&s.memory().0)))))
            .collect::<Vec<_>>()
    };
    let rss = series(|m| m.rss_kib);
    let pss = series(|m| m.pss_kib);
    ctx.report.figure(
        "4. memory",
        "daemon idle RSS (images pulled, no pods)",
        "MiB",
        rss,
    );
    ctx.report
        .figure("4. memory", "daemon idle PSS", "MiB", pss);
    let missed = ctx.report.target_ratio(
        "criad idle RSS ≤ 0.3× containerd (issue 8)",
        "daemon idle RSS (images pulled, no pods)",
        "containerd",
        0.3,
    ) == Some(false);
    if missed {
        // Where the resident memory is: the kernel's own breakdown.
        if let Some(pid) = systems[0].daemon_pid() {
            let rollup =
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let threads = status
                .lines()
                .find(|l| l.starts_with("Threads:"))
                .unwrap_or("")
                .to_string();
            let rss = status
                .lines()
                .filter(|l| l.starts_with("Rss") || l.starts_with("VmRSS"))
                .collect::<Vec<_>>()
                .join("\n");
            ctx.report.profiles.push((
                "criad idle memory (/proc/<criad>/status and smaps_rollup)".into(),
                format!("{threads}\n{rss}\n{rollup}"),
            ));
        }
    }
}

async fn pod_start(ctx: &mut Ctx, systems: &[System; 2]) -> Result<()> {
    let mut clients = Vec::new();
    for s in systems {
        clients.push(s.runtime().await?);
    }
    let image = ctx.images.small.clone();
    // (total, run_pod, create, start, exit_seen) per system.
    let mut t: Vec<[Samples; 5]> = vec![Default::default(), Default::default()];
    // One untimed warm-up each.
    for (k, s) in systems.iter().enumerate() {
        let (pod, _) = start_pod(s, &mut clients[k], "warm", &image, &["true"], true).await?;
        cri::remove_pod(&mut clients[k], &pod).await?;
    }
    let n = ctx.runs(20);
    for i in 0..n {
        for step in 0..2 {
            let k = (i + step) % 2;
            let (pod, p) = start_pod(
                &systems[k],
                &mut clients[k],
                &format!("p{i}"),
                &image,
                &["true"],
                true,
            )
            .await
            .with_context(|| format!("pod start on {}", systems[k].kind().name()))?;
            for (j, d) in [p.total, p.run_pod, p.create, p.start, p.exit_seen]
                .into_iter()
                .enumerate()
            {
                t[k][j].push(ms(d));
            }
            cri::remove_pod(&mut clients[k], &pod).await?;
        }
    }
    let names: Vec<String> = systems
        .iter()
        .map(|s| s.kind().name().to_string())
        .collect();
    let fig = |j: usize| {
        names
            .iter()
            .cloned()
            .zip(t.iter().map(|x| x[j].clone()))
            .collect()
    };
    ctx.report.figure("2. pod start", POD_START, "ms", fig(0));
    ctx.report.figure("7. network", RUN_POD, "ms", fig(1));
    for (j, rpc) in [
        (1, "RunPodSandbox"),
        (2, "CreateContainer"),
        (3, "StartContainer"),
        (
            4,
            "exit seen after StartContainer (ContainerStatus polls, 2 ms)",
        ),
    ] {
        for (k, name) in names.iter().enumerate() {
            ctx.report.rpcs.push(crate::report::RpcRow {
                rpc: rpc.into(),
                system: name.clone(),
                samples: t[k][j].clone(),
            });
        }
    }
    ctx.report.notes.push(format!(
        "Pod start: {n} runs per system after one warm-up, the same tonic client over the unix \
         socket, busybox `true` from the loopback registry, the same bridge+host-local+portmap \
         CNI list (own bridge and subnet per system); StopPodSandbox+RemovePodSandbox after each \
         run are not timed. containerd also starts its pause container in RunPodSandbox (runc)."
    ));
    note_pod_ip(ctx, &systems[0], &mut clients[0], &image).await;
    let missed = ctx.report.target_ratio(
        "pod start ≤ 0.5× containerd (issue 8)",
        POD_START,
        "containerd",
        0.5,
    ) == Some(false);
    ctx.report.target_ratio(
        "pod start faster than containerd (issue 3)",
        POD_START,
        "containerd",
        1.0,
    );
    ctx.report.target_ratio(
        "RunPodSandbox with bridge ≤ containerd's (issue 4)",
        RUN_POD,
        "containerd",
        1.0,
    );
    if missed && !ctx.quick {
        let tracer = systems[0].daemon_pid().and_then(|p| ctx.begin_profile(p));
        for i in 0..5 {
            if let Ok((pod, _)) = start_pod(
                &systems[0],
                &mut clients[0],
                &format!("prof{i}"),
                &image,
                &["true"],
                true,
            )
            .await
            {
                let _ = cri::remove_pod(&mut clients[0], &pod).await;
            }
        }
        ctx.end_profile("criad during 5 pod starts (`strace -c -w -f -p <criad>`; monitors are separate processes and not included)", tracer);
    }
    Ok(())
}

/// Pod start on criad alone with the container's seccomp RuntimeDefault vs
/// Unconfined (issue 6: confinement must not make start measurably slower),
/// interleaved run by run like the system pairs.
async fn seccomp_pod_start(ctx: &mut Ctx, criad: &System) -> Result<()> {
    use v1::security_profile::ProfileType;
    let mut c = criad.runtime().await?;
    let image = ctx.images.small.clone();
    let modes = [
        ("criad RuntimeDefault", ProfileType::RuntimeDefault),
        ("criad Unconfined", ProfileType::Unconfined),
    ];
    let cfg = |p: ProfileType, cmd: &[&str]| {
        cri::with_seccomp(cri::container_config("c", &image, cmd), p)
    };
    let cfgs = modes.map(|(_, p)| cfg(p, &["true"]));
    // (total, create, start) per mode: seccomp is built in CreateContainer
    // and loaded by the container's init at StartContainer.
    let mut t: [[Samples; 3]; 2] = Default::default();
    // The untimed warm-up of each mode proves the mode took effect: the
    // container exits 0 only if its seccomp mode (2 filter, 0 none) is the
    // one asked for, otherwise start_pod_with fails.
    for (k, (name, p)) in modes.iter().enumerate() {
        let mode = if k == 0 { 2 } else { 0 };
        let check = format!("grep -q '^Seccomp:[[:space:]]*{mode}$' /proc/self/status");
        let (pod, _) = start_pod_with(
            criad,
            &mut c,
            &format!("swarm{k}"),
            &cfg(*p, &["sh", "-c", &check]),
            true,
        )
        .await
        .with_context(|| format!("{name}: the container's seccomp mode is not {mode}"))?;
        cri::remove_pod(&mut c, &pod).await?;
    }
    // As for the runtime's seccomp pair: a small difference against the
    // run-to-run spread needs more samples than the other rows.
    let n = ctx.runs(40);
    for i in 0..n {
        for step in 0..2 {
            let k = (i + step) % 2;
            let (pod, p) = start_pod_with(criad, &mut c, &format!("s{i}-{k}"), &cfgs[k], true)
                .await
                .with_context(|| format!("pod start on {}", modes[k].0))?;
            for (j, d) in [p.total, p.create, p.start].into_iter().enumerate() {
                t[k][j].push(ms(d));
            }
            cri::remove_pod(&mut c, &pod).await?;
        }
    }
    let fig = |j: usize| {
        modes
            .iter()
            .zip(&t)
            .map(|((name, _), x)| (name.to_string(), x[j].clone()))
            .collect()
    };
    ctx.report
        .figure("2. pod start", SECCOMP_POD_START, "ms", fig(0));
    ctx.report.figure(
        "2. pod start",
        "CreateContainer, seccomp RuntimeDefault vs Unconfined",
        "ms",
        fig(1),
    );
    ctx.report.figure(
        "2. pod start",
        "StartContainer, seccomp RuntimeDefault vs Unconfined",
        "ms",
        fig(2),
    );
    ctx.report.notes.push(format!(
        "Seccomp (issue 6): criad alone, {n} runs per mode after one warm-up each (which checks \
         the container's Seccomp mode in /proc/self/status), interleaved; the same pod start \
         as above with the container's security_context.seccomp set to RuntimeDefault or \
         Unconfined; cria/this in those rows is RuntimeDefault over Unconfined."
    ));
    ctx.report.target_ratio(
        "pod start with seccomp RuntimeDefault ≤ 1.05× Unconfined (issue 6: not measurably slower)",
        SECCOMP_POD_START,
        "criad Unconfined",
        1.05,
    );
    Ok(())
}

/// Records whether criad gave the pod an address from the bridge plugin.
async fn note_pod_ip(ctx: &mut Ctx, sys: &System, c: &mut RuntimeClient, image: &str) {
    let Ok((pod, _)) = start_pod(sys, c, "ipcheck", image, &["true"], false).await else {
        return;
    };
    let ip = c
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().status?.network.map(|n| n.ip))
        .unwrap_or_default();
    let _ = cri::remove_pod(c, &pod).await;
    ctx.report.notes.push(if ip.is_empty() {
        "criad gave its pods no pod IP: CNI is not yet wired into RunPodSandbox, so criad's \
         RunPodSandbox did NOT run the bridge plugin — its pod-start and RunPodSandbox figures \
         exclude the CNI ADD/DEL that containerd's include."
            .into()
    } else {
        format!("criad pods got their IP from the bridge plugin (e.g. {ip}): both systems ran the same CNI ADD.")
    });
}

/// Starts pods `from..to` with a `sleep` container each, `parallel` at a time.
/// Returns (seconds, failures).
async fn start_many(
    sys: &System,
    image: &str,
    prefix: &str,
    from: usize,
    to: usize,
    parallel: usize,
) -> Result<(f64, usize)> {
    let next = Arc::new(AtomicUsize::new(from));
    let fails = Arc::new(AtomicUsize::new(0));
    let client = sys.runtime().await?;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (next, fails, mut c) = (next.clone(), fails.clone(), client.clone());
        let image = image.to_owned();
        let prefix = prefix.to_owned();
        // Configs are built here: `System` is not shared with the tasks.
        let mk = {
            let cgroup_parent = sys.cgroup_parent.clone();
            let log_dir = sys.log_dir.clone();
            move |name: &str| crate::cri::pod_config_parts(&cgroup_parent, &log_dir, name)
        };
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= to {
                    break;
                }
                let pod_cfg = mk(&format!("{prefix}{i}"));
                let ok = start_with(&mut c, &pod_cfg, &image).await.is_ok();
                if !ok {
                    fails.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok((t.elapsed().as_secs_f64(), fails.load(Ordering::SeqCst)))
}

async fn start_with(
    c: &mut RuntimeClient,
    pod_cfg: &v1::PodSandboxConfig,
    image: &str,
) -> Result<()> {
    let (pod, _) = cri::run_pod(c, pod_cfg).await?;
    let ctr = cri::container_config("c", image, SLEEP);
    let (id, _) = cri::create(c, &pod, pod_cfg, &ctr).await?;
    cri::start(c, &id).await?;
    Ok(())
}

/// Removes every pod, `parallel` at a time.
async fn remove_all(sys: &System, parallel: usize) -> Result<()> {
    let mut c = sys.runtime().await?;
    let pods = c
        .list_pod_sandbox(v1::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    for chunk in pods.chunks(parallel.max(1)) {
        let mut tasks = Vec::new();
        for p in chunk {
            let (mut c, id) = (c.clone(), p.id.clone());
            tasks.push(tokio::spawn(
                async move { cri::remove_pod(&mut c, &id).await },
            ));
        }
        for t in tasks {
            t.await??;
        }
    }
    Ok(())
}

async fn memory(ctx: &mut Ctx, systems: &[System; 2]) -> Result<()> {
    let levels: Vec<usize> = if ctx.quick {
        vec![1, 10]
    } else {
        vec![1, 10, 100]
    };
    let image = ctx.images.small.clone();
    let mut have = [0usize; 2];
    for &level in &levels {
        let mut daemon_rss = Vec::new();
        let mut total_rss = Vec::new();
        let mut total_pss = Vec::new();
        for (k, s) in systems.iter().enumerate() {
            let (_, fails) = start_many(s, &image, "mem", have[k], level, 10).await?;
            anyhow::ensure!(
                fails == 0,
                "{} failed to start {fails} memory pods",
                s.kind().name()
            );
            have[k] = level;
        }
        tokio::time::sleep(SETTLE).await;
        for s in systems {
            let (d, h) = s.memory();
            let name = s.kind().name().to_string();
            daemon_rss.push((name.clone(), one(mib(d.rss_kib))));
            total_rss.push((name.clone(), one(mib(d.rss_kib + h.rss_kib))));
            total_pss.push((name, one(mib(d.pss_kib + h.pss_kib))));
        }
        ctx.report.figure(
            "4. memory",
            &format!("daemon + monitors/shims RSS, {level} running"),
            "MiB",
            total_rss,
        );
        ctx.report.figure(
            "4. memory",
            &format!("daemon + monitors/shims PSS, {level} running"),
            "MiB",
            total_pss,
        );
        ctx.report.figure(
            "4. memory",
            &format!("daemon alone RSS, {level} running"),
            "MiB",
            daemon_rss,
        );
    }
    // Per-helper RSS at the top level: one sample per monitor / shim.
    let per: Vec<(String, Samples)> = systems
        .iter()
        .map(|s| {
            let mut v = Samples::default();
            for pid in s.helper_pids() {
                let m = crate::procmem::of_pids(&[pid]);
                if m.procs == 1 {
                    v.push(mib(m.rss_kib));
                }
            }
            (s.kind().name().to_string(), v)
        })
        .collect();
    let top = levels.last().copied().unwrap_or(0);
    let per_name = "per-container monitor (criad) / per-pod shim (containerd) RSS";
    ctx.report.figure("4. memory", per_name, "MiB", per);
    ctx.report.notes.push(format!(
        "Memory: pods with one `sleep` container each, started 10 at a time, levels {levels:?}; RSS and \
         PSS summed from /proc/<pid>/smaps_rollup of the daemon and its helpers (criad: the \
         cria-monitor of each container, from <state>/containers/*/monitor.pid; containerd: every \
         containerd-shim-runc-v2 with our socket in its command line; the containers' own processes \
         and containerd's pause processes are not counted). Each level is one reading (n = 1); the \
         per-helper row has one sample per helper at {top} pods."
    ));
    ctx.report.target_abs(
        "per-container monitor RSS ≤ 1 MiB (issues 3, 8)",
        per_name,
        "criad",
        1.0,
    );
    for s in systems {
        remove_all(s, 10).await?;
    }
    Ok(())
}

async fn density(ctx: &mut Ctx, systems: &[System; 2]) -> Result<()> {
    let pods = ctx.size(100, 20);
    let par = ctx.size(10, 5);
    let mut time = [Samples::default(), Samples::default()];
    let mut fails = [Samples::default(), Samples::default()];
    let runs = ctx.runs(3);
    for i in 0..runs {
        for step in 0..2 {
            let k = (i + step) % 2;
            let (secs, f) = start_many(
                &systems[k],
                &ctx.images.small,
                &format!("d{i}-"),
                0,
                pods,
                par,
            )
            .await?;
            time[k].push(secs);
            fails[k].push(f as f64);
            remove_all(&systems[k], 10).await?;
        }
    }
    let names: Vec<String> = systems
        .iter()
        .map(|s| s.kind().name().to_string())
        .collect();
    let name = format!("{pods} pods, {par} in parallel: total time");
    ctx.report.figure(
        "5. density",
        &name,
        "s",
        names.iter().cloned().zip(time).collect(),
    );
    ctx.report.figure(
        "5. density",
        &format!("{pods} pods, {par} in parallel: failures"),
        "pods",
        names.into_iter().zip(fails).collect(),
    );
    ctx.report.notes.push(format!(
        "Density: {runs} runs per system (slow), each RunPodSandbox → CreateContainer → StartContainer \
         of a `sleep` container for {pods} pods by {par} concurrent tasks sharing one connection; \
         removal afterwards not timed."
    ));
    Ok(())
}

async fn list(ctx: &mut Ctx, systems: &[System; 2]) -> Result<()> {
    let total = ctx.size(500, 50);
    let pods = 10;
    let per = total / pods;
    for s in systems {
        let mut tasks = Vec::new();
        for p in 0..pods {
            let c = s.runtime().await?;
            let pod_cfg = crate::cri::pod_config(s, &format!("list{p}"));
            let image = ctx.images.small.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = c;
                let (pod, _) = cri::run_pod(&mut c, &pod_cfg).await?;
                for j in 0..per {
                    let cfg = cri::container_config(&format!("c{j}"), &image, &["true"]);
                    let (id, _) = cri::create(&mut c, &pod, &pod_cfg, &cfg).await?;
                    cri::start(&mut c, &id).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await?
                .with_context(|| format!("creating list containers on {}", s.kind().name()))?;
        }
    }
    let mut clients = Vec::new();
    for s in systems {
        clients.push(s.runtime().await?);
    }
    let mut lc = [Samples::default(), Samples::default()];
    let mut lp = [Samples::default(), Samples::default()];
    for i in 0..ctx.runs(20) {
        for step in 0..2 {
            let k = (i + step) % 2;
            let c = &mut clients[k];
            let t = Instant::now();
            let n = c
                .list_containers(v1::ListContainersRequest::default())
                .await?
                .into_inner()
                .containers
                .len();
            lc[k].push(ms(t.elapsed()));
            anyhow::ensure!(
                n >= total,
                "{} listed {n} containers, expected {total}",
                systems[k].kind().name()
            );
            let t = Instant::now();
            c.list_pod_sandbox(v1::ListPodSandboxRequest::default())
                .await?;
            lp[k].push(ms(t.elapsed()));
        }
    }
    let names: Vec<String> = systems
        .iter()
        .map(|s| s.kind().name().to_string())
        .collect();
    ctx.report.figure(
        "6. list",
        &format!("ListContainers, {total} containers"),
        "ms",
        names.iter().cloned().zip(lc).collect(),
    );
    ctx.report.figure(
        "6. list",
        &format!("ListPodSandbox, {pods} pods"),
        "ms",
        names.into_iter().zip(lp).collect(),
    );
    let slower = ctx
        .report
        .find(&format!("ListContainers, {total} containers"))
        .and_then(|f| {
            let c = f.series.first()?.1.summary()?;
            let d = f.series.get(1)?.1.summary()?;
            Some(c.median > d.median)
        })
        == Some(true);
    if slower && !ctx.quick {
        let tracer = systems[0].daemon_pid().and_then(|p| ctx.begin_profile(p));
        for _ in 0..20 {
            let _ = clients[0]
                .list_containers(v1::ListContainersRequest::default())
                .await;
        }
        ctx.end_profile(
            &format!("criad during 20 ListContainers with {total} containers (`strace -c -w -f -p <criad>`)"),
            tracer,
        );
    }
    ctx.report.notes.push(format!(
        "List: {pods} pods × {per} exited `true` containers per system; {} calls of each RPC per system, interleaved.",
        ctx.runs(20)
    ));
    for s in systems {
        remove_all(s, 10).await?;
    }
    Ok(())
}
