//! Issue 6: ContainerStatus.user reports the identity the container's
//! process got — after run_as_username resolution in the image's
//! /etc/passwd and the merge of its /etc/group memberships — checked
//! against `id` run inside.

use std::time::Duration;

use cria_proto::v1;
use cria_tests::client::image_spec;
use cria_tests::expect::ok;
use cria_tests::pod::{remove_pod, sh, status, wait_state, PodEnv, RUNNING};

const WAIT: Duration = Duration::from_secs(30);

/// `(uid, gid, groups sorted)` from ContainerStatus.user.
fn reported(st: &v1::ContainerStatus) -> (i64, i64, Vec<i64>) {
    let linux = st
        .user
        .as_ref()
        .and_then(|u| u.linux.as_ref())
        .unwrap_or_else(|| panic!("no user in {st:?}"));
    let mut groups = linux.supplemental_groups.clone();
    assert_eq!(groups.first(), Some(&linux.gid), "the gid leads the groups");
    groups.sort_unstable();
    (linux.uid, linux.gid, groups)
}

/// `(uid, gid, groups sorted)` from `id` in the container.
async fn seen(rt: &mut cria_tests::RuntimeClient, id: &str) -> (i64, i64, Vec<i64>) {
    let out = sh(rt, id, "id -u; id -g; id -G").await.expect("id");
    let nums: Vec<Vec<i64>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|n| n.parse().unwrap_or_else(|_| panic!("id: {out}")))
                .collect()
        })
        .collect();
    let [uid, gid, groups] = nums.as_slice() else {
        panic!("id: {out}")
    };
    let mut groups = groups.clone();
    groups.sort_unstable();
    (uid[0], gid[0], groups)
}

#[tokio::test]
async fn container_status_user_matches_id_inside() {
    let env = PodEnv::start().await.expect("env");
    let image = env.pull_fixture("users").await.expect("users image");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("users").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let merge = v1::SupplementalGroupsPolicy::Merge as i32;
    let strict = v1::SupplementalGroupsPolicy::Strict as i32;
    // (name, security context, expected (uid, gid, sorted groups))
    let cases = [
        (
            "by-name",
            v1::LinuxContainerSecurityContext {
                run_as_username: "tester".into(),
                supplemental_groups: vec![4242],
                supplemental_groups_policy: merge,
                ..Default::default()
            },
            (1234, 5678, vec![4242, 5678, 7000, 7001]),
        ),
        (
            "strict",
            v1::LinuxContainerSecurityContext {
                run_as_username: "tester".into(),
                supplemental_groups: vec![4242],
                supplemental_groups_policy: strict,
                ..Default::default()
            },
            (1234, 5678, vec![4242, 5678]),
        ),
        (
            "by-uid-and-group",
            v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value { value: 1234 }),
                run_as_group: Some(v1::Int64Value { value: 3000 }),
                ..Default::default()
            },
            (1234, 3000, vec![3000, 7000, 7001]),
        ),
        (
            "image-default-root",
            v1::LinuxContainerSecurityContext::default(),
            (0, 0, vec![0]),
        ),
    ];
    for (name, sc, want) in cases {
        let mut cfg = env.container_config(name, &["sleep", "600"]);
        cfg.image = Some(image_spec(&image));
        cfg.linux = Some(v1::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        let id = ok(
            env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
            &env.criad,
        );
        wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
        let st = ok(status(&mut rt, &id).await, &env.criad);
        let inside = seen(&mut rt, &id).await;
        assert_eq!(reported(&st), inside, "{name}: status vs id");
        assert_eq!(inside, want, "{name}: id inside");
    }
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
