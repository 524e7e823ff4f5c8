//! The v2 device program on the real kernel: attached to a cgroup on this
//! host's cgroup2 mount, it must deny a device no rule allows and allow the
//! defaults. Needs root and a cgroup2 mount.

use cria_runtime::devices_bpf;
use oci_spec::runtime::LinuxDeviceCgroupBuilder;
use std::path::{Path, PathBuf};

fn cgroup2_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

#[test]
fn device_program_denies_unlisted_devices() {
    let Some(root) = cgroup2_mount() else {
        eprintln!("no cgroup2 mount: skipped");
        return;
    };
    let dir = root.join(format!("cria-bpf-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    devices_bpf::attach(&dir, &devices_bpf::rules(&[deny_all])).unwrap();
    // A node of /dev/kmsg (c 1:11): a real device outside the default list.
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("kmsg");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 11),
    )
    .unwrap();
    let probe = format!(
        "head -c 1 /dev/zero > /dev/null && echo zero-ok; (: < {0}) 2>/dev/null && echo kmsg-open || echo kmsg-denied",
        node.display()
    );
    let run = |join: Option<&Path>| {
        let script = match join {
            Some(d) => format!("echo $$ > {}/cgroup.procs || exit 9; {probe}", d.display()),
            None => probe.clone(),
        };
        let out = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Outside the cgroup the node opens; inside, the program denies it.
    assert_eq!(run(None), "zero-ok\nkmsg-open\n");
    assert_eq!(run(Some(&dir)), "zero-ok\nkmsg-denied\n");
}
