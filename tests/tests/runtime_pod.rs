//! Issue 3: pod sandboxes — shared namespaces between two containers, pod
//! files, status/list/stop/remove semantics.

use std::collections::HashMap;

use cria_proto::v1;
use cria_tests::expect::ok;
use cria_tests::pod::{exec, remove_pod, sh, PodEnv};

/// readlink of /proc/self/ns/<ns> inside a container.
async fn ns_of(rt: &mut cria_tests::RuntimeClient, id: &str, ns: &str) -> String {
    sh(rt, id, &format!("readlink /proc/self/ns/{ns}"))
        .await
        .expect("readlink ns")
        .trim()
        .to_owned()
}

/// Ids of the pods ListPodSandbox returns for `filter`, in its order.
async fn pod_ids(
    env: &PodEnv,
    rt: &mut cria_tests::RuntimeClient,
    filter: v1::PodSandboxFilter,
) -> Vec<String> {
    let req = v1::ListPodSandboxRequest {
        filter: Some(filter),
    };
    ok(rt.list_pod_sandbox(req).await, &env.criad)
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.id)
        .collect()
}

#[tokio::test]
async fn two_containers_share_ipc_uts_and_loopback() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("sharing").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let www = env.container_config(
        "www",
        &["sh", "-c", "mkdir -p /www && echo hello-from-www > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"],
    );
    let a = ok(
        env.create_start(&mut rt, &pod_id, &pod, &www).await,
        &env.criad,
    );
    let b = ok(
        env.create_start(
            &mut rt,
            &pod_id,
            &pod,
            &env.container_config("client", &["sleep", "3600"]),
        )
        .await,
        &env.criad,
    );

    for ns in ["net", "ipc", "uts"] {
        let (na, nb) = (ns_of(&mut rt, &a, ns).await, ns_of(&mut rt, &b, ns).await);
        assert_eq!(na, nb, "{ns} namespace shared");
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("host ns");
        assert_ne!(
            na,
            host.to_string_lossy(),
            "{ns} namespace is not the host's"
        );
    }
    // Each container has its own mount namespace.
    assert_ne!(
        ns_of(&mut rt, &a, "mnt").await,
        ns_of(&mut rt, &b, "mnt").await
    );
    // Loopback: b fetches from a's server on 127.0.0.1 (bounded retries while httpd starts).
    let page = sh(&mut rt, &b, "for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/index.html && exit 0; sleep 0.1; done; exit 1")
        .await
        .expect("wget over the pod's loopback");
    assert_eq!(page, "hello-from-www\n");
    // IPC: the pod's /dev/shm is one tmpfs for both.
    sh(&mut rt, &a, "echo shared > /dev/shm/token")
        .await
        .expect("write shm");
    assert_eq!(
        sh(&mut rt, &b, "cat /dev/shm/token")
            .await
            .expect("read shm"),
        "shared\n"
    );
    // Hostname from the pod config.
    assert_eq!(
        sh(&mut rt, &b, "hostname").await.expect("hostname"),
        "sharing\n"
    );
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn pod_files_come_from_the_config() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let mut pod = env.pod_config("files").expect("pod config");
    pod.dns_config = Some(v1::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["cria-tests.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let (pod_id, c) = ok(
        env.run_pod_and_start(
            &mut rt,
            &pod,
            &env.container_config("c", &["sleep", "3600"]),
        )
        .await,
        &env.criad,
    );
    let resolv = sh(&mut rt, &c, "cat /etc/resolv.conf")
        .await
        .expect("resolv.conf");
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search cria-tests.svc.cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    assert_eq!(
        sh(&mut rt, &c, "cat /etc/hostname")
            .await
            .expect("hostname"),
        "files\n"
    );
    let hosts = sh(&mut rt, &c, "cat /etc/hosts").await.expect("hosts");
    assert!(
        hosts.contains("localhost") && hosts.contains("files"),
        "{hosts}"
    );
    // /dev/shm is a tmpfs (64 MiB by default).
    let shm = sh(&mut rt, &c, "grep ' /dev/shm ' /proc/mounts")
        .await
        .expect("shm mount");
    assert!(shm.contains("tmpfs"), "{shm}");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}

#[tokio::test]
async fn pod_status_list_stop_remove() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let mut pod = env.pod_config("lifecycle").expect("pod config");
    pod.annotations = HashMap::from([("note".to_owned(), "kept".to_owned())]);
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let other = env.pod_config("other").expect("pod config");
    let other_id = ok(env.run_pod(&mut rt, &other).await, &env.criad);
    let c = ok(
        env.create_start(
            &mut rt,
            &pod_id,
            &pod,
            &env.container_config("c", &["sleep", "3600"]),
        )
        .await,
        &env.criad,
    );

    let st = ok(
        rt.pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: true,
        })
        .await,
        &env.criad,
    )
    .into_inner();
    let s = st.status.clone().expect("status");
    assert_eq!(s.state, v1::PodSandboxState::SandboxReady as i32);
    assert!(s.created_at > 0);
    assert_eq!(
        s.metadata.as_ref().map(|m| m.name.as_str()),
        Some("lifecycle")
    );
    assert_eq!(s.labels.get("app").map(String::as_str), Some("lifecycle"));
    assert_eq!(s.annotations.get("note").map(String::as_str), Some("kept"));
    assert!(!st.info.is_empty(), "verbose info");

    // Filters: by label, by state, by id prefix.
    assert_eq!(
        pod_ids(
            &env,
            &mut rt,
            v1::PodSandboxFilter {
                label_selector: HashMap::from([("app".to_owned(), "other".to_owned())]),
                ..Default::default()
            }
        )
        .await,
        vec![other_id.clone()]
    );
    assert_eq!(
        pod_ids(
            &env,
            &mut rt,
            v1::PodSandboxFilter {
                id: pod_id[..12].to_owned(),
                ..Default::default()
            }
        )
        .await,
        vec![pod_id.clone()]
    );

    // Stop: the container exits, the pod is NOTREADY; stop again is fine.
    for _ in 0..2 {
        ok(
            rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await,
            &env.criad,
        );
    }
    let cs = cria_tests::pod::status(&mut rt, &c)
        .await
        .expect("container status");
    assert_eq!(cs.state, cria_tests::pod::EXITED);
    let s = ok(
        rt.pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: false,
        })
        .await,
        &env.criad,
    )
    .into_inner()
    .status
    .expect("status");
    assert_eq!(s.state, v1::PodSandboxState::SandboxNotready as i32);
    assert_eq!(
        pod_ids(
            &env,
            &mut rt,
            v1::PodSandboxFilter {
                state: Some(v1::PodSandboxStateValue {
                    state: v1::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }
        )
        .await,
        vec![other_id.clone()]
    );
    // A container cannot be created in a stopped pod.
    let err = env
        .create(
            &mut rt,
            &pod_id,
            &pod,
            &env.container_config("late", &["true"]),
        )
        .await
        .expect_err("pod not ready");
    cria_tests::expect::assert_status(&err, &[tonic::Code::FailedPrecondition], &[]);

    // Remove twice; unknown ids are fine for stop and remove (kubelet relies on it).
    for _ in 0..2 {
        ok(
            rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await,
            &env.criad,
        );
    }
    ok(
        rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: "0123456789ab".into(),
        })
        .await,
        &env.criad,
    );
    ok(
        rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: "0123456789ab".into(),
        })
        .await,
        &env.criad,
    );
    let err = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: false,
        })
        .await
        .expect_err("removed pod is unknown");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = cria_tests::pod::status(&mut rt, &c)
        .await
        .expect_err("its container went with it");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let left = exec(&mut rt, &c, &["true"], 5)
        .await
        .expect_err("exec into a removed container");
    assert_eq!(left.code(), tonic::Code::NotFound);
    ok(remove_pod(&mut rt, &other_id).await, &env.criad);
}
