//! Regressions of bugs that critest v1.26.1 found (issue 3): a stopped exec
//! left its process behind as a child of the container's PID 1, and
//! `rshared` root propagation broke pivot_root and then bidirectional
//! volumes. On the real kernel with a busybox rootfs; needs root.

mod common;

use common::{process, processes_mentioning, wait_until, Fixture};
use cria_runtime::exec_stream::ExecStdio;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder, MountBuilder};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// What the container's /proc lists, zombies included, seen by a shell
/// exec'd in it (the glob is expanded by the shell itself: no fork), as
/// critest's `pgrep` sees it: PID 1 and that shell when nothing is left over.
fn container_pids(f: &Fixture) -> Vec<String> {
    let out =
        f.rt.exec_sync(&f.id, &process(&["sh", "-c", "echo /proc/[0-9]*"]), T)
            .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A running container whose PID 1 is `sleep`, which never reaps (as
/// critest's container).
fn sleeping_container(name: &str) -> Fixture {
    let f = Fixture::new(name);
    let spec = f.spec(&["sleep", "1000"]);
    f.create_start(&spec);
    f
}

#[test]
fn exec_sync_timeout_leaves_no_process_or_zombie_in_the_container() {
    let f = sleeping_container("exec-timeout");
    let out =
        f.rt.exec_sync(
            &f.id,
            &process(&["sleep", "4321"]),
            Duration::from_millis(300),
        )
        .unwrap();
    assert!(out.timed_out);
    // Checked at once: critest runs `pgrep sleep` right after the timeout.
    let pids = container_pids(&f);
    assert_eq!(pids.len(), 2, "left behind in the container: {pids:?}");
    assert_eq!(processes_mentioning("4321"), Vec::<i32>::new());
    // What the process forked dies with it (its process group): no live
    // `sleep 4322` (a zombie of it would be PID 1's, as with runc).
    let out =
        f.rt.exec_sync(
            &f.id,
            &process(&["sh", "-c", "sleep 4322 & sleep 4323"]),
            Duration::from_millis(300),
        )
        .unwrap();
    assert!(out.timed_out);
    assert!(
        wait_until(Duration::from_secs(2), || processes_mentioning("4322")
            .is_empty()),
        "the exec's background child survived"
    );
    assert!(processes_mentioning("4323").is_empty());
    f.rt.delete(&f.id, true).unwrap();
}

#[test]
fn stopping_an_interactive_exec_leaves_no_process_or_zombie() {
    let f = sleeping_container("exec-stop");
    let mut s =
        f.rt.exec_interactive(
            &f.id,
            &process(&["sleep", "4324"]),
            ExecStdio {
                tty: false,
                stdin: true,
            },
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !processes_mentioning("4324")
            .is_empty()),
        "the exec did not start"
    );
    // What the shim does when the client vanishes.
    let st = cria_runtime::exec_helper::stop_helper(&mut s.helper, Duration::from_secs(5)).unwrap();
    // The helper exits on its own, reporting its process killed (128+9).
    assert_eq!(st.code(), Some(137));
    let pids = container_pids(&f);
    assert_eq!(pids.len(), 2, "left behind in the container: {pids:?}");
    assert!(processes_mentioning("4324").is_empty());
    f.rt.delete(&f.id, true).unwrap();
}

/// A host dir bound onto itself with `propagation` (as critest prepares its
/// volume), removed with everything mounted under it when dropped.
struct HostVolume(std::path::PathBuf);

impl HostVolume {
    fn new(f: &Fixture, propagation: MsFlags) -> HostVolume {
        let dir = f.tmp.path().join("vol");
        std::fs::create_dir_all(&dir).unwrap();
        mount(
            Some(&dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        let v = HostVolume(dir);
        mount(
            None::<&str>,
            &v.0,
            None::<&str>,
            propagation | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        v
    }

    /// Mounts a tmpfs holding `file` at `sub` of the volume, on the host.
    fn mount_on_host(&self, sub: &str, file: &str) {
        let at = self.0.join(sub);
        std::fs::create_dir_all(&at).unwrap();
        mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .unwrap();
        std::fs::write(at.join(file), "host").unwrap();
    }
}

impl Drop for HostVolume {
    fn drop(&mut self) {
        // Detaching the bind takes what propagated under it too.
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Runs a privileged-enough container (CAP_SYS_ADMIN, for `mount`) with the
/// volume at /vol, the given volume and root propagation; PID 1 mounts a
/// tmpfs holding `from-ctr` at /vol/ctr, then sleeps.
fn propagation_container(f: &Fixture, vol: &Path, vol_prop: &str, root_prop: &str) {
    for a in ["mount", "mkdir", "touch"] {
        std::os::unix::fs::symlink("busybox", f.rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::create_dir_all(f.rootfs.join("vol")).unwrap();
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "mkdir -p /vol/ctr && mount -t tmpfs -o size=64k tmpfs /vol/ctr && touch /vol/ctr/from-ctr && exec sleep 1000",
    ]);
    let mut p = spec.process().clone().unwrap();
    let caps: HashSet<Capability> = [Capability::SysAdmin].into_iter().collect();
    p.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .inheritable(HashSet::new())
            .ambient(HashSet::new())
            .build()
            .unwrap(),
    ));
    spec.set_process(Some(p));
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.push(
        MountBuilder::default()
            .destination("/vol")
            .typ("bind")
            .source(vol)
            .options(vec!["rbind".into(), vol_prop.into()])
            .build()
            .unwrap(),
    );
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_rootfs_propagation(Some(root_prop.into()));
    spec.set_linux(Some(linux));
    // Before the fix: "pivot_root ...: invalid argument" with rshared.
    f.create_start(&spec);
}

/// Whether the container sees `path` (a file), by exec.
fn container_sees(f: &Fixture, path: &str) -> bool {
    let out = f.rt.exec_sync(&f.id, &process(&["cat", path]), T).unwrap();
    out.exit_code == 0
}

#[test]
fn rshared_volume_propagates_both_ways() {
    let f = Fixture::new("rshared");
    let vol = HostVolume::new(&f, MsFlags::MS_SHARED);
    propagation_container(&f, &vol.0, "rshared", "rshared");
    assert!(
        wait_until(Duration::from_secs(10), || vol
            .0
            .join("ctr/from-ctr")
            .exists()),
        "the container's mount did not reach the host: {}",
        f.log()
    );
    vol.mount_on_host("host", "from-host");
    assert!(container_sees(&f, "/vol/host/from-host"));
    f.rt.delete(&f.id, true).unwrap();
}

/// A container on a volume with `propagation` keeps its own mounts inside; a
/// mount made on the host afterwards reaches it only when
/// `host_reaches_container`.
fn container_mounts_stay_inside(
    name: &str,
    host_flag: MsFlags,
    propagation: &str,
    host_reaches_container: bool,
) {
    let f = Fixture::new(name);
    let vol = HostVolume::new(&f, host_flag);
    propagation_container(&f, &vol.0, propagation, propagation);
    // The container's own mount is made (it sees it) but stays inside.
    assert!(
        wait_until(Duration::from_secs(10), || container_sees(
            &f,
            "/vol/ctr/from-ctr"
        )),
        "{}",
        f.log()
    );
    assert!(!vol.0.join("ctr/from-ctr").exists());
    vol.mount_on_host("host", "from-host");
    assert_eq!(
        container_sees(&f, "/vol/host/from-host"),
        host_reaches_container,
        "does the host's later mount reach the container?"
    );
    f.rt.delete(&f.id, true).unwrap();
}

#[test]
fn rslave_volume_propagates_host_to_container_only() {
    container_mounts_stay_inside("rslave", MsFlags::MS_SHARED, "rslave", true);
}

#[test]
fn rprivate_volume_propagates_nowhere() {
    container_mounts_stay_inside("rprivate", MsFlags::MS_PRIVATE, "rprivate", false);
}
