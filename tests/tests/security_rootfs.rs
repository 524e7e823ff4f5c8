//! Issue 6: hostile image content at the rootfs level. Pull refuses layers
//! that write through symlinks or outside their root (image_errors), but it
//! must accept symlinks aimed anywhere (their targets are data). Inside a
//! running container every such link, every `/proc/*/root` and every `..`
//! chain from every mount point must resolve inside the container: a marker
//! directory made in the host's `/` is never reachable.

use std::path::PathBuf;
use std::time::Duration;

use cria_proto::v1;
use cria_tests::client::image_spec;
use cria_tests::criad::rand_u64;
use cria_tests::expect::ok;
use cria_tests::pod::{remove_pod, sh, wait_state, PodEnv, RUNNING};

const WAIT: Duration = Duration::from_secs(30);

/// A directory in the host's `/` holding a file `marker`; removed on drop.
struct HostMarker {
    name: String,
    dir: PathBuf,
}

impl HostMarker {
    fn create() -> HostMarker {
        let name = format!("cria-escape-{:x}", rand_u64());
        let dir = PathBuf::from("/").join(&name);
        std::fs::create_dir(&dir).expect("marker dir in /");
        std::fs::write(dir.join("marker"), "host\n").expect("marker file");
        HostMarker { name, dir }
    }
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn no_path_of_a_running_rootfs_resolves_to_the_host() {
    let env = PodEnv::start().await.expect("env");
    let image = env.pull_fixture("escapes").await.expect("escapes image");
    let marker = HostMarker::create();
    // A volume holding the same name: the probe below must find it there
    // (and only there), so a miss elsewhere is not a blind probe.
    let vol = tempfile::tempdir().expect("volume");
    std::fs::create_dir(vol.path().join(&marker.name)).expect("vol marker dir");
    std::fs::write(vol.path().join(&marker.name).join("marker"), "volume\n").expect("vol marker");

    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("escapes").expect("pod config");
    let mut cfg = env.container_config("c", &["sleep", "600"]);
    cfg.image = Some(image_spec(&image));
    cfg.mounts = vec![v1::Mount {
        container_path: "/vol".into(),
        host_path: vol.path().to_string_lossy().into_owned(),
        readonly: true,
        ..Default::default()
    }];
    let (pod_id, id) = ok(env.run_pod_and_start(&mut rt, &pod, &cfg).await, &env.criad);
    wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");

    // The image's links are there, as stored.
    let links = sh(
        &mut rt,
        &id,
        "for l in /etc/evil /link /a/b/c/up /hostproc; do readlink $l; done",
    )
    .await
    .expect("links");
    assert_eq!(
        links,
        "/\n../../../../../..\n../../../../../../../../..\n/proc/1/root\n"
    );

    // Each way out lands in the container's own root: it holds the file
    // made there now, and not the host's marker.
    let m = &marker.name;
    let out = sh(
        &mut rt,
        &id,
        &format!(
            "echo container > /.inside; \
             for p in /etc/evil /link /a/b/c/up /hostproc /proc/self/root /proc/1/root /proc/1/cwd \
                      /etc/evil/etc/evil /a/b/c/up/link/hostproc; do \
               echo \"$p $(cat $p/.inside) $([ -e $p/{m}/marker ] && echo HOST || echo -)\"; \
             done"
        ),
    )
    .await
    .expect("links probe");
    for line in out.lines() {
        assert!(line.ends_with(" container -"), "escaped: {line}\n{out}");
    }
    assert_eq!(out.lines().count(), 9, "{out}");

    // `..` chains from every mount point of the container.
    let out = sh(
        &mut rt,
        &id,
        &format!(
            "n=0; for mp in $(cut -d' ' -f5 /proc/self/mountinfo | sort -u); do \
               n=$((n+1)); \
               for up in .. ../.. ../../../../../../../../../../..; do \
                 [ -e \"$mp/$up/{m}/marker\" ] && echo \"HOST via $mp/$up\"; \
               done; \
             done; echo mounts=$n"
        ),
    )
    .await
    .expect("dotdot probe");
    assert!(!out.contains("HOST"), "escaped: {out}");
    let mounts: usize = out
        .trim()
        .strip_prefix("mounts=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(mounts >= 5, "probed only {mounts} mount points: {out}");

    // The whole tree (every mount but the kernel's own /proc and /sys):
    // the name exists only in the volume.
    let found = sh(
        &mut rt,
        &id,
        &format!("find / \\( -path /proc -o -path /sys \\) -prune -o -name {m} -print"),
    )
    .await
    .expect("find");
    assert_eq!(found, format!("/vol/{m}\n"));
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
