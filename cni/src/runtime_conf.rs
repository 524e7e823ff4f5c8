//! What the runtime tells plugins about one attachment: container id, netns,
//! interface, CNI_ARGS and the capability arguments put into `runtimeConfig`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CniError, Result};

/// The interface name kubelet-style runtimes use inside the pod.
pub const DEFAULT_IFNAME: &str = "eth0";

/// One network attachment of a sandbox.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuntimeConf {
    /// CNI_CONTAINERID: the sandbox id (letters, digits, `_`, `.`, `-`).
    pub container_id: String,
    /// CNI_NETNS: the pinned netns path (`<state>/netns/<id>`).
    pub netns: PathBuf,
    /// CNI_IFNAME: the interface inside the netns, normally `eth0`.
    pub ifname: String,
    /// CNI_ARGS as key/value pairs, joined `K=V;K=V`.
    pub args: Vec<(String, String)>,
    /// Values for the `runtimeConfig` capabilities plugins declare.
    pub capabilities: CapabilityArgs,
}

impl RuntimeConf {
    /// An attachment of `container_id` in `netns` on `eth0`, with no args or capabilities.
    pub fn new(container_id: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        Self {
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: DEFAULT_IFNAME.to_string(),
            ..Self::default()
        }
    }

    /// Sets the CNI_ARGS Kubernetes plugins expect for a pod (and `IgnoreUnknown=1`).
    pub fn with_pod(mut self, namespace: &str, name: &str, uid: &str) -> Self {
        self.args = vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), namespace.into()),
            ("K8S_POD_NAME".into(), name.into()),
            (
                "K8S_POD_INFRA_CONTAINER_ID".into(),
                self.container_id.clone(),
            ),
            ("K8S_POD_UID".into(), uid.into()),
        ];
        self
    }

    /// Checks the fields the spec constrains; the id also names the cache file.
    pub fn validate(&self) -> Result<()> {
        let id = &self.container_id;
        let id_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && id.len() <= 256;
        if !id_ok {
            return Err(CniError::InvalidRuntime(format!(
                "container id {id:?} must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
            )));
        }
        let ifname = &self.ifname;
        let ifname_ok = !ifname.is_empty()
            && ifname.len() <= 15
            && ifname != "."
            && ifname != ".."
            && !ifname
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !ifname_ok {
            return Err(CniError::InvalidRuntime(format!(
                "interface name {ifname:?} is not a valid Linux interface name"
            )));
        }
        for (k, v) in &self.args {
            if k.is_empty() || [k, v].iter().any(|s| s.contains(';') || s.contains('=')) {
                return Err(CniError::InvalidRuntime(format!(
                    "CNI_ARGS entry {k:?}={v:?} may not be empty or hold ';' or '='"
                )));
            }
        }
        Ok(())
    }

    /// The CNI_ARGS value.
    pub fn cni_args(&self) -> String {
        let pairs: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(";")
    }
}

/// A hostPort mapping (`portMappings` capability, served by `portmap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (lower case, as portmap wants).
    pub protocol: String,
    /// Host address to bind to; empty means all.
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Traffic shaping (`bandwidth` capability): rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Ingress rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_rate: u64,
    /// Ingress burst.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ingress_burst: u64,
    /// Egress rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_rate: u64,
    /// Egress burst.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub egress_burst: u64,
}

impl PortMapping {
    /// A mapping; the protocol is lower-cased (CRI says `TCP`, portmap wants `tcp`).
    pub fn new(host_port: u16, container_port: u16, protocol: &str, host_ip: &str) -> Self {
        Self {
            host_port,
            container_port,
            protocol: protocol.to_ascii_lowercase(),
            host_ip: host_ip.to_string(),
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Pod DNS settings (`dns` capability).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DnsCapability {
    /// Name servers.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub searches: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// One range for host-local's `ipRanges` capability (the pod CIDR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    /// The subnet, e.g. `10.244.1.0/24`.
    pub subnet: String,
    /// First address to hand out, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<String>,
    /// Last address to hand out, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    /// Gateway, if not the first address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// Values for the well-known capabilities, plus any others by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CapabilityArgs {
    /// `portMappings`.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// `bandwidth`.
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    /// `dns`.
    #[serde(default)]
    pub dns: Option<DnsCapability>,
    /// `ips`: static addresses requested for the pod (`10.1.2.3/24`).
    #[serde(default)]
    pub ips: Vec<String>,
    /// `ipRanges`: sets of ranges; one inner list per IPAM range set (one per family).
    #[serde(default)]
    pub ip_ranges: Vec<Vec<IpRange>>,
    /// Any other capability, by its CNI name.
    #[serde(default)]
    pub extra: BTreeMap<String, Value>,
}

impl CapabilityArgs {
    /// `ipRanges` for pod CIDRs (one range set per CIDR, e.g. one v4 and one v6).
    pub fn ip_ranges_from_pod_cidrs<S: AsRef<str>>(cidrs: &[S]) -> Vec<Vec<IpRange>> {
        cidrs
            .iter()
            .map(|c| c.as_ref().trim())
            .filter(|c| !c.is_empty())
            .map(|c| {
                vec![IpRange {
                    subnet: c.to_string(),
                    range_start: None,
                    range_end: None,
                    gateway: None,
                }]
            })
            .collect()
    }

    /// The capabilities that have a value, keyed by their CNI name.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut put = |name: &str, value: Value| {
            map.insert(name.to_string(), value);
        };
        // A CRI port without a host port is informational: nothing to map.
        let mappings: Vec<&PortMapping> = self
            .port_mappings
            .iter()
            .filter(|m| m.host_port != 0)
            .collect();
        if !mappings.is_empty() {
            put("portMappings", json(&mappings));
        }
        if let Some(bw) = &self.bandwidth {
            put("bandwidth", json(bw));
        }
        if let Some(dns) = &self.dns {
            put("dns", json(dns));
        }
        if !self.ips.is_empty() {
            put("ips", json(&self.ips));
        }
        if !self.ip_ranges.is_empty() {
            put("ipRanges", json(&self.ip_ranges));
        }
        for (k, v) in &self.extra {
            put(k, v.clone());
        }
        map
    }
}

/// Serialises a capability value.
fn json<T: Serialize>(value: &T) -> Value {
    // The capability types hold only strings, numbers, vectors and options,
    // which serde_json always serialises.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_args_are_joined_in_order() {
        let rt =
            RuntimeConf::new("abc123", "/run/cria/netns/abc123").with_pod("default", "web", "u-1");
        assert_eq!(
            rt.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1"
        );
        rt.validate().expect("valid");
    }

    #[test]
    fn rejects_unsafe_ids_ifnames_and_args() {
        for id in ["", "../x", "a/b", "-lead", "a b"] {
            assert!(RuntimeConf::new(id, "/n").validate().is_err(), "{id:?}");
        }
        let mut rt = RuntimeConf::new("ok", "/n");
        rt.ifname = "averyveryverylongname".into();
        assert!(rt.validate().is_err());
        let mut rt = RuntimeConf::new("ok", "/n");
        rt.args = vec![("A".into(), "x;B=y".into())];
        assert!(rt.validate().is_err());
    }

    #[test]
    fn capability_map_holds_only_set_values_with_cni_names() {
        let caps = CapabilityArgs {
            port_mappings: vec![
                PortMapping::new(8080, 80, "TCP", ""),
                PortMapping::new(0, 53, "UDP", ""),
            ],
            dns: Some(DnsCapability {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            ips: vec!["10.244.1.7/24".into()],
            bandwidth: Some(Bandwidth {
                ingress_rate: 1000,
                ..Bandwidth::default()
            }),
            ip_ranges: CapabilityArgs::ip_ranges_from_pod_cidrs(&["10.244.1.0/24", " "]),
            ..CapabilityArgs::default()
        };
        assert_eq!(
            Value::Object(caps.to_map()),
            json!({
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                "bandwidth": {"ingressRate": 1000},
                "dns": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
                "ips": ["10.244.1.7/24"],
                "ipRanges": [[{"subnet": "10.244.1.0/24"}]]
            })
        );
    }
}
