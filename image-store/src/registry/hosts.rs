//! Per-host registry settings: endpoints (mirrors, then the origin), the
//! schemes each may use, and the TLS material from `certs.d/<host>/`.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use crate::error::ImageError;
use crate::registry::manifest::Platform;

/// Where docker.io's registry API really lives.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Registry client settings (all optional).
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// `certs.d` directory: `<dir>/<host>/` holds `*.crt` roots and `*.cert`/`*.key` client pairs.
    pub certs_dir: Option<PathBuf>,
    /// Hosts (`host[:port]`) that may be reached over plain HTTP and whose
    /// certificates are not verified. Loopback hosts may always use HTTP.
    pub insecure_hosts: Vec<String>,
    /// Mirrors per registry host (`docker.io` → [`https://mirror.example`]),
    /// tried in order before the origin.
    pub mirrors: HashMap<String, Vec<String>>,
    /// A docker-style `config.json` with credentials.
    pub auth_file: Option<PathBuf>,
    /// The platform to choose from an index; default: this machine's.
    pub platform: Option<Platform>,
}

/// One place to send a registry request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as it goes into the URL.
    pub host: String,
    /// Path before `/v2/` (mirrors may live under a prefix), no trailing slash.
    pub prefix: String,
    /// Schemes to try, in order (a second one is a fallback after a transport error).
    pub schemes: Vec<&'static str>,
    /// Whether this is a mirror (its failures fall through to the next endpoint).
    pub mirror: bool,
}

impl RegistryConfig {
    /// The endpoints for a registry domain: its mirrors in order, then the origin.
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .mirrors
            .get(domain)
            .into_iter()
            .flatten()
            .filter_map(|m| self.mirror_endpoint(m))
            .collect();
        let host = if domain == "docker.io" {
            DOCKER_HUB_API.to_string()
        } else {
            domain.to_string()
        };
        out.push(Endpoint {
            schemes: self.schemes_for(&host),
            host,
            prefix: String::new(),
            mirror: false,
        });
        out
    }

    fn mirror_endpoint(&self, spec: &str) -> Option<Endpoint> {
        let (scheme, rest) = match spec.split_once("://") {
            Some(("https", r)) => (Some("https"), r),
            Some(("http", r)) => (Some("http"), r),
            Some((other, _)) => {
                tracing::warn!(
                    mirror = spec,
                    scheme = other,
                    "ignoring mirror with unknown scheme"
                );
                return None;
            }
            None => (None, spec),
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            tracing::warn!(mirror = spec, "ignoring mirror without a host");
            return None;
        }
        // `https://m.example/v2/` and `https://m.example` mean the same endpoint.
        let path = path.trim_end_matches('/');
        let path = if path == "v2" {
            ""
        } else {
            path.strip_suffix("/v2").unwrap_or(path)
        };
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        let schemes = match scheme {
            Some(s) => vec![s],
            None => self.schemes_for(host),
        };
        Some(Endpoint {
            host: host.to_string(),
            prefix,
            schemes,
            mirror: true,
        })
    }

    /// HTTPS, plus an HTTP fallback for insecure and loopback hosts.
    fn schemes_for(&self, host: &str) -> Vec<&'static str> {
        if self.is_insecure(host) || is_loopback(host) {
            vec!["https", "http"]
        } else {
            vec!["https"]
        }
    }

    /// Whether the host is listed as insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure_hosts.iter().any(|h| h == host)
    }

    /// Builds the HTTP client for one host: system roots plus the host's
    /// `certs.d` roots, its client identity, and no verification for insecure hosts.
    pub fn build_client(&self, host: &str) -> Result<reqwest::Client, ImageError> {
        install_crypto_provider();
        let cfg_err = |detail: String| ImageError::Config {
            host: host.to_string(),
            detail,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("cria/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .tls_backend_rustls();
        if let Some(dir) = self.certs_dir_for(host) {
            let tls = load_host_tls(&dir).map_err(cfg_err)?;
            if !tls.roots.is_empty() {
                builder = builder.tls_certs_merge(tls.roots);
            }
            if let Some(identity) = tls.identity {
                builder = builder.identity(identity);
            }
        }
        if self.is_insecure(host) {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder
            .build()
            .map_err(|e| cfg_err(format!("building HTTP client: {e}")))
    }

    fn certs_dir_for(&self, host: &str) -> Option<PathBuf> {
        let base = self.certs_dir.as_ref()?;
        let mut names = vec![host.to_string()];
        if host == DOCKER_HUB_API {
            names.push("docker.io".into());
        }
        names.into_iter().map(|n| base.join(n)).find(|p| p.is_dir())
    }
}

/// `localhost`, 127.0.0.0/8 and ::1, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The rustls crypto provider: ring, installed once for the whole process
/// (reqwest's `rustls-no-provider` uses the process default).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// TLS material read from one `certs.d/<host>/` directory.
struct HostTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

/// Reads `*.crt` (roots) and `X.cert` + `X.key` (client identity) from `dir`.
fn load_host_tls(dir: &Path) -> Result<HostTls, String> {
    let mut roots = Vec::new();
    let mut identity = None;
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let read = |p: &Path| fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
        match ext {
            "crt" => {
                let pem = read(&path)?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("CA certificate {}: {e}", path.display()))?;
                roots.extend(certs);
            }
            "cert" => {
                let key_path = path.with_extension("key");
                if !key_path.is_file() {
                    return Err(format!(
                        "client certificate {} has no key {}",
                        path.display(),
                        key_path.display()
                    ));
                }
                let mut pem = read(&path)?;
                pem.push(b'\n');
                pem.extend(read(&key_path)?);
                identity = Some(
                    reqwest::Identity::from_pem(&pem)
                        .map_err(|e| format!("client certificate {}: {e}", path.display()))?,
                );
            }
            _ => {}
        }
    }
    Ok(HostTls { roots, identity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn endpoints_put_mirrors_first_and_map_docker_hub() {
        let mut cfg = RegistryConfig {
            insecure_hosts: vec!["reg.internal:5000".into()],
            ..Default::default()
        };
        cfg.mirrors.insert(
            "docker.io".into(),
            vec![
                "https://mirror.example/base/v2/".into(),
                "127.0.0.1:5001".into(),
                "ftp://nope".into(),
            ],
        );
        let eps = cfg.endpoints("docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].host, "mirror.example");
        assert_eq!(eps[0].prefix, "/base");
        assert_eq!(eps[0].schemes, vec!["https"]);
        assert!(eps[0].mirror);
        assert_eq!(eps[1].host, "127.0.0.1:5001");
        assert_eq!(eps[1].schemes, vec!["https", "http"]);
        assert_eq!(eps[2].host, "registry-1.docker.io");
        assert!(!eps[2].mirror);
        assert_eq!(eps[2].schemes, vec!["https"]);

        let eps = cfg.endpoints("reg.internal:5000");
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].schemes, vec!["https", "http"]);
        assert_eq!(cfg.endpoints("quay.io")[0].schemes, vec!["https"]);
    }

    #[test]
    fn certs_dir_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg.example");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("ca.crt"), "not a pem").unwrap();
        let cfg = RegistryConfig {
            certs_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        // from_pem_bundle accepts text without PEM sections as an empty bundle;
        // a client certificate without its key is an error naming the file.
        fs::write(host.join("client.cert"), "x").unwrap();
        let err = cfg.build_client("reg.example").unwrap_err().to_string();
        assert!(err.contains("client.cert"), "{err}");
        // Another host without a certs.d dir builds fine.
        cfg.build_client("other.example").unwrap();
    }
}
