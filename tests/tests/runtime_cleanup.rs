//! Issue 3: errors and cleanup — unknown ids, invalid configs, duplicate
//! names, failures part-way, and a full teardown leaving no mount, cgroup,
//! directory or process behind.

use std::fs;

use cria_proto::v1;
use cria_tests::expect::{assert_status, ok};
use cria_tests::host::{cgroup_dirs, cgroup_pids, mounts_under, pids_mentioning};
use cria_tests::pod::{exec, list_containers, remove_pod, status, PodEnv};
use cria_tests::store::entries;
use tonic::Code;

/// Sub-cgroups below a pod's cgroup parent, in any hierarchy.
fn child_cgroups(cg: &str) -> Vec<String> {
    cgroup_dirs(cg)
        .iter()
        .flat_map(|d| {
            fs::read_dir(d)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                        .map(|e| e.path().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

fn cgroup_of(pod: &v1::PodSandboxConfig) -> String {
    pod.linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_invalid_configs_name_the_field() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let unknown = "f".repeat(64);
    let err = status(&mut rt, &unknown)
        .await
        .expect_err("unknown container");
    assert_status(&err, &[Code::NotFound], &[&unknown[..12]]);
    let err = rt
        .start_container(v1::StartContainerRequest {
            container_id: unknown.clone(),
        })
        .await
        .expect_err("start");
    assert_status(&err, &[Code::NotFound], &[]);
    let err = exec(&mut rt, &unknown, &["true"], 5)
        .await
        .expect_err("exec");
    assert_status(&err, &[Code::NotFound], &[]);
    let err = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: unknown.clone(),
            verbose: false,
        })
        .await
        .expect_err("pod status");
    assert_status(&err, &[Code::NotFound], &[]);
    let pod = env.pod_config("ghost").expect("pod config");
    let err = env
        .create(
            &mut rt,
            &unknown,
            &pod,
            &env.container_config("c", &["true"]),
        )
        .await
        .expect_err("no such pod");
    assert_status(&err, &[Code::NotFound], &[]);

    // Invalid configs: InvalidArgument naming the field.
    let mut bad_pod = env.pod_config("bad").expect("pod config");
    bad_pod.metadata = None;
    let err = env
        .run_pod(&mut rt, &bad_pod)
        .await
        .expect_err("pod without metadata");
    assert_status(&err, &[Code::InvalidArgument], &["metadata"]);
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let mut no_meta = env.container_config("c", &["true"]);
    no_meta.metadata = None;
    let err = env
        .create(&mut rt, &pod_id, &pod, &no_meta)
        .await
        .expect_err("container without metadata");
    assert_status(&err, &[Code::InvalidArgument], &["metadata"]);
    let mut no_image = env.container_config("c", &["true"]);
    no_image.image = Some(cria_tests::client::image_spec(&format!(
        "{}/library/none:missing",
        env.registry.host()
    )));
    let err = env
        .create(&mut rt, &pod_id, &pod, &no_image)
        .await
        .expect_err("image not pulled");
    assert_status(
        &err,
        &[Code::NotFound, Code::FailedPrecondition],
        &["library/none:missing"],
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn duplicate_container_name_is_refused_naming_the_holder() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("dup").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let cfg = env.container_config("same", &["sleep", "3600"]);
    let first = ok(env.create(&mut rt, &pod_id, &pod, &cfg).await, &env.criad);
    let err = env
        .create(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect_err("name reserved");
    assert!(
        err.message().contains(&first),
        "message {:?} names {first}",
        err.message()
    );
    // Another attempt number is a different name.
    let mut again = cfg.clone();
    if let Some(m) = again.metadata.as_mut() {
        m.attempt = 1;
    }
    ok(env.create(&mut rt, &pod_id, &pod, &again).await, &env.criad);
    // After removal the name is free again.
    ok(
        rt.remove_container(v1::RemoveContainerRequest {
            container_id: first.clone(),
        })
        .await,
        &env.criad,
    );
    ok(
        rt.remove_container(v1::RemoveContainerRequest {
            container_id: first.clone(),
        })
        .await,
        &env.criad,
    );
    ok(env.create(&mut rt, &pod_id, &pod, &cfg).await, &env.criad);
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn failures_part_way_leave_nothing_behind() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("failing").expect("pod config");
    let cg = cgroup_of(&pod);
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let containers_root = env.criad.root().join("containers");
    let containers_state = env.criad.state().join("containers");
    let mounts_before = mounts_under(env.criad.dir());

    // A CRI mount whose host path is missing: InvalidArgument naming it, nothing created.
    let mut cfg = env.container_config("badmount", &["true"]);
    cfg.mounts = vec![v1::Mount {
        container_path: "/data".into(),
        host_path: "/nonexistent/cria-test-path".into(),
        ..Default::default()
    }];
    let err = env
        .create(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect_err("missing host path");
    assert_status(
        &err,
        &[Code::InvalidArgument],
        &["/nonexistent/cria-test-path"],
    );
    assert!(
        entries(&containers_root).is_empty() && entries(&containers_state).is_empty(),
        "no container dirs after a refused create"
    );
    assert_eq!(
        mounts_under(env.criad.dir()),
        mounts_before,
        "no new mounts"
    );
    assert!(
        child_cgroups(&cg).is_empty(),
        "no container cgroup: {:?}",
        child_cgroups(&cg)
    );

    // A missing binary: create or start fails naming the path; remove cleans up.
    let cfg = env.container_config("nobin", &["/no/such/binary", "arg"]);
    let id = match env.create(&mut rt, &pod_id, &pod, &cfg).await {
        Err(e) => {
            assert!(e.message().contains("/no/such/binary"), "{e:?}");
            None
        }
        Ok(id) => {
            let r = rt
                .start_container(v1::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            match r {
                Err(e) => assert!(e.message().contains("/no/such/binary"), "{e:?}"),
                Ok(_) => {
                    // Some runtimes report the exec failure as an exit; then it must say why.
                    let st = cria_tests::pod::wait_state(
                        &mut rt,
                        &id,
                        cria_tests::pod::EXITED,
                        std::time::Duration::from_secs(30),
                    )
                    .await
                    .expect("exits");
                    assert_ne!(st.exit_code, 0);
                    assert!(st.message.contains("/no/such/binary"), "{st:?}");
                }
            }
            Some(id)
        }
    };
    if let Some(id) = id {
        ok(
            rt.remove_container(v1::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await,
            &env.criad,
        );
        assert!(pids_mentioning(&containers_state.join(&id).to_string_lossy()).is_empty());
    }
    assert!(
        entries(&containers_root).is_empty(),
        "container dirs left: {:?}",
        entries(&containers_root)
    );
    assert!(
        entries(&containers_state).is_empty(),
        "container state left: {:?}",
        entries(&containers_state)
    );
    assert_eq!(mounts_under(env.criad.dir()), mounts_before, "mounts left");
    assert!(
        child_cgroups(&cg).is_empty(),
        "container cgroups left: {:?}",
        child_cgroups(&cg)
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn full_teardown_leaves_no_mount_cgroup_dir_or_process() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let mut pods = Vec::new();
    for (name, pid_mode) in [
        ("plain", v1::NamespaceMode::Container),
        ("shared-pid", v1::NamespaceMode::Pod),
    ] {
        let mut pod = env.pod_config(name).expect("pod config");
        if let Some(ns) = pod
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
        {
            ns.pid = pid_mode as i32;
        }
        let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
        for c in ["a", "b"] {
            ok(
                env.create_start(
                    &mut rt,
                    &id,
                    &pod,
                    &env.container_config(c, &["sleep", "3600"]),
                )
                .await,
                &env.criad,
            );
        }
        ok(
            env.create(
                &mut rt,
                &id,
                &pod,
                &env.container_config("never-started", &["true"]),
            )
            .await,
            &env.criad,
        );
        pods.push((id, pod));
    }
    assert!(
        !mounts_under(env.criad.dir()).is_empty(),
        "pods and containers mount things"
    );
    for (id, _) in &pods {
        ok(remove_pod(&mut rt, id).await, &env.criad);
    }
    // criad may keep its netns and pods dirs as (shared) bind mounts of
    // themselves for the daemon's lifetime, as `ip netns` does; nothing below.
    let daemon_dirs = [
        env.criad.state().join("netns"),
        env.criad.state().join("pods"),
    ];
    let left: Vec<_> = mounts_under(env.criad.dir())
        .into_iter()
        .filter(|m| !daemon_dirs.contains(m))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    for (_, pod) in &pods {
        let cg = cgroup_of(pod);
        assert!(
            child_cgroups(&cg).is_empty(),
            "cgroups left under {cg}: {:?}",
            child_cgroups(&cg)
        );
        let procs: Vec<i32> = cgroup_dirs(&cg)
            .iter()
            .flat_map(|d| cgroup_pids(d))
            .collect();
        assert!(procs.is_empty(), "processes left in {cg}: {procs:?}");
    }
    for d in ["containers", "pods"] {
        assert!(
            entries(&env.criad.root().join(d)).is_empty(),
            "root/{d} left: {:?}",
            entries(&env.criad.root().join(d))
        );
    }
    for d in ["containers", "pods", "netns"] {
        assert!(
            entries(&env.criad.state().join(d)).is_empty(),
            "state/{d} left: {:?}",
            entries(&env.criad.state().join(d))
        );
    }
    let procs = pids_mentioning(&env.criad.state().to_string_lossy());
    let criad_pid = env.criad.pid().unwrap_or(-1);
    assert!(
        procs.iter().all(|p| *p == criad_pid),
        "processes left: {procs:?}"
    );
    let list = ok(list_containers(&mut rt).await, &env.criad);
    assert!(list.is_empty(), "{list:?}");
}
