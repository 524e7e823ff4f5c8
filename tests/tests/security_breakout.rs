//! Issue 6: the classic container-escape classes, each tried from inside a
//! container run through criad's socket, and each failing.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cria_proto::v1;
use cria_tests::criad::criad_binary;
use cria_tests::expect::ok;
use cria_tests::pod::{exec, remove_pod, sh, wait_state, PodEnv, RUNNING};

const WAIT: Duration = Duration::from_secs(30);

/// Starts a `sleep` container (pid 1 is busybox's sleep) in a new pod.
async fn sleeper(
    env: &PodEnv,
    rt: &mut cria_tests::RuntimeClient,
    name: &str,
    sc: v1::LinuxContainerSecurityContext,
) -> (String, String) {
    let pod = env.pod_config(name).expect("pod config");
    let pod_id = ok(env.run_pod(rt, &pod).await, &env.criad);
    let mut cfg = env.container_config(name, &["sleep", "600"]);
    cfg.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    let id = ok(env.create_start(rt, &pod_id, &pod, &cfg).await, &env.criad);
    wait_state(rt, &id, RUNNING, WAIT).await.expect("runs");
    (pod_id, id)
}

fn sha_of(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).expect("read binary")).to_vec()
}

#[tokio::test]
async fn the_runtime_binary_cannot_be_overwritten_from_inside() {
    // CVE-2019-5736 class: a container writing through /proc/<pid>/exe.
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let monitor = criad_binary()
        .expect("criad")
        .with_file_name("cria-monitor");
    let before = sha_of(&monitor);
    let (pod_id, id) = sleeper(&env, &mut rt, "exe", Default::default()).await;
    // Every process the container sees, and what their exe is; then try to
    // open each for writing (the exec'd shell itself included).
    let out = sh(
        &mut rt,
        &id,
        "for p in /proc/[0-9]*; do readlink $p/exe; done; \
         for p in /proc/[0-9]*; do (echo pwned >> $p/exe) 2>/dev/null && echo WROTE $p; done; \
         echo done",
    )
    .await
    .expect("probe");
    assert!(!out.contains("cria"), "no runtime binary is visible: {out}");
    assert!(!out.contains("WROTE"), "no exe opened for writing: {out}");
    assert!(out.ends_with("done\n"), "{out}");
    assert_eq!(
        sha_of(&monitor),
        before,
        "cria-monitor on the host unchanged"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn only_stdio_reaches_the_container_and_cwd_is_inside() {
    // CVE-2024-21626 class: a leaked fd or a cwd outside the rootfs.
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let (pod_id, id) = sleeper(&env, &mut rt, "fds", Default::default()).await;
    let out = sh(
        &mut rt,
        &id,
        "ls /proc/1/fd; readlink /proc/1/cwd; readlink /proc/1/root",
    )
    .await
    .expect("pid 1");
    assert_eq!(
        out, "0\n1\n2\n/\n/\n",
        "pid 1: only stdio, cwd and root inside"
    );
    // The exec'd process: stdio plus ls's own directory fd.
    let r = exec(&mut rt, &id, &["ls", "/proc/self/fd"], 20)
        .await
        .expect("exec");
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "0\n1\n2\n3\n",
        "exec: only stdio"
    );
    let out = sh(
        &mut rt,
        &id,
        "cd /proc/self/cwd && pwd -P; ls /proc/self/fd/ | wc -l",
    )
    .await
    .expect("cwd");
    assert!(out.starts_with("/\n"), "exec cwd resolves inside: {out}");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn proc_and_sys_are_masked_and_read_only() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let (pod_id, id) = sleeper(&env, &mut rt, "masked", Default::default()).await;
    // Masked files (those this kernel has: it may lack /proc/kcore) are
    // /dev/null binds reading empty.
    let out = sh(
        &mut rt,
        &id,
        "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
           [ -e $f ] || continue; \
           echo $f $(grep -c \" $f \" /proc/self/mountinfo) $(cat $f 2>/dev/null | wc -c); \
         done",
    )
    .await
    .expect("masked files");
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty(), "no masked file present at all");
    for l in &lines {
        assert!(l.ends_with(" 1 0"), "masked (one mount, empty): {l}");
    }
    let out = sh(
        &mut rt,
        &id,
        "(echo h > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=written || echo sysrq=refused; \
         (echo 1 > /proc/sys/kernel/panic) 2>/dev/null && echo procsys=written || echo procsys=refused; \
         echo firmware=$(ls /sys/firmware | wc -l); \
         (touch /sys/x) 2>/dev/null && echo sys=written || echo sys=refused",
    )
    .await
    .expect("probe");
    assert_eq!(
        out,
        "sysrq=refused\nprocsys=refused\nfirmware=0\nsys=refused\n"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn no_host_devices_no_mknod_without_cap_no_mount() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    // A block device of this host, by major:minor.
    let disk = std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .find_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().replace(':', " "))
        .unwrap_or_else(|| "8 0".into());
    let (pod_id, id) = sleeper(&env, &mut rt, "dev", Default::default()).await;
    let script = format!(
        "ls /dev | grep -E '^(sd|vd|nvme|xvd|mem|kmem|port|kmsg)' ; \
         mknod /tmp/disk b {disk} && echo mknod=ok; \
         (head -c1 /tmp/disk >/dev/null) 2>/dev/null && echo disk=read || echo disk=refused; \
         mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=refused"
    );
    let r = exec(&mut rt, &id, &["sh", "-c", &script], 20)
        .await
        .expect("exec");
    // CAP_MKNOD is in containerd's default set: the node is made, but the
    // device cgroup keeps it closed.
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "mknod=ok\ndisk=refused\nmount=refused\n"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
    let no_mknod = v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability {
            drop_capabilities: vec!["MKNOD".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let (pod_id, id) = sleeper(&env, &mut rt, "nomknod", no_mknod).await;
    let out = sh(
        &mut rt,
        &id,
        &format!("mknod /tmp/disk b {disk} 2>/dev/null && echo mknod=ok || echo mknod=refused"),
    )
    .await
    .expect("probe");
    assert_eq!(out, "mknod=refused\n");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn the_socket_and_state_dirs_are_root_only() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let (pod_id, id) = sleeper(&env, &mut rt, "perms", Default::default()).await;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{p:?}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&env.criad.socket()), 0o600, "CRI socket");
    let container_dir = env.criad.state().join("containers").join(&id);
    for d in [env.criad.root(), env.criad.state(), container_dir] {
        assert_eq!(
            mode(&d) & 0o077,
            0,
            "{d:?} is open to others: {:o}",
            mode(&d)
        );
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn mount_targets_through_image_symlinks_stay_in_the_rootfs() {
    // /data → /etc and /up → ../../…/tmp in the image: a volume at /data or
    // /up/x must land in the container's /etc and /tmp, never the host's.
    let env = PodEnv::start().await.expect("env");
    cria_tests::fixtures::Fixture::get("symlinks")
        .expect("fixture")
        .push(&env.registry, "latest", "library/symlinks:latest", &[])
        .expect("push");
    let image = format!("{}/library/symlinks:latest", env.registry.host());
    let mut images = env.criad.images().await.expect("images");
    ok(
        cria_tests::client::pull(&mut images, &image, None).await,
        &env.criad,
    );
    let mut rt = env.rt().await.expect("client");
    let vol = tempfile::tempdir().expect("tempdir");
    std::fs::write(vol.path().join("marker"), "inside\n").expect("marker");
    let host_mounts = || std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let before = host_mounts();
    let pod = env.pod_config("symlinks").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let mut cfg = env.container_config("links", &["sleep", "600"]);
    cfg.image = Some(cria_tests::client::image_spec(&image));
    cfg.mounts = ["/data", "/up/vol"]
        .iter()
        .map(|p| v1::Mount {
            container_path: p.to_string(),
            host_path: vol.path().to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        })
        .collect();
    let id = ok(
        env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
        &env.criad,
    );
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
    let out = sh(&mut rt, &id, "cat /etc/marker /tmp/vol/marker")
        .await
        .expect("inside");
    assert_eq!(
        out, "inside\ninside\n",
        "both volumes landed inside the rootfs"
    );
    let after = host_mounts();
    for line in after.lines().filter(|l| !before.contains(*l)) {
        let target = line.split(' ').nth(4).unwrap_or("");
        assert!(
            target != "/etc" && target != "/tmp/vol" && target != "/tmp",
            "a host path got a mount: {line}"
        );
    }
    assert!(
        !std::path::Path::new("/tmp/vol").exists(),
        "nothing made on the host's /tmp"
    );
    assert!(
        !std::path::Path::new("/etc/marker").exists(),
        "host /etc untouched"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
