//! The error type of the cni crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while loading CNI configs or running plugins.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No usable network config exists in the conf dir.
    #[error("no cni network config found in {}", dir.display())]
    NoConfig {
        /// The conf dir that was searched.
        dir: PathBuf,
    },

    /// A config file could not be used; loading skips such files with a warning.
    #[error("invalid cni config {}: {reason}", file.display())]
    InvalidConfig {
        /// The offending file (or a description of the in-memory source).
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A plugin named by the config is not in any of the bin dirs.
    #[error("cni plugin {name} not found in {}", display_dirs(dirs))]
    PluginNotFound {
        /// The plugin's `type`.
        name: String,
        /// The bin dirs searched, in order.
        dirs: Vec<PathBuf>,
    },

    /// A plugin ran and reported an error (the CNI error object, or its stderr).
    #[error("cni plugin {plugin} {command} failed: {msg}{}", display_details(*code, details))]
    Plugin {
        /// The plugin's `type`.
        plugin: String,
        /// ADD, DEL, CHECK or VERSION.
        command: &'static str,
        /// The CNI error code (0 when the plugin did not give one).
        code: u32,
        /// The plugin's own message.
        msg: String,
        /// The plugin's `details`, possibly empty.
        details: String,
    },

    /// A plugin did not finish within the per-call timeout and was killed.
    #[error("cni plugin {plugin} {command} timed out after {after:?}")]
    Timeout {
        /// The plugin's `type`.
        plugin: String,
        /// ADD, DEL, CHECK or VERSION.
        command: &'static str,
        /// The timeout that expired.
        after: Duration,
    },

    /// A plugin exited successfully but its output is not a valid result.
    #[error("cni plugin {plugin} {command} returned an invalid result: {reason}")]
    InvalidResult {
        /// The plugin's `type`.
        plugin: String,
        /// ADD, DEL, CHECK or VERSION.
        command: &'static str,
        /// What is wrong with the output.
        reason: String,
    },

    /// The caller's runtime parameters are unusable (bad container id, ifname, args).
    #[error("invalid cni runtime parameters: {0}")]
    InvalidRuntime(String),

    /// The operation needs a newer CNI version than the config declares.
    #[error("cni {command} is not supported by network {network} with cniVersion {version}")]
    Unsupported {
        /// The operation.
        command: &'static str,
        /// The network name.
        network: String,
        /// The config's cniVersion.
        version: String,
    },

    /// CHECK needs the result of an earlier ADD, and none is cached.
    #[error("no cached cni result for container {container_id} interface {ifname}")]
    NoCachedResult {
        /// The container (sandbox) id.
        container_id: String,
        /// The interface name.
        ifname: String,
    },

    /// A cache file exists but cannot be read as one.
    #[error("cni cache file {} is invalid: {reason}", path.display())]
    InvalidCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// DEL ran every plugin but some failed; each failure is listed.
    #[error(
        "cni DEL of container {container_id} failed: {}",
        display_errors(errors)
    )]
    Teardown {
        /// The container (sandbox) id.
        container_id: String,
        /// The failures, in the order the plugins ran.
        errors: Vec<CniError>,
    },

    /// A file system or process operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read conf dir", "spawn plugin", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CniError {
    /// Builds an [`CniError::Io`] from an operation name and a path.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CniError::Io { op, path, source }
    }
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("[{}]", shown.join(", "))
}

fn display_details(code: u32, details: &str) -> String {
    match (code, details.is_empty()) {
        (0, true) => String::new(),
        (0, false) => format!(" ({details})"),
        (c, true) => format!(" (code {c})"),
        (c, false) => format!(" (code {c}: {details})"),
    }
}

fn display_errors(errors: &[CniError]) -> String {
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    shown.join("; ")
}

/// Shorthand for this crate's results.
pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_error_shows_the_plugin_message_and_code() {
        let e = CniError::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            code: 7,
            msg: "invalid subnet".into(),
            details: "10.0.0.0/99".into(),
        };
        assert_eq!(
            e.to_string(),
            "cni plugin bridge ADD failed: invalid subnet (code 7: 10.0.0.0/99)"
        );
    }

    #[test]
    fn not_found_names_the_plugin_and_every_dir() {
        let e = CniError::PluginNotFound {
            name: "flannel".into(),
            dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        };
        assert_eq!(
            e.to_string(),
            "cni plugin flannel not found in [/opt/cni/bin, /usr/lib/cni]"
        );
    }
}
