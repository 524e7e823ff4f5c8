//! Network config lists: parsing `.conflist`/`.conf`/`.json` files and picking
//! the first usable one from a conf dir, the way libcni does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::{CniError, Result};
use crate::version::CniVersion;

/// File name endings a conf dir is searched for.
pub const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// One plugin entry of a network config list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin's `type`: the executable's file name.
    pub plugin_type: String,
    /// Capabilities the plugin declares (`"capabilities": {"portMappings": true}`).
    pub capabilities: BTreeMap<String, bool>,
    /// The plugin's whole config object, passed to it on stdin (plus injected keys).
    pub raw: Map<String, Value>,
}

impl PluginConfig {
    /// Whether the plugin declares a capability as enabled.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.get(name).copied().unwrap_or(false)
    }
}

/// A network config list: a named network served by a chain of plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network's name, passed to every plugin as `name`.
    pub name: String,
    /// The config's `cniVersion`, passed to every plugin as `cniVersion`.
    pub cni_version: CniVersion,
    /// `disableCheck`: CHECK is skipped when set.
    pub disable_check: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConfig>,
    /// The file it was loaded from, if any.
    pub source: Option<PathBuf>,
}

impl NetworkConfigList {
    /// Parses a config list (`{"name", "cniVersion", "plugins": [...]}`).
    pub fn from_list_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        let obj = parse_object(bytes, source)?;
        Self::from_list_object(obj, source)
    }

    /// Parses a single plugin config (`.conf`) and wraps it into a list of one.
    ///
    /// A `.conf`/`.json` file that holds a `plugins` array is read as a list,
    /// because such files exist in the wild and kubelet accepted them.
    pub fn from_conf_bytes(bytes: &[u8], source: &Path) -> Result<Self> {
        let obj = parse_object(bytes, source)?;
        if obj.contains_key("plugins") {
            return Self::from_list_object(obj, source);
        }
        let invalid = |reason: &str| invalid(source, reason);
        let name = required_str(&obj, "name").map_err(|r| invalid(&r))?;
        let version = parse_version(&obj, source)?;
        let plugin = PluginConfig::from_object(obj, source, 0)?;
        Ok(Self {
            name,
            cni_version: version,
            disable_check: false,
            plugins: vec![plugin],
            source: Some(source.to_path_buf()),
        })
    }

    /// Parses a file by its extension: `.conflist` as a list, anything else as a single config.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(CniError::io("read cni config", path))?;
        if path.extension().is_some_and(|e| e == "conflist") {
            Self::from_list_bytes(&bytes, path)
        } else {
            Self::from_conf_bytes(&bytes, path)
        }
    }

    fn from_list_object(obj: Map<String, Value>, source: &Path) -> Result<Self> {
        let name = required_str(&obj, "name").map_err(|r| invalid(source, &r))?;
        let version = parse_version(&obj, source)?;
        let disable_check = match obj.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            // libcni accepts the string forms too.
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                return Err(invalid(
                    source,
                    &format!("disableCheck must be a boolean, got {other}"),
                ))
            }
        };
        let plugins = match obj.get("plugins") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => return Err(invalid(source, "plugins is empty")),
            _ => return Err(invalid(source, "missing plugins array")),
        };
        let mut parsed = Vec::with_capacity(plugins.len());
        for (i, item) in plugins.iter().enumerate() {
            let Value::Object(p) = item else {
                return Err(invalid(source, &format!("plugins[{i}] is not an object")));
            };
            parsed.push(PluginConfig::from_object(p.clone(), source, i)?);
        }
        Ok(Self {
            name,
            cni_version: version,
            disable_check,
            plugins: parsed,
            source: Some(source.to_path_buf()),
        })
    }

    /// The list as JSON (the form stored in the result cache and read back by [`Self::from_value`]).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "cniVersion".into(),
            Value::String(self.cni_version.to_string()),
        );
        obj.insert("name".into(), Value::String(self.name.clone()));
        if self.disable_check {
            obj.insert("disableCheck".into(), Value::Bool(true));
        }
        let plugins = self
            .plugins
            .iter()
            .map(|p| Value::Object(p.raw.clone()))
            .collect();
        obj.insert("plugins".into(), Value::Array(plugins));
        Value::Object(obj)
    }

    /// Reads a list back from [`Self::to_value`]'s form; `source` names where it came from.
    pub fn from_value(value: Value, source: &Path) -> Result<Self> {
        match value {
            Value::Object(obj) => Self::from_list_object(obj, source),
            _ => Err(invalid(source, "config is not a JSON object")),
        }
    }
}

impl PluginConfig {
    fn from_object(obj: Map<String, Value>, source: &Path, index: usize) -> Result<Self> {
        let plugin_type = required_str(&obj, "type")
            .map_err(|r| invalid(source, &format!("plugins[{index}]: {r}")))?;
        // The type becomes a file name looked up in the bin dirs: no paths.
        if plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
            return Err(invalid(
                source,
                &format!("plugins[{index}]: type {plugin_type:?} is not a plain file name"),
            ));
        }
        let capabilities = match obj.get("capabilities") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(caps)) => caps
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
                .collect(),
            Some(_) => {
                return Err(invalid(
                    source,
                    &format!("plugins[{index}]: capabilities must be an object"),
                ))
            }
        };
        Ok(Self {
            plugin_type,
            capabilities,
            raw: obj,
        })
    }
}

fn invalid(source: &Path, reason: &str) -> CniError {
    CniError::InvalidConfig {
        file: source.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn parse_object(bytes: &[u8], source: &Path) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(invalid(source, "not a JSON object")),
        Err(e) => Err(invalid(source, &format!("invalid JSON: {e}"))),
    }
}

fn required_str(obj: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("{key} is empty")),
        Some(_) => Err(format!("{key} must be a string")),
        None => Err(format!("missing {key}")),
    }
}

fn parse_version(obj: &Map<String, Value>, source: &Path) -> Result<CniVersion> {
    let raw = required_str(obj, "cniVersion").map_err(|r| invalid(source, &r))?;
    raw.parse().map_err(|e: String| invalid(source, &e))
}

/// The config files of a conf dir that loading considers, sorted by file name.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io("read cni conf dir", dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(CniError::io("read cni conf dir", dir))?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONFIG_EXTENSIONS.contains(&e));
        // Directories named like configs are skipped; symlinks to files count.
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the first valid network config list from a conf dir.
///
/// Files are tried in name order; invalid ones are skipped with a warning
/// naming the file. `Ok(None)` means no usable config (or no dir) exists.
pub fn load_first(dir: &Path) -> Result<Option<NetworkConfigList>> {
    for file in config_files(dir)? {
        match NetworkConfigList::from_file(&file) {
            Ok(list) => return Ok(Some(list)),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping invalid cni config")
            }
        }
    }
    Ok(None)
}

/// What a conf dir looked like: each config file's name, size and mtime.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// A conf dir, re-read whenever its files change (so a config added later is
/// picked up without a restart) and otherwise served from memory.
#[derive(Debug)]
pub struct ConfDir {
    dir: PathBuf,
    cached: Mutex<Option<(Fingerprint, Option<Arc<NetworkConfigList>>)>>,
}

impl ConfDir {
    /// A conf dir at `dir`; nothing is read until [`ConfDir::current`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cached: Mutex::new(None),
        }
    }

    /// The directory this reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first valid config list as the dir holds it now.
    pub fn current(&self) -> Result<Option<Arc<NetworkConfigList>>> {
        let fingerprint = self.fingerprint()?;
        // A poisoned lock only means another thread panicked mid-update; the
        // cache is then simply rebuilt.
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, list)) = cached.as_ref() {
            if *seen == fingerprint {
                return Ok(list.clone());
            }
        }
        let list = load_first(&self.dir)?.map(Arc::new);
        *cached = Some((fingerprint, list.clone()));
        Ok(list)
    }

    fn fingerprint(&self) -> Result<Fingerprint> {
        let mut out = Vec::new();
        for file in config_files(&self.dir)? {
            // A file removed between listing and stat simply drops out.
            if let Ok(meta) = std::fs::metadata(&file) {
                out.push((file, meta.len(), meta.modified().ok()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).expect("write test config");
    }

    const BRIDGE_CONF: &str =
        r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni0"}"#;
    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"listnet","plugins":[
        {"type":"bridge","bridge":"cni0"},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn conf_is_wrapped_into_a_list_of_one() {
        let list = NetworkConfigList::from_conf_bytes(BRIDGE_CONF.as_bytes(), Path::new("x.conf"))
            .expect("valid conf");
        assert_eq!(list.name, "single");
        assert_eq!(list.cni_version.to_string(), "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "bridge");
        assert_eq!(
            list.plugins[0].raw.get("bridge"),
            Some(&Value::String("cni0".into()))
        );
    }

    #[test]
    fn list_keeps_plugin_order_and_capabilities() {
        let list = NetworkConfigList::from_list_bytes(LIST.as_bytes(), Path::new("x.conflist"))
            .expect("valid list");
        let types: Vec<_> = list
            .plugins
            .iter()
            .map(|p| p.plugin_type.as_str())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert!(list.plugins[1].has_capability("portMappings"));
        assert!(!list.plugins[0].has_capability("portMappings"));
        assert!(!list.disable_check);
    }

    #[test]
    fn disable_check_accepts_bool_and_string() {
        for (raw, want) in [
            ("true", true),
            ("\"true\"", true),
            ("false", false),
            ("\"False\"", false),
        ] {
            let body = format!(
                r#"{{"cniVersion":"1.0.0","name":"n","disableCheck":{raw},"plugins":[{{"type":"bridge"}}]}}"#
            );
            let list = NetworkConfigList::from_list_bytes(body.as_bytes(), Path::new("x"))
                .expect("valid list");
            assert_eq!(list.disable_check, want, "disableCheck {raw}");
        }
    }

    #[test]
    fn invalid_lists_say_why() {
        let cases = [
            ("{", "invalid JSON"),
            ("[]", "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
                "missing name",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
                "missing cniVersion",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]}"#,
                "unsupported cniVersion",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "plugins is empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]}"#,
                "missing type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "not a plain file name",
            ),
        ];
        for (body, want) in cases {
            let err =
                NetworkConfigList::from_list_bytes(body.as_bytes(), Path::new("bad.conflist"))
                    .expect_err(body);
            let text = err.to_string();
            assert!(
                text.contains("bad.conflist") && text.contains(want),
                "{body}: {text}"
            );
        }
    }

    #[test]
    fn conf_file_holding_a_list_is_read_as_a_list() {
        let list = NetworkConfigList::from_conf_bytes(LIST.as_bytes(), Path::new("x.conf"))
            .expect("valid list in a .conf");
        assert_eq!(list.plugins.len(), 2);
    }

    #[test]
    fn first_valid_file_by_name_wins_and_invalid_ones_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "30-later.conflist", LIST);
        write(dir.path(), "20-single.conf", BRIDGE_CONF);
        write(dir.path(), "10-broken.conflist", "{ not json");
        write(dir.path(), "05-ignored.txt", LIST);
        std::fs::create_dir(dir.path().join("01-dir.conf")).expect("mkdir");
        let list = load_first(dir.path()).expect("load").expect("a config");
        assert_eq!(list.name, "single");
        assert_eq!(
            list.source.as_deref(),
            Some(dir.path().join("20-single.conf").as_path())
        );
    }

    #[test]
    fn missing_or_empty_dir_has_no_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load_first(dir.path()).expect("load").is_none());
        assert!(load_first(&dir.path().join("absent"))
            .expect("load")
            .is_none());
    }

    #[test]
    fn conf_dir_picks_up_added_and_changed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = ConfDir::new(dir.path());
        assert!(conf.current().expect("read").is_none());
        write(dir.path(), "50-net.conflist", LIST);
        assert_eq!(
            conf.current().expect("read").expect("config").name,
            "listnet"
        );
        // A different size is enough to notice the change even within one mtime tick.
        write(
            dir.path(),
            "50-net.conflist",
            &LIST.replace("listnet", "renamed-net"),
        );
        assert_eq!(
            conf.current().expect("read").expect("config").name,
            "renamed-net"
        );
        std::fs::remove_file(dir.path().join("50-net.conflist")).expect("rm");
        assert!(conf.current().expect("read").is_none());
    }

    #[test]
    fn to_value_round_trips() {
        let list =
            NetworkConfigList::from_list_bytes(LIST.as_bytes(), Path::new("x")).expect("list");
        let back = NetworkConfigList::from_value(list.to_value(), Path::new("x")).expect("back");
        assert_eq!(back, list);
    }
}
