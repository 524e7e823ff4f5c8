//! Issue 4: runtimeConfig capabilities reaching real plugins — the pod CIDR
//! from UpdateRuntimeConfig (dual stack) through host-local's `ipRanges`,
//! and kubelet's bandwidth annotations through the `bandwidth` plugin.

mod network_common;

use std::process::Command;

use cria_proto::v1;
use cria_tests::criad::rand_u64;
use cria_tests::expect::ok;
use cria_tests::host::run_stdout;
use cria_tests::pod::remove_pod;
use network_common::*;
use serde_json::{json, Value};

/// The test's conflist with `edit` applied to its JSON.
fn write_config(net: &NetEnv, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&conflist(
        &net.network,
        &net.bridge,
        &net.subnet,
        &net.ipam_dir,
    ))
    .expect("conflist is JSON");
    edit(&mut v);
    std::fs::write(net.conf_dir().join("10-test.conflist"), v.to_string()).expect("write");
}

#[tokio::test]
async fn pod_cidr_from_update_runtime_config_reaches_host_local_dual_stack() {
    let net = NetEnv::start().await.expect("env");
    write_config(&net, |v| {
        // As with kubenet-style configs: no static ranges, host-local takes
        // the pod CIDR from runtimeConfig (it adds static ranges after the
        // runtime's, which would give the bridge two IPv4 gateways).
        v["plugins"][0]["capabilities"] = json!({ "ipRanges": true });
        v["plugins"][0]["ipam"]["ranges"] = json!([]);
    });
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let r = rand_u64();
    let v4 = format!("10.{}.{}.0/24", 200 + (r % 50), (r >> 8) % 256);
    let v6 = format!("fd00:c1a:{:x}::/64", (r >> 16) & 0xffff);
    ok(
        rt.update_runtime_config(v1::UpdateRuntimeConfigRequest {
            runtime_config: Some(v1::RuntimeConfig {
                network_config: Some(v1::NetworkConfig {
                    pod_cidr: format!("{v4},{v6}"),
                }),
            }),
        })
        .await,
        &env.criad,
    );
    let pod = net.pod("cidr").expect("pod");
    let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let st = pod_ip(&mut rt, &id).await.expect("status");
    assert!(
        st.ip.starts_with(v4.trim_end_matches("0/24")),
        "v4 from the pod CIDR {v4}: {st:?}"
    );
    let v6_prefix = v6.trim_end_matches("/64");
    assert_eq!(st.additional_ips.len(), 1, "{st:?}");
    assert!(
        st.additional_ips[0].ip.starts_with(v6_prefix),
        "v6 from {v6}: {st:?}"
    );
    assert_eq!(net.ipam_allocations().len(), 2, "one address per family");
    ok(remove_pod(&mut rt, &id).await, &env.criad);
    net.assert_no_leaks();
}

#[tokio::test]
async fn bandwidth_annotations_shape_the_pod_veth() {
    let net = NetEnv::start().await.expect("env");
    write_config(&net, |v| {
        if let Some(plugins) = v["plugins"].as_array_mut() {
            plugins.push(json!({ "type": "bandwidth", "capabilities": { "bandwidth": true } }));
        }
    });
    let env = &net.env;
    let mut rt = env.rt().await.expect("client");
    let mut pod = net.pod("shaped").expect("pod");
    pod.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
    let id = ok(env.run_pod(&mut rt, &pod).await, &env.criad);
    let veths = net.veths();
    assert_eq!(veths.len(), 1, "{veths:?}");
    let dev = veths[0].split('@').next().unwrap_or_default().to_owned();
    let qdisc = run_stdout(Command::new("tc").args(["qdisc", "show", "dev", &dev])).expect("tc");
    assert!(
        qdisc.contains("tbf") && qdisc.contains("10Mbit"),
        "a 10 Mbit/s token bucket on {dev}: {qdisc}"
    );
    // A malformed annotation is refused before anything is set up.
    let mut bad = net.pod("badly-shaped").expect("pod");
    bad.annotations
        .insert("kubernetes.io/egress-bandwidth".into(), "fast".into());
    let err = env.run_pod(&mut rt, &bad).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("egress-bandwidth"), "{err:?}");
    ok(remove_pod(&mut rt, &id).await, &env.criad);
    net.assert_no_leaks();
}
