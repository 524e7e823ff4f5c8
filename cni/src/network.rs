//! The runtime's CNI entry point: ADD, DEL, CHECK and VERSION over the first
//! network config list, with `prevResult` chaining, capability injection and
//! the result cache.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cache::{CacheEntry, ResultCache};
use crate::config::{ConfDir, NetworkConfigList, PluginConfig};
use crate::error::{CniError, Result};
use crate::exec::{Command, ExecRequest, PluginExec, ProcessExec};
use crate::plugin_path::{find_plugin, DEFAULT_BIN_DIRS};
use crate::result::CniResult;
use crate::runtime_conf::{CapabilityArgs, RuntimeConf};

/// The default conf dir.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

/// The default per-call plugin timeout: generous, since IPAM may wait on a
/// lock, yet short enough that a whole chain fits in kubelet's 2 min request
/// timeout most of the time.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The CRI reason reported while the network is not ready.
pub const NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// Where configs, plugins and the cache are, and how long a plugin may run.
#[derive(Debug, Clone, PartialEq)]
pub struct CniOptions {
    /// Directory searched for the network config (default `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Directories searched for plugins, in order (also passed as CNI_PATH).
    pub bin_dirs: Vec<PathBuf>,
    /// Directory for the result cache (`<root>/cni-cache`); must survive criad restarts.
    pub cache_dir: PathBuf,
    /// Per-call timeout; a plugin running longer is killed.
    pub plugin_timeout: Duration,
}

impl CniOptions {
    /// Default conf and bin dirs and timeout, with the cache in `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            conf_dir: PathBuf::from(DEFAULT_CONF_DIR),
            bin_dirs: DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: cache_dir.into(),
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }
}

/// Whether pods can be networked now (for CRI `Status`'s NetworkReady).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// True when a valid config exists and all its plugins are installed.
    pub ready: bool,
    /// [`NOT_READY_REASON`] when not ready, empty otherwise.
    pub reason: String,
    /// Why not, for people; the network's name when ready.
    pub message: String,
}

/// A successful ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The final result of the chain.
    pub result: CniResult,
    /// The pod's addresses on the interface: IPv4 first, then IPv6.
    pub pod_ips: Vec<IpAddr>,
}

/// The CNI client of a runtime. Cheap to share behind an `Arc`; every call
/// re-reads the conf dir if it changed.
#[derive(Debug)]
pub struct Cni<E = ProcessExec> {
    opts: CniOptions,
    conf: ConfDir,
    cache: ResultCache,
    exec: E,
}

impl Cni<ProcessExec> {
    /// A client that runs real plugin processes.
    pub fn new(opts: CniOptions) -> Self {
        Self::with_exec(opts, ProcessExec)
    }
}

impl<E: PluginExec> Cni<E> {
    /// A client with an injected plugin runner (tests use recording fakes).
    pub fn with_exec(opts: CniOptions, exec: E) -> Self {
        let conf = ConfDir::new(&opts.conf_dir);
        let cache = ResultCache::new(&opts.cache_dir);
        Self {
            opts,
            conf,
            cache,
            exec,
        }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &CniOptions {
        &self.opts
    }

    /// The network config list in effect now (`None` if the conf dir has none).
    pub fn config(&self) -> Result<Option<Arc<NetworkConfigList>>> {
        self.conf.current()
    }

    /// Whether a usable config exists now; re-reads the conf dir when it changed.
    pub fn status(&self) -> NetworkStatus {
        let not_ready = |message: String| NetworkStatus {
            ready: false,
            reason: NOT_READY_REASON.to_string(),
            message,
        };
        let list = match self.config() {
            Ok(Some(list)) => list,
            Ok(None) => {
                return not_ready(format!(
                    "cni plugin not initialized: no valid network config in {}",
                    self.opts.conf_dir.display()
                ))
            }
            Err(e) => return not_ready(format!("cni plugin not initialized: {e}")),
        };
        for plugin in &list.plugins {
            if let Err(e) = find_plugin(&plugin.plugin_type, &self.opts.bin_dirs) {
                return not_ready(format!("network {}: {e}", list.name));
            }
        }
        NetworkStatus {
            ready: true,
            reason: String::new(),
            message: format!("network {}", list.name),
        }
    }

    /// The cached ADD result of an attachment (after a restart, for the pod IP).
    pub fn cached_result(&self, container_id: &str, ifname: &str) -> Result<Option<CniResult>> {
        validate_ids(container_id, ifname)?;
        let Some(entry) = self.cache.load(container_id, ifname)? else {
            return Ok(None);
        };
        let path = self.cache.path(container_id, ifname);
        let (Some(raw), Ok(list)) = (
            entry.result,
            NetworkConfigList::from_value(entry.config, &path),
        ) else {
            return Ok(None);
        };
        CniResult::parse(&raw, list.cni_version)
            .map(Some)
            .map_err(|reason| CniError::InvalidCache { path, reason })
    }

    /// Attaches the sandbox: runs every plugin's ADD in order, chaining results.
    ///
    /// The config used is cached before the first plugin runs, so a later
    /// [`Cni::del`] tears down with the same config even after a crash. On
    /// failure ADD runs DEL itself (best effort, failures logged), forgets the
    /// attachment and returns the ADD error with the plugin's message.
    ///
    /// Dropping the future mid-way kills the running plugin and leaves the
    /// cached config, so the caller must then [`Cni::del`]; run ADD in its own
    /// task if the request that triggered it can be cancelled.
    pub async fn add(&self, rt: &RuntimeConf) -> Result<Attachment> {
        rt.validate()?;
        let list = self.config()?.ok_or_else(|| CniError::NoConfig {
            dir: self.opts.conf_dir.clone(),
        })?;
        let mut entry = CacheEntry::new(
            &rt.container_id,
            &rt.ifname,
            list.to_value(),
            rt.args.clone(),
            rt.capabilities.clone(),
        );
        self.cache.store(&entry)?;
        let attached = async {
            let (raw, result) = self.add_chain(&list, rt).await?;
            entry.result = Some(raw);
            self.cache.store(&entry)?;
            Ok(result)
        }
        .await;
        let result = match attached {
            Ok(result) => result,
            Err(err) => {
                if let Err(del) = self.teardown(&list, rt, None).await {
                    tracing::warn!(container_id = %rt.container_id, error = %del, "cni: DEL after failed ADD failed");
                }
                // The attachment is abandoned: the runtime removes the sandbox
                // after a failed ADD and will not DEL it again, so its record
                // would only leak.
                if let Err(e) = self.cache.remove(&rt.container_id, &rt.ifname) {
                    tracing::warn!(container_id = %rt.container_id, error = %e, "cni: removing cache after failed ADD");
                }
                return Err(err);
            }
        };
        let pod_ips = result.pod_ips(&rt.ifname);
        Ok(Attachment {
            network: list.name.clone(),
            result,
            pod_ips,
        })
    }

    async fn add_chain(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<(Value, CniResult)> {
        let netns = rt.netns.to_string_lossy().into_owned();
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let out = self
                .run(list, plugin, Command::Add, rt, &netns, prev.as_ref())
                .await?;
            // A plugin that prints nothing passes the previous result on.
            if out.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value: Value =
                serde_json::from_slice(&out).map_err(|e| CniError::InvalidResult {
                    plugin: plugin.plugin_type.clone(),
                    command: Command::Add.as_str(),
                    reason: format!("not JSON: {e}"),
                })?;
            prev = Some(value);
        }
        let last = list
            .plugins
            .last()
            .map(|p| p.plugin_type.clone())
            .unwrap_or_default();
        let invalid = |reason: String| CniError::InvalidResult {
            plugin: last.clone(),
            command: Command::Add.as_str(),
            reason,
        };
        let raw = prev.ok_or_else(|| invalid("the chain produced no result".to_string()))?;
        let result = CniResult::parse(&raw, list.cni_version).map_err(invalid)?;
        Ok((raw, result))
    }

    /// Detaches the sandbox: every plugin's DEL in reverse order, continuing
    /// past failures (all are reported together).
    ///
    /// Uses the config, CNI_ARGS and capabilities cached by ADD when present,
    /// else the current config and `rt`'s. Idempotent: a second DEL, a netns
    /// that is gone, or an address already released are all fine. With
    /// neither a cache entry nor a config there is nothing to run: `Ok`.
    pub async fn del(&self, rt: &RuntimeConf) -> Result<()> {
        rt.validate()?;
        let cached = match self.cache.load(&rt.container_id, &rt.ifname) {
            Ok(c) => c,
            Err(e) => {
                // A damaged record must not block teardown forever.
                tracing::warn!(container_id = %rt.container_id, error = %e, "cni: ignoring unreadable cache for DEL");
                None
            }
        };
        let cache_path = self.cache.path(&rt.container_id, &rt.ifname);
        // What ADD used, with the CNI_ARGS and capabilities it passed.
        let from_cache = cached.and_then(|entry| {
            match NetworkConfigList::from_value(entry.config, &cache_path) {
                Ok(list) => {
                    let mut used = rt.clone();
                    used.args = entry.cni_args;
                    used.capabilities = entry.capability_args;
                    Some((Arc::new(list), used, entry.result))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cni: cached config unusable, using the current one");
                    None
                }
            }
        });
        let (list, used, result) = match from_cache {
            Some(plan) => plan,
            None => match self.config()? {
                Some(list) => (list, rt.clone(), None),
                None => {
                    tracing::warn!(container_id = %rt.container_id, "cni: no cached or current network config, nothing to tear down");
                    return Ok(());
                }
            },
        };
        self.teardown(&list, &used, result.as_ref()).await?;
        self.cache.remove(&rt.container_id, &rt.ifname)
    }

    async fn teardown(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        result: Option<&Value>,
    ) -> Result<()> {
        // Plugins treat an empty CNI_NETNS as "the namespace is gone"; a path
        // that no longer is a namespace would make some of them fail instead.
        let netns = if is_netns(&rt.netns) {
            rt.netns.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        // DEL gets the ADD result as prevResult from 0.4.0 on.
        let prev = result.filter(|_| list.cni_version.has_check());
        let mut errors = Vec::new();
        for plugin in list.plugins.iter().rev() {
            if let Err(e) = self.run(list, plugin, Command::Del, rt, &netns, prev).await {
                tracing::warn!(container_id = %rt.container_id, error = %e, "cni: DEL failed, continuing");
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::Teardown {
                container_id: rt.container_id.clone(),
                errors,
            })
        }
    }

    /// Verifies an attachment with every plugin's CHECK, using the cached ADD
    /// result and config. `disableCheck` makes this a no-op.
    pub async fn check(&self, rt: &RuntimeConf) -> Result<()> {
        rt.validate()?;
        let no_result = || CniError::NoCachedResult {
            container_id: rt.container_id.clone(),
            ifname: rt.ifname.clone(),
        };
        let entry = self
            .cache
            .load(&rt.container_id, &rt.ifname)?
            .ok_or_else(no_result)?;
        let result = entry.result.ok_or_else(no_result)?;
        let list = NetworkConfigList::from_value(
            entry.config,
            &self.cache.path(&rt.container_id, &rt.ifname),
        )?;
        if !list.cni_version.has_check() {
            return Err(CniError::Unsupported {
                command: "CHECK",
                network: list.name.clone(),
                version: list.cni_version.to_string(),
            });
        }
        if list.disable_check {
            return Ok(());
        }
        let mut used = rt.clone();
        used.args = entry.cni_args;
        used.capabilities = entry.capability_args;
        let netns = rt.netns.to_string_lossy().into_owned();
        for plugin in &list.plugins {
            self.run(&list, plugin, Command::Check, &used, &netns, Some(&result))
                .await?;
        }
        Ok(())
    }

    /// The spec versions a plugin supports (its VERSION answer).
    pub async fn version(&self, plugin_type: &str) -> Result<Vec<String>> {
        let path = find_plugin(plugin_type, &self.opts.bin_dirs)?;
        let req = ExecRequest {
            plugin: plugin_type.to_string(),
            path,
            command: Command::Version,
            env: vec![
                ("CNI_COMMAND".into(), "VERSION".into()),
                ("CNI_PATH".into(), self.cni_path()),
            ],
            stdin: br#"{"cniVersion":"1.0.0"}"#.to_vec(),
            timeout: self.opts.plugin_timeout,
        };
        let out = self.exec.exec(req).await?;
        let invalid = |reason: String| CniError::InvalidResult {
            plugin: plugin_type.to_string(),
            command: "VERSION",
            reason,
        };
        let value: Value = serde_json::from_slice(&out).map_err(|e| invalid(e.to_string()))?;
        let versions = value
            .get("supportedVersions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("no supportedVersions".to_string()))?;
        Ok(versions
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect())
    }

    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .opts
            .bin_dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        dirs.join(":")
    }

    async fn run(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConfig,
        command: Command,
        rt: &RuntimeConf,
        netns: &str,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>> {
        let path = find_plugin(&plugin.plugin_type, &self.opts.bin_dirs)?;
        let stdin = plugin_stdin(list, plugin, &rt.capabilities, prev);
        let cni_args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let env = vec![
            ("CNI_COMMAND".to_string(), command.as_str().to_string()),
            ("CNI_CONTAINERID".to_string(), rt.container_id.clone()),
            ("CNI_NETNS".to_string(), netns.to_string()),
            ("CNI_IFNAME".to_string(), rt.ifname.clone()),
            ("CNI_ARGS".to_string(), cni_args.join(";")),
            ("CNI_PATH".to_string(), self.cni_path()),
        ];
        tracing::debug!(plugin = %plugin.plugin_type, command = command.as_str(), container_id = %rt.container_id, "cni: running plugin");
        let req = ExecRequest {
            plugin: plugin.plugin_type.clone(),
            path,
            command,
            env,
            // Serialising a serde_json::Value cannot fail.
            stdin: serde_json::to_vec(&stdin).unwrap_or_default(),
            timeout: self.opts.plugin_timeout,
        };
        self.exec.exec(req).await
    }
}

/// The config one plugin gets on stdin: its own object plus the list's
/// `name` and `cniVersion`, `runtimeConfig` for the capabilities it declares,
/// and `prevResult` (0.3.0 and later).
pub fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConfig,
    caps: &CapabilityArgs,
    prev: Option<&Value>,
) -> Value {
    let mut conf = plugin.raw.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert(
        "cniVersion".into(),
        Value::String(list.cni_version.to_string()),
    );
    let offered = caps.to_map();
    let wanted: Map<String, Value> = offered
        .into_iter()
        .filter(|(name, _)| plugin.has_capability(name))
        .collect();
    if !wanted.is_empty() {
        // Keep whatever runtimeConfig the file already has; ours wins per key.
        let mut runtime = match conf.remove("runtimeConfig") {
            Some(Value::Object(existing)) => existing,
            _ => Map::new(),
        };
        runtime.extend(wanted);
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    match prev {
        Some(prev) if list.cni_version.has_chaining() => {
            conf.insert("prevResult".into(), prev.clone());
        }
        _ => {
            conf.remove("prevResult");
        }
    }
    Value::Object(conf)
}

fn validate_ids(container_id: &str, ifname: &str) -> Result<()> {
    let mut rt = RuntimeConf::new(container_id, "");
    rt.ifname = ifname.to_string();
    rt.validate()
}

/// Whether `path` is a network namespace (an nsfs file, pinned or in /proc).
fn is_netns(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && nix::sys::statfs::statfs(path)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

#[cfg(test)]
mod tests;
