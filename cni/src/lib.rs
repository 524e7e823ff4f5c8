//! The runtime side of CNI (spec 1.0.0, and 0.4.0/0.3.x/0.2.0 configs):
//! load the first network config list from a conf dir, find plugins in bin
//! dirs, run ADD/DEL/CHECK/VERSION with the CNI_* environment and the config
//! on stdin, chain `prevResult`, pass `runtimeConfig` capabilities, parse
//! results and plugin errors, and cache what ADD did so DEL works after a
//! restart.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cria_cni::CniError> {
//! use cria_cni::{Cni, CniOptions, RuntimeConf};
//! let cni = Cni::new(CniOptions::new("/var/lib/cria/cni-cache"));
//! let rt = RuntimeConf::new("sandbox-id", "/run/cria/netns/sandbox-id").with_pod("default", "web", "uid");
//! let attached = cni.add(&rt).await?; // attached.pod_ips: v4 first, then v6
//! cni.del(&rt).await?; // idempotent
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod error;
mod exec;
mod network;
mod plugin_path;
mod result;
mod runtime_conf;
mod version;

pub use cache::{CacheEntry, ResultCache};
pub use config::{
    config_files, load_first, ConfDir, NetworkConfigList, PluginConfig, CONFIG_EXTENSIONS,
};
pub use error::{CniError, Result};
pub use exec::{Command, ExecRequest, PluginExec, ProcessExec};
pub use network::{
    plugin_stdin, Attachment, Cni, CniOptions, NetworkStatus, DEFAULT_CONF_DIR,
    DEFAULT_PLUGIN_TIMEOUT, NOT_READY_REASON,
};
pub use plugin_path::{find_plugin, DEFAULT_BIN_DIRS};
pub use result::{CniResult, Dns, Interface, IpConfig, IpNetwork, Route};
pub use runtime_conf::{
    Bandwidth, CapabilityArgs, DnsCapability, IpRange, PortMapping, RuntimeConf, DEFAULT_IFNAME,
};
pub use version::{CniVersion, SUPPORTED_VERSIONS};
