//! CRI objects as JSON values for `inspect` and `-o json|yaml`: enum numbers
//! become their names, nanosecond timestamps become RFC 3339 times, and the
//! runtime's verbose `info` strings are embedded as JSON when they are JSON.

use std::collections::HashMap;

use cria_proto::v1::{
    ContainerState, ContainerStatus, Image, ImageSpec, Mount, PodSandboxState, PodSandboxStatus,
};
use serde_json::{json, Map, Value};

use crate::humanize;

/// An RFC 3339 time, or null when unset.
pub fn time(ns: i64) -> Value {
    humanize::from_nanos(ns).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
    })
}

/// The name of a container state (`CONTAINER_RUNNING`).
pub fn container_state(state: i32) -> &'static str {
    ContainerState::try_from(state).map_or("CONTAINER_UNKNOWN", |s| s.as_str_name())
}

/// The name of a pod state (`SANDBOX_READY`).
pub fn pod_state(state: i32) -> &'static str {
    PodSandboxState::try_from(state).map_or("SANDBOX_NOTREADY", |s| s.as_str_name())
}

/// The runtime's verbose info, with JSON strings expanded.
pub fn info(map: &HashMap<String, String>) -> Value {
    let mut out = Map::new();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        let v = &map[k];
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
        out.insert(k.clone(), value);
    }
    Value::Object(out)
}

fn image_spec(spec: Option<&ImageSpec>) -> Value {
    spec.map_or(
        Value::Null,
        |s| json!({"image": s.image, "user_specified_image": s.user_specified_image}),
    )
}

fn mount(m: &Mount) -> Value {
    json!({
        "container_path": m.container_path,
        "host_path": m.host_path,
        "readonly": m.readonly,
    })
}

/// A container's status.
pub fn container(s: &ContainerStatus) -> Value {
    let meta = s.metadata.as_ref();
    let resources = s
        .resources
        .as_ref()
        .and_then(|r| r.linux.as_ref())
        .map_or(Value::Null, |l| {
            json!({
                "cpu_period": l.cpu_period,
                "cpu_quota": l.cpu_quota,
                "cpu_shares": l.cpu_shares,
                "memory_limit_in_bytes": l.memory_limit_in_bytes,
                "oom_score_adj": l.oom_score_adj,
                "cpuset_cpus": l.cpuset_cpus,
            })
        });
    json!({
        "id": s.id,
        "name": meta.map(|m| m.name.as_str()),
        "attempt": meta.map(|m| m.attempt),
        "state": container_state(s.state),
        "created_at": time(s.created_at),
        "started_at": time(s.started_at),
        "finished_at": time(s.finished_at),
        "exit_code": s.exit_code,
        "reason": s.reason,
        "message": s.message,
        "image": image_spec(s.image.as_ref()),
        "image_ref": s.image_ref,
        "image_id": s.image_id,
        "labels": s.labels,
        "annotations": s.annotations,
        "mounts": s.mounts.iter().map(mount).collect::<Vec<_>>(),
        "log_path": s.log_path,
        "resources": resources,
    })
}

/// A pod sandbox's status.
pub fn pod(s: &PodSandboxStatus) -> Value {
    let meta = s.metadata.as_ref();
    let network = s.network.as_ref().map_or(Value::Null, |n| {
        json!({
            "ip": n.ip,
            "additional_ips": n.additional_ips.iter().map(|i| i.ip.as_str()).collect::<Vec<_>>(),
        })
    });
    json!({
        "id": s.id,
        "name": meta.map(|m| m.name.as_str()),
        "namespace": meta.map(|m| m.namespace.as_str()),
        "uid": meta.map(|m| m.uid.as_str()),
        "attempt": meta.map(|m| m.attempt),
        "state": pod_state(s.state),
        "created_at": time(s.created_at),
        "network": network,
        "labels": s.labels,
        "annotations": s.annotations,
        "runtime_handler": s.runtime_handler,
    })
}

/// An image.
pub fn image(i: &Image) -> Value {
    json!({
        "id": i.id,
        "repo_tags": i.repo_tags,
        "repo_digests": i.repo_digests,
        "size": i.size,
        "uid": i.uid.as_ref().map(|u| u.value),
        "username": i.username,
        "pinned": i.pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_times_are_readable() {
        assert_eq!(container_state(2), "CONTAINER_EXITED");
        assert_eq!(container_state(99), "CONTAINER_UNKNOWN");
        assert_eq!(pod_state(0), "SANDBOX_READY");
        assert_eq!(time(0), Value::Null);
        assert_eq!(
            time(1_000_000_001),
            Value::String("1970-01-01T00:00:01.000000001Z".into())
        );
    }

    #[test]
    fn info_expands_json_strings() {
        let m = HashMap::from([
            ("info".to_string(), r#"{"pid": 42}"#.to_string()),
            ("note".to_string(), "plain text".to_string()),
        ]);
        assert_eq!(info(&m), json!({"info": {"pid": 42}, "note": "plain text"}));
    }
}
