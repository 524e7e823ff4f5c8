//! criad's configuration: a TOML file (every key optional) overridden by
//! command-line flags.
//!
//! Each `[section]` of the file is its own struct, so a new concern adds a
//! sub-struct and a field on [`Config`] without touching the others. Every
//! struct denies unknown keys: a typo in the file stops criad at start-up
//! with a message naming the key and the file, rather than being ignored.
//! The doc comment of every key states its default; the README's reference
//! is generated from them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where criad looks for its configuration when `--config` is not given.
/// A missing file there means "all defaults"; a missing `--config` file is
/// an error.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cria/config.toml";

/// Name of the CRI socket inside the state directory when `socket` is unset.
const SOCKET_NAME: &str = "cria.sock";

/// Name of the monitor binary looked for next to criad when
/// `runtime.monitor_path` is unset.
const MONITOR_NAME: &str = "cria-monitor";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// toml's message: names the key and shows the line.
        message: String,
    },
    /// A value parses but cannot be used.
    #[error("invalid config value {key}: {reason}")]
    Invalid {
        /// The dotted key, e.g. `registry.max_concurrent_downloads`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole configuration (the top level of the TOML file).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: content store, image metadata, snapshots, pod and
    /// container records. Default: `/var/lib/cria`.
    pub root: PathBuf,
    /// Runtime state that does not survive a reboot: the socket, pinned
    /// namespaces, monitor state. Default: `/run/cria`.
    pub state: PathBuf,
    /// The CRI unix socket (created mode 0600). Default: `<state>/cria.sock`,
    /// i.e. `/run/cria/cria.sock`.
    pub socket: Option<PathBuf>,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// `tracing` directives such as `info,cria_image_store=debug`.
    /// Default: `info`.
    pub log_level: String,
    /// Log format on stderr: `text` or `json`. Default: `text`.
    pub log_format: LogFormat,
    /// Registry access for image pulls.
    pub registry: RegistryConfig,
    /// Container networking (CNI).
    pub cni: CniConfig,
    /// The container runtime.
    pub runtime: RuntimeConfig,
    /// The streaming server for exec, attach and port-forward.
    pub streaming: StreamingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/cria"),
            state: PathBuf::from("/run/cria"),
            socket: None,
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            registry: RegistryConfig::default(),
            cni: CniConfig::default(),
            runtime: RuntimeConfig::default(),
            streaming: StreamingConfig::default(),
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[registry]`: how images are fetched.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Per-registry TLS material: `<certs_dir>/<host[:port]>/` holds `*.crt`
    /// CA certificates (added to the system roots) and `*.cert` + `*.key`
    /// client certificate pairs. Default: `/etc/cria/certs.d`.
    pub certs_dir: PathBuf,
    /// A docker-style `config.json` whose `auths` give credentials per
    /// registry, used when a pull carries no CRI `AuthConfig`.
    /// Default: none.
    pub auth_file: Option<PathBuf>,
    /// Registry hosts (`host[:port]`) that may be reached over plain HTTP
    /// and whose TLS certificates are not verified. Loopback registries
    /// (127.0.0.0/8, ::1, localhost) are always allowed. Default: empty.
    pub insecure: Vec<String>,
    /// Mirrors per registry host, e.g.
    /// `"docker.io" = ["https://mirror.example.com"]`: tried in order before
    /// the registry itself, which stays the last resort. Default: none.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// How many layers download at once, over all pulls (at least 1).
    /// Default: 3.
    pub max_concurrent_downloads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            certs_dir: PathBuf::from("/etc/cria/certs.d"),
            auth_file: None,
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            max_concurrent_downloads: 3,
        }
    }
}

/// `[cni]`: where network configurations and plugins live.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Directory of CNI network configurations (`*.conflist`, `*.conf`);
    /// the first in lexical order is used. Default: `/etc/cni/net.d`.
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for CNI plugin binaries.
    /// Default: `["/opt/cni/bin", "/usr/lib/cni"]`.
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

/// `[runtime]`: how containers are run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// The `cria-monitor` binary started for every container.
    /// Default: `cria-monitor` in the directory of the criad binary.
    pub monitor_path: Option<PathBuf>,
    /// How cgroups are managed: `cgroupfs` (criad writes the cgroup
    /// filesystem itself; the only driver so far). Default: `cgroupfs`.
    pub cgroup_driver: CgroupDriver,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            monitor_path: None,
            cgroup_driver: CgroupDriver::Cgroupfs,
        }
    }
}

/// The cgroup managers criad supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Direct writes to the cgroup filesystem (v1 or v2).
    Cgroupfs,
}

/// `[streaming]`: the HTTP server kubelet redirects exec/attach/port-forward to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// Address the streaming server listens on. Default: `127.0.0.1`.
    pub address: IpAddr,
    /// Port of the streaming server; 0 picks a free one. Default: 0.
    pub port: u16,
    /// PEM certificate chain: with `tls_key_file`, the server speaks TLS
    /// and hands out `https://` URLs. Default: unset (plain HTTP).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`. Default: unset.
    pub tls_key_file: Option<PathBuf>,
    /// Seconds an exec/attach/port-forward URL stays valid (single use in
    /// any case). Default: 60.
    pub token_ttl_seconds: u64,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            tls_cert_file: None,
            tls_key_file: None,
            token_ttl_seconds: 60,
        }
    }
}

impl StreamingConfig {
    /// Certificate and key come together; a URL must live for a while.
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "streaming.tls_cert_file",
                    reason: "is set without streaming.tls_key_file (set both or neither)"
                        .to_string(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "streaming.tls_key_file",
                    reason: "is set without streaming.tls_cert_file (set both or neither)"
                        .to_string(),
                })
            }
            _ => {}
        }
        if self.token_ttl_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "streaming.token_ttl_seconds",
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(())
    }

    /// The certificate and key files, when TLS is configured.
    pub fn tls_files(&self) -> Option<cria_streaming::TlsFiles> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(cria_streaming::TlsFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
            }),
            _ => None,
        }
    }
}

/// Values given on the command line; each one set replaces the file's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--root`.
    pub root: Option<PathBuf>,
    /// `--state`.
    pub state: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Parses and checks TOML text; `path` only names the file in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config = Self::from_toml(text, path)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without the checks (flags may still fix a value).
    fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Loads the configuration: `explicit` (`--config`) must exist; without
    /// it [`DEFAULT_CONFIG_PATH`] is read when present, else all defaults
    /// apply. The overrides are applied last.
    pub fn load(explicit: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut config = match explicit {
            Some(path) => Self::read(path)?,
            None => {
                let path = Path::new(DEFAULT_CONFIG_PATH);
                match std::fs::read_to_string(path) {
                    Ok(text) => Self::from_toml(&text, path)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
                    Err(source) => {
                        return Err(ConfigError::Read {
                            path: path.to_path_buf(),
                            source,
                        })
                    }
                }
            }
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Replaces the values the command line set.
    pub fn apply(&mut self, overrides: Overrides) {
        let Overrides {
            root,
            state,
            socket,
            log_level,
            log_format,
        } = overrides;
        if let Some(v) = root {
            self.root = v;
        }
        if let Some(v) = state {
            self.state = v;
        }
        if let Some(v) = socket {
            self.socket = Some(v);
        }
        if let Some(v) = log_level {
            self.log_level = v;
        }
        if let Some(v) = log_format {
            self.log_format = v;
        }
    }

    /// Checks what serde cannot: values that parse but are unusable.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.registry.max_concurrent_downloads == 0 {
            return Err(ConfigError::Invalid {
                key: "registry.max_concurrent_downloads",
                reason: "must be at least 1".to_string(),
            });
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(ConfigError::Invalid {
                key: "log_level",
                reason: format!("{:?} is not a level or filter: {e}", self.log_level),
            });
        }
        self.streaming.validate()?;
        for (key, path) in [("root", &self.root), ("state", &self.state)] {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("{} is not an absolute path", path.display()),
                });
            }
        }
        Ok(())
    }

    /// The CRI socket path (`socket`, else `<state>/cria.sock`).
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.state.join(SOCKET_NAME))
    }

    /// The monitor binary (`runtime.monitor_path`, else `cria-monitor` next
    /// to the running executable).
    pub fn monitor_path(&self) -> PathBuf {
        if let Some(p) = &self.runtime.monitor_path {
            return p.clone();
        }
        let dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin"));
        dir.join(MONITOR_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/cria/test.toml"))
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.root, Path::new("/var/lib/cria"));
        assert_eq!(c.state, Path::new("/run/cria"));
        assert_eq!(c.socket_path(), Path::new("/run/cria/cria.sock"));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.registry.certs_dir, Path::new("/etc/cria/certs.d"));
        assert_eq!(c.registry.auth_file, None);
        assert!(c.registry.insecure.is_empty());
        assert!(c.registry.mirrors.is_empty());
        assert_eq!(c.registry.max_concurrent_downloads, 3);
        assert_eq!(c.cni.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(
            c.cni.bin_dirs,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(c.runtime.monitor_path, None);
        assert_eq!(c.runtime.cgroup_driver, CgroupDriver::Cgroupfs);
        assert_eq!(c.streaming.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.streaming.port, 0);
        assert_eq!(c.streaming.tls_files(), None);
        assert_eq!(c.streaming.token_ttl_seconds, 60);
    }

    #[test]
    fn every_section_parses() {
        let c = parse(
            r#"
root = "/data/cria"
state = "/run/cria2"
socket = "/run/cria2/x.sock"
log_level = "debug,h2=info"
log_format = "json"

[registry]
certs_dir = "/srv/certs.d"
auth_file = "/root/.docker/config.json"
insecure = ["registry.lan:5000"]
max_concurrent_downloads = 8
[registry.mirrors]
"docker.io" = ["https://m1.example", "http://m2.example:5000"]

[cni]
conf_dir = "/srv/cni/conf"
bin_dirs = ["/srv/cni/bin"]

[runtime]
monitor_path = "/usr/libexec/cria-monitor"
cgroup_driver = "cgroupfs"

[streaming]
address = "::1"
port = 10010
tls_cert_file = "/etc/cria/streaming.crt"
tls_key_file = "/etc/cria/streaming.key"
token_ttl_seconds = 5
"#,
        )
        .unwrap();
        assert_eq!(c.root, Path::new("/data/cria"));
        assert_eq!(c.socket_path(), Path::new("/run/cria2/x.sock"));
        assert_eq!(c.log_level, "debug,h2=info");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.registry.certs_dir, Path::new("/srv/certs.d"));
        assert_eq!(
            c.registry.auth_file.as_deref(),
            Some(Path::new("/root/.docker/config.json"))
        );
        assert_eq!(c.registry.insecure, vec!["registry.lan:5000".to_string()]);
        assert_eq!(c.registry.max_concurrent_downloads, 8);
        assert_eq!(
            c.registry.mirrors["docker.io"],
            vec!["https://m1.example", "http://m2.example:5000"]
        );
        assert_eq!(c.cni.conf_dir, Path::new("/srv/cni/conf"));
        assert_eq!(c.cni.bin_dirs, vec![PathBuf::from("/srv/cni/bin")]);
        assert_eq!(c.monitor_path(), PathBuf::from("/usr/libexec/cria-monitor"));
        assert_eq!(c.streaming.address, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(c.streaming.port, 10010);
        assert_eq!(
            c.streaming.tls_files(),
            Some(cria_streaming::TlsFiles {
                cert_file: PathBuf::from("/etc/cria/streaming.crt"),
                key_file: PathBuf::from("/etc/cria/streaming.key"),
            })
        );
        assert_eq!(c.streaming.token_ttl_seconds, 5);
    }

    #[test]
    fn a_tls_file_alone_is_refused_naming_the_key() {
        for (text, key) in [
            (
                "[streaming]\ntls_cert_file = \"/c.pem\"\n",
                "streaming.tls_cert_file",
            ),
            (
                "[streaming]\ntls_key_file = \"/k.pem\"\n",
                "streaming.tls_key_file",
            ),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(key), "{key}: {msg}");
        }
    }

    #[test]
    fn a_zero_token_ttl_is_refused() {
        let msg = parse("[streaming]\ntoken_ttl_seconds = 0\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("streaming.token_ttl_seconds"), "{msg}");
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let c = parse("[registry]\ninsecure = [\"a:1\"]\n").unwrap();
        assert_eq!(c.registry.max_concurrent_downloads, 3);
        assert_eq!(c.registry.certs_dir, Path::new("/etc/cria/certs.d"));
    }

    #[test]
    fn unknown_top_level_key_names_key_and_file() {
        let msg = parse("rooot = \"/x\"\n").unwrap_err().to_string();
        assert!(msg.contains("/etc/cria/test.toml"), "{msg}");
        assert!(msg.contains("rooot"), "{msg}");
    }

    #[test]
    fn unknown_key_in_a_section_names_key_and_file() {
        for (text, key) in [
            ("[registry]\nmirror = {}\n", "mirror"),
            ("[cni]\nbin_dir = []\n", "bin_dir"),
            ("[runtime]\nmonitor = \"/x\"\n", "monitor"),
            ("[streaming]\nhost = \"x\"\n", "host"),
            ("[nosuchsection]\n", "nosuchsection"),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains("/etc/cria/test.toml"), "{msg}");
            assert!(msg.contains(key), "{key}: {msg}");
        }
    }

    #[test]
    fn wrong_types_and_values_are_refused() {
        assert!(parse("log_format = \"xml\"").is_err());
        assert!(parse("[runtime]\ncgroup_driver = \"systemd\"").is_err());
        assert!(parse("[streaming]\nport = 70000").is_err());
        assert!(parse("[streaming]\naddress = \"not-an-ip\"").is_err());
        let msg = parse("[registry]\nmax_concurrent_downloads = 0")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("registry.max_concurrent_downloads"), "{msg}");
        let msg = parse("log_level = \"info,[\"").unwrap_err().to_string();
        assert!(msg.contains("log_level"), "{msg}");
        let msg = parse("root = \"relative/dir\"").unwrap_err().to_string();
        assert!(msg.contains("root"), "{msg}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "root = \"/from/file\"\nstate = \"/from/file-state\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            Overrides {
                state: Some(PathBuf::from("/from/flag")),
                log_format: Some(LogFormat::Json),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.root, Path::new("/from/file"));
        assert_eq!(c.state, Path::new("/from/flag"));
        assert_eq!(c.socket_path(), Path::new("/from/flag/cria.sock"));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_naming_it() {
        let msg = Config::load(
            Some(Path::new("/nonexistent/cria.toml")),
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("/nonexistent/cria.toml"), "{msg}");
    }

    #[test]
    fn monitor_defaults_to_next_to_the_executable() {
        let c = Config::default();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(c.monitor_path(), exe.parent().unwrap().join("cria-monitor"));
    }
}
