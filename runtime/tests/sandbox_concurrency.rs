//! Pod sandboxes created and removed many at a time on a fresh state root:
//! the first creates race to make `<state>/pods` and `<state>/netns` private
//! bind mounts. Two binds stacked there hid the first pods' pins and shm
//! under the second, and removing those pods failed with "device or resource
//! busy" (the hidden mounts still sat on the files being unlinked).

mod common;

use common::Fixture;
use cria_runtime::SandboxCreate;
use std::path::Path;
use std::sync::{Arc, Barrier};

/// Mounts whose mount point is `dir` or lies under it, from our mountinfo.
fn mounts_at_or_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let under = format!("{dir}/");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| m == dir || m.starts_with(&under))
        })
        .map(str::to_owned)
        .collect()
}

/// Mounts whose mount point is exactly `dir`.
fn mounts_at(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    mounts_at_or_under(Path::new(&dir))
        .into_iter()
        .filter(|l| l.split(' ').nth(4) == Some(dir.as_str()))
        .collect()
}

/// Creates `n` sandboxes at once (every other one with a pod PID namespace
/// and so a pause), returning each create's result.
fn create_at_once(f: &Fixture, n: usize) -> Vec<(String, Result<(), String>)> {
    let barrier = Arc::new(Barrier::new(n));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = barrier.clone();
                let id = format!("{}-{i}", f.id);
                s.spawn(move || {
                    barrier.wait();
                    let r = f.rt.create_sandbox(&SandboxCreate {
                        id: id.clone(),
                        hostname: format!("pod{i}"),
                        new_network: true,
                        new_ipc: true,
                        new_uts: true,
                        pod_pid: i % 2 == 1,
                        shm_size: Some(1 << 20),
                        cgroup_parent: None,
                    });
                    (id, r.map(|_| ()).map_err(|e| e.to_string()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread"))
            .collect()
    })
}

/// Removes every sandbox in `ids` at once, returning the failures.
fn remove_at_once(f: &Fixture, ids: &[String]) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(move || f.rt.remove_sandbox(id).map_err(|e| format!("{id}: {e}"))))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("remove thread").err())
            .collect()
    })
}

#[test]
fn sandboxes_created_and_removed_ten_at_a_time_on_a_fresh_state_root() {
    // Fresh state roots: the race is in the very first creates.
    for round in 0..5 {
        let f = Fixture::new(&format!("sbrace{round}"));
        let state = f.tmp.path().join("state");
        let created = create_at_once(&f, 10);
        let ids: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
        let pods_mounts = mounts_at(&state.join("pods"));
        let netns_mounts = mounts_at(&state.join("netns"));
        let failures = remove_at_once(&f, &ids);
        let left = mounts_at_or_under(&state);
        // Clean up before asserting, bounded: at most one unmount per mount
        // found (stacked binds need one each).
        for _ in 0..left.len() {
            for d in ["pods", "netns"] {
                let _ = nix::mount::umount2(&state.join(d), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for (id, r) in &created {
            assert!(r.is_ok(), "round {round}: create {id}: {r:?}");
        }
        let seen = format!("round {round}: remove failures {failures:#?}, mounts at pods {pods_mounts:#?}, at netns {netns_mounts:#?}");
        assert!(failures.is_empty(), "{seen}");
        assert_eq!(pods_mounts.len(), 1, "{seen}");
        assert_eq!(netns_mounts.len(), 1, "{seen}");
        // What remains is the two private binds themselves, nothing under them.
        assert_eq!(left.len(), 2, "round {round}: {left:#?}");
        for id in &ids {
            assert!(!state.join("pods").join(id).exists(), "{id} left behind");
            assert!(!state.join("netns").join(id).exists(), "{id} netns left");
        }
    }
}
