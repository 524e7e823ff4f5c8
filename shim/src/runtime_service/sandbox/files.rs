//! The pod's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, written
//! once in `<root>/pods/<id>/` and bind-mounted into every container.

use cria_proto::v1::DnsConfig;
use std::path::Path;

/// `/etc/hostname`: the hostname and a newline.
pub(crate) fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts` for a pod with its own network: the localhost entries and
/// the pod hostname (on the pod IP once CNI gives one, else 127.0.1.1 as
/// Debian does for a host without a fixed address).
pub(crate) fn render_hosts(hostname: &str, pod_ip: Option<&str>) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        out.push_str(&format!("{}\t{hostname}\n", pod_ip.unwrap_or("127.0.1.1")));
    }
    out
}

/// `/etc/resolv.conf` from kubelet's DNS config, or `host` (the node's
/// resolv.conf) when the config names no servers, searches or options.
pub(crate) fn render_resolv_conf(dns: Option<&DnsConfig>, host: &str) -> String {
    let Some(dns) =
        dns.filter(|d| !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty())
    else {
        return host.to_string();
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

/// Writes the three files into `dir` (mode 0644: containers running as
/// non-root users must read them).
pub(crate) fn write_pod_files(
    dir: &Path,
    hostname: &str,
    hosts: &str,
    resolv_conf: &str,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (name, content) in [
        ("hostname", render_hostname(hostname)),
        ("hosts", hosts.to_string()),
        ("resolv.conf", resolv_conf.to_string()),
    ] {
        let path = dir.join(name);
        crate::runtime_service::store::write_atomic(&path, content.as_bytes())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into(), "timeout:1".into()],
        };
        assert_eq!(
            render_resolv_conf(Some(&dns), "nameserver 1.1.1.1\n"),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\nnameserver 10.96.0.11\n\
             options ndots:5 timeout:1\n"
        );
    }

    #[test]
    fn resolv_conf_falls_back_to_the_host() {
        let host = "nameserver 192.0.2.1\n";
        assert_eq!(render_resolv_conf(None, host), host);
        assert_eq!(render_resolv_conf(Some(&DnsConfig::default()), host), host);
        let only_options = DnsConfig {
            options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            render_resolv_conf(Some(&only_options), host),
            "options ndots:2\n"
        );
    }

    #[test]
    fn hosts_has_localhost_and_the_hostname() {
        let hosts = render_hosts("web-0", None);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost"));
        assert!(hosts.ends_with("127.0.1.1\tweb-0\n"), "{hosts}");
        assert!(render_hosts("web-0", Some("10.0.0.5")).ends_with("10.0.0.5\tweb-0\n"));
        assert!(!render_hosts("", None).contains("127.0.1.1"));
    }

    #[test]
    fn pod_files_are_written_readable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        write_pod_files(tmp.path(), "h", "hosts\n", "nameserver 1.2.3.4\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("hostname")).unwrap(),
            "h\n"
        );
        let mode = std::fs::metadata(tmp.path().join("hosts"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
