//! Typed CNI results (1.0.0 shape), parsed from 0.3.x/0.4.0/1.0.0 results
//! and from the legacy 0.1.0/0.2.0 `ip4`/`ip6` form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::version::CniVersion;

/// An address with a prefix length, as CNI writes it (`10.1.0.5/24`; host bits kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no /prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix_len: u8 = prefix.parse().map_err(|e| format!("{s:?}: prefix: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads an optional address where plugins may also write `""` for none.
fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name (`eth0`, `cni0`, `veth…`).
    pub name: String,
    /// Hardware address, if the plugin reported one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU, if reported (1.0.0+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the sandbox; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address and prefix.
    pub address: IpNetwork,
    /// Default gateway for this address, if any.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route the plugin installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop; none means the gateway of the matching address.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
}

/// DNS settings a plugin suggests.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The result of a network ADD, in the 1.0.0 shape whatever version produced it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// The version the plugin answered with.
    #[serde(default)]
    pub cni_version: String,
    /// Interfaces created or configured.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes installed.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS suggestions.
    #[serde(default)]
    pub dns: Dns,
}

/// The legacy 0.1.0/0.2.0 result: one `ip4` and one `ip6` block.
#[derive(Deserialize)]
struct LegacyResult {
    #[serde(default, rename = "cniVersion")]
    cni_version: String,
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: IpNetwork,
    #[serde(default, deserialize_with = "opt_ip")]
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl CniResult {
    /// Parses a plugin's result. The result's own `cniVersion` decides the
    /// shape; `config_version` is used when the result does not carry one.
    pub fn parse(value: &Value, config_version: CniVersion) -> Result<Self, String> {
        let declared = value.get("cniVersion").and_then(Value::as_str);
        let version = match declared {
            Some(v) => v.parse::<CniVersion>()?,
            None => config_version,
        };
        if version.has_chaining() {
            let mut result: CniResult =
                serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
            if let Some(bad) = result
                .ips
                .iter()
                .filter_map(|ip| ip.interface)
                .find(|&i| i >= result.interfaces.len())
            {
                return Err(format!(
                    "ip refers to interface {bad}, but there are {}",
                    result.interfaces.len()
                ));
            }
            result.cni_version = version.to_string();
            return Ok(result);
        }
        let legacy: LegacyResult =
            serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let mut result = CniResult {
            cni_version: if legacy.cni_version.is_empty() {
                version.to_string()
            } else {
                legacy.cni_version
            },
            dns: legacy.dns,
            ..CniResult::default()
        };
        for block in [legacy.ip4, legacy.ip6].into_iter().flatten() {
            result.ips.push(IpConfig {
                address: block.ip,
                gateway: block.gateway,
                interface: None,
            });
            result.routes.extend(block.routes);
        }
        Ok(result)
    }

    /// The pod's addresses on `ifname` inside the sandbox, IPv4 first, then IPv6.
    ///
    /// Addresses without an interface index (legacy results, some IPAM-only
    /// plugins) count as the pod's.
    pub fn pod_ips(&self, ifname: &str) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(iface) => iface.name == ifname && !iface.sandbox.is_empty(),
                    None => true,
                },
            )
            .map(|ip| ip.address.addr)
            .collect();
        // Stable: keeps the plugin's order within each family.
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips.dedup();
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> CniVersion {
        s.parse().expect("version")
    }

    #[test]
    fn parses_a_bridge_result_and_selects_pod_ips_v4_first() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:00"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:01", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"address": "10.22.0.5/24", "gateway": "10.22.0.1", "interface": 2},
                {"address": "10.22.0.1/24", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
        });
        let r = CniResult::parse(&raw, v("1.0.0")).expect("parse");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.routes[0].gw, Some("10.22.0.1".parse().expect("ip")));
        assert_eq!(r.dns.nameservers, ["10.96.0.10"]);
        let ips: Vec<String> = r.pod_ips("eth0").iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.22.0.5", "fd00::5"]);
    }

    #[test]
    fn parses_031_results_with_version_fields_and_empty_gateway() {
        let raw = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [{"version": "4", "address": "10.1.2.3/16", "gateway": "", "interface": 0}]
        });
        let r = CniResult::parse(&raw, v("0.3.1")).expect("parse");
        assert_eq!(r.ips[0].gateway, None);
        assert_eq!(
            r.pod_ips("eth0"),
            vec!["10.1.2.3".parse::<IpAddr>().expect("ip")]
        );
    }

    #[test]
    fn parses_legacy_020_results() {
        let raw = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.9.0.7/24", "gateway": "10.9.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "fd01::7/64"},
            "dns": {"nameservers": ["1.1.1.1"]}
        });
        let r = CniResult::parse(&raw, v("0.2.0")).expect("parse");
        assert_eq!(r.cni_version, "0.2.0");
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.routes.len(), 1);
        let ips: Vec<String> = r.pod_ips("eth0").iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.9.0.7", "fd01::7"]);
    }

    #[test]
    fn rejects_bad_addresses_and_interface_indexes() {
        let bad_addr = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]});
        assert!(CniResult::parse(&bad_addr, v("1.0.0")).is_err());
        let bad_prefix = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/33"}]});
        assert!(CniResult::parse(&bad_prefix, v("1.0.0")).is_err());
        let bad_index = json!({"cniVersion": "1.0.0", "interfaces": [], "ips": [{"address": "10.0.0.3/24", "interface": 0}]});
        let err = CniResult::parse(&bad_index, v("1.0.0")).expect_err("index out of range");
        assert!(err.contains("interface 0"), "{err}");
    }

    #[test]
    fn ip_network_round_trips() {
        for s in ["10.0.0.1/8", "fd00::1/64", "0.0.0.0/0"] {
            assert_eq!(s.parse::<IpNetwork>().expect(s).to_string(), s);
        }
        assert!("10.0.0.1".parse::<IpNetwork>().is_err());
    }
}
