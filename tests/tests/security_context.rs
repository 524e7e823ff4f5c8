//! Issue 6: security-context fields whose effect is checked from inside.

use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::ok;
use cria_tests::pod::{remove_pod, sh, wait_state, PodEnv, RUNNING};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn ambient_capabilities_reach_a_non_root_process() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let pod = env.pod_config("ambient").expect("pod config");
    let pod_id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let mut ids = Vec::new();
    for (name, ambient) in [
        ("amb", vec!["NET_BIND_SERVICE".to_string()]),
        ("none", vec![]),
    ] {
        let mut cfg = env.container_config(name, &["sleep", "600"]);
        cfg.linux = Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value { value: 1234 }),
                capabilities: Some(v1::Capability {
                    drop_capabilities: vec!["ALL".into()],
                    add_ambient_capabilities: ambient,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = ok(
            env.create_start(&mut rt, &pod_id, &pod, &cfg).await,
            &env.criad,
        );
        wait_state(&mut rt, &id, RUNNING, WAIT).await.expect("runs");
        ids.push(id);
    }
    // CAP_NET_BIND_SERVICE is bit 10.
    let probe = "grep -E '^Cap(Eff|Amb):' /proc/1/status | tr -s '\\t' ' '";
    let out = sh(&mut rt, &ids[0], probe).await.expect("probe");
    assert_eq!(out, "CapEff: 0000000000000400\nCapAmb: 0000000000000400\n");
    let out = sh(&mut rt, &ids[1], probe).await.expect("probe");
    assert_eq!(out, "CapEff: 0000000000000000\nCapAmb: 0000000000000000\n");
    ok(remove_pod(&mut rt, &pod_id).await, &env.criad);
}
