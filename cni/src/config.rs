//! Network configs: `.conflist` files (a network with a chain of plugins)
//! and single-plugin `.conf`/`.json` files, which are wrapped as a
//! one-plugin list the way libcni's `ConfListFromConf` does.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::Error;

/// File extensions read from the config directory.
pub const CONFIG_EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// CNI spec versions this client accepts in a config.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A CNI spec version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number.
    pub patch: u32,
}

impl Version {
    /// The first version with CHECK and a cached prevResult on DEL.
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    /// The first version with STATUS and GC.
    pub const V1_1_0: Version = Version::new(1, 1, 0);

    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `"1.0.0"`; `None` when it is not three dot-separated numbers.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| p.parse::<u32>().ok());
        let (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One plugin of a network: its config object, passed to the plugin
/// verbatim (plus the keys the runtime injects).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    raw: Map<String, Value>,
}

impl PluginConf {
    /// Checks that `raw` names a plugin type that is a plain file name.
    pub fn new(raw: Map<String, Value>) -> Result<Self, String> {
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) => t,
            Some(_) => return Err("plugin \"type\" is not a string".into()),
            None => return Err("plugin has no \"type\"".into()),
        };
        // The type is a binary name looked up in the bin dirs; a path
        // would escape them.
        if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
            return Err(format!("invalid plugin type {plugin_type:?}"));
        }
        if let Some(caps) = raw.get("capabilities")
            && !caps.is_object()
        {
            return Err(format!(
                "plugin {plugin_type:?}: \"capabilities\" is not an object"
            ));
        }
        Ok(PluginConf { raw })
    }

    /// The plugin type: the name of its binary.
    pub fn plugin_type(&self) -> &str {
        self.raw.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether the plugin declares `capability` as `true`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.raw
            .get("capabilities")
            .and_then(|c| c.get(capability))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The plugin's config object as written in the file.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
}

/// A network: a name, a spec version and a chain of plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name.
    pub name: String,
    /// The CNI spec version the plugins are spoken to in.
    pub cni_version: String,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// `disableCheck`: CHECK is skipped for this network.
    pub disable_check: bool,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
}

impl NetworkConfigList {
    /// Reads a config file: a conflist, or a single-plugin network config.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let data = std::fs::read(path).map_err(|e| Error::ConfigParse {
            path: path.to_path_buf(),
            reason: format!("read: {e}"),
        })?;
        let mut list = Self::from_slice(&data).map_err(|reason| Error::ConfigParse {
            path: path.to_path_buf(),
            reason,
        })?;
        list.source = Some(path.to_path_buf());
        Ok(list)
    }

    /// Parses a conflist, or a single-plugin network config (an object with
    /// a `type` and no `plugins`), which becomes a one-plugin list.
    pub fn from_slice(data: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
        Self::from_value(value)
    }

    /// Like [`NetworkConfigList::from_slice`], from parsed JSON.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let Value::Object(mut top) = value else {
            return Err("not a JSON object".into());
        };
        let name = match top.get("name") {
            Some(Value::String(n)) => n.clone(),
            Some(_) => return Err("\"name\" is not a string".into()),
            None => return Err("no network \"name\"".into()),
        };
        validate_name(&name).map_err(|e| format!("network name {name:?}: {e}"))?;
        let cni_version = pick_version(&top)?;
        let disable_check = read_bool(&top, "disableCheck")?;

        let plugins = match top.remove("plugins") {
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err("\"plugins\" is empty".into());
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Value::Object(map) => {
                            PluginConf::new(map).map_err(|e| format!("plugins[{i}]: {e}"))
                        }
                        _ => Err(format!("plugins[{i}] is not an object")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => return Err("\"plugins\" is not an array".into()),
            // A single network config: the whole object is the plugin's
            // config (it keeps its name and cniVersion; both are injected
            // again when it runs).
            None => vec![PluginConf::new(top)?],
        };
        Ok(NetworkConfigList {
            name,
            cni_version,
            plugins,
            disable_check,
            source: None,
        })
    }

    /// The list in conflist form, as kept in the result cache.
    pub fn to_value(&self) -> Value {
        let mut top = Map::new();
        top.insert("cniVersion".into(), self.cni_version.clone().into());
        top.insert("name".into(), self.name.clone().into());
        if self.disable_check {
            top.insert("disableCheck".into(), true.into());
        }
        top.insert(
            "plugins".into(),
            Value::Array(
                self.plugins
                    .iter()
                    .map(|p| Value::Object(p.raw.clone()))
                    .collect(),
            ),
        );
        Value::Object(top)
    }

    /// The parsed `cni_version` (always valid for a parsed list).
    pub fn version(&self) -> Version {
        Version::parse(&self.cni_version).unwrap_or(Version::new(0, 0, 0))
    }

    /// Whether CHECK applies: not disabled and the version has it.
    pub fn check_supported(&self) -> bool {
        !self.disable_check && self.version() >= Version::V0_4_0
    }
}

/// The network's version: `cniVersion`, or the highest supported entry of
/// `cniVersions` (spec 1.1), which wins over `cniVersion`.
fn pick_version(top: &Map<String, Value>) -> Result<String, String> {
    let single = match top.get("cniVersion") {
        Some(Value::String(v)) => Some(v.as_str()),
        Some(_) => return Err("\"cniVersion\" is not a string".into()),
        None => None,
    };
    if let Some(list) = top.get("cniVersions") {
        let Value::Array(items) = list else {
            return Err("\"cniVersions\" is not an array".into());
        };
        let mut best: Option<(Version, &str)> = None;
        for item in items.iter().map(Value::as_str).chain(single.map(Some)) {
            let Some(v) = item else {
                return Err("\"cniVersions\" holds a non-string".into());
            };
            if !SUPPORTED_VERSIONS.contains(&v) {
                continue;
            }
            let parsed = Version::parse(v).ok_or_else(|| format!("bad version {v:?}"))?;
            if best.is_none_or(|(b, _)| parsed.cmp(&b) == Ordering::Greater) {
                best = Some((parsed, v));
            }
        }
        return best.map(|(_, v)| v.to_string()).ok_or_else(|| {
            format!(
                "none of \"cniVersions\" is supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            )
        });
    }
    match single {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(v.to_string()),
        Some(v) => Err(format!(
            "unsupported cniVersion {v:?} (supported: {})",
            SUPPORTED_VERSIONS.join(", ")
        )),
        None => Err("no \"cniVersion\"".into()),
    }
}

/// Reads an optional boolean that libcni also accepts as "true"/"false".
fn read_bool(top: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match top.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("invalid {key:?}: {other}")),
    }
}

/// The spec's rule for network names and container ids:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("empty".into()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err("must start with a letter or digit".into());
        }
        Some(_) => {}
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err("may hold only letters, digits, '_', '.' and '-'".into())
    }
}

/// A list of one plugin with nothing but its type (the built-in loopback).
pub(crate) fn single_plugin_list(
    name: &str,
    cni_version: &str,
    plugin_type: &str,
) -> NetworkConfigList {
    let mut raw = Map::new();
    raw.insert("type".into(), plugin_type.into());
    NetworkConfigList {
        name: name.into(),
        cni_version: cni_version.into(),
        plugins: vec![PluginConf { raw }],
        disable_check: false,
        source: None,
    }
}

/// What the config directory holds: the default network, if any, and the
/// config files that were skipped as invalid (with why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirScan {
    /// The lexically first valid network config.
    pub network: Option<NetworkConfigList>,
    /// Files before it (or all of them, when none is valid) that are not
    /// valid configs, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Loads the default network from `conf_dir`: the lexically first file
/// among `.conf`, `.conflist` and `.json` that holds a valid config.
/// Invalid files are logged and skipped; a missing directory is `Ok(None)`.
pub fn load_dir(conf_dir: &Path) -> Result<Option<NetworkConfigList>, Error> {
    scan_dir(conf_dir).map(|scan| scan.network)
}

/// Like [`load_dir`], also naming the invalid files it skipped.
pub fn scan_dir(conf_dir: &Path) -> Result<DirScan, Error> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirScan::default()),
        Err(source) => {
            return Err(Error::ConfigDir {
                dir: conf_dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::ConfigDir {
            dir: conf_dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONFIG_EXTENSIONS.contains(&e));
        // is_file follows symlinks: configs are often linked into place.
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut scan = DirScan::default();
    for path in files {
        match NetworkConfigList::from_file(&path) {
            Ok(list) => {
                scan.network = Some(list);
                break;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping invalid CNI config");
                let reason = match e {
                    Error::ConfigParse { reason, .. } => reason,
                    other => other.to_string(),
                };
                scan.skipped.push((path, reason));
            }
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn parses_conflist_keeping_plugin_objects_verbatim() {
        let list = NetworkConfigList::from_slice(
            br#"{"cniVersion":"1.0.0","name":"pods","disableCheck":"true","plugins":[
                {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
                {"type":"portmap","capabilities":{"portMappings":true,"other":false}}]}"#,
        )
        .unwrap();
        assert_eq!(list.name, "pods");
        assert_eq!(list.cni_version, "1.0.0");
        assert!(list.disable_check);
        assert!(!list.check_supported());
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugins[0].plugin_type(), "bridge");
        assert_eq!(list.plugins[0].raw()["ipam"], json!({"type":"host-local"}));
        assert!(list.plugins[1].has_capability("portMappings"));
        assert!(!list.plugins[1].has_capability("other"));
        assert!(!list.plugins[1].has_capability("bandwidth"));
    }

    #[test]
    fn single_conf_is_wrapped_as_one_plugin_list() {
        let list = NetworkConfigList::from_slice(
            br#"{"cniVersion":"0.3.1","name":"old","type":"bridge","isGateway":true}"#,
        )
        .unwrap();
        assert_eq!(list.name, "old");
        assert_eq!(list.cni_version, "0.3.1");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type(), "bridge");
        assert_eq!(list.plugins[0].raw()["isGateway"], json!(true));
        assert!(!list.check_supported(), "0.3.1 has no CHECK");
    }

    #[test]
    fn accepts_supported_versions_only() {
        for v in SUPPORTED_VERSIONS {
            let body = format!(r#"{{"cniVersion":"{v}","name":"n","type":"bridge"}}"#);
            assert!(
                NetworkConfigList::from_slice(body.as_bytes()).is_ok(),
                "{v}"
            );
        }
        for v in ["0.2.0", "0.1.0", "2.0.0", "1.0", ""] {
            let body = format!(r#"{{"cniVersion":"{v}","name":"n","type":"bridge"}}"#);
            let err = NetworkConfigList::from_slice(body.as_bytes()).unwrap_err();
            assert!(err.contains("unsupported cniVersion"), "{v}: {err}");
        }
        let err = NetworkConfigList::from_slice(br#"{"name":"n","type":"bridge"}"#).unwrap_err();
        assert!(err.contains("cniVersion"), "{err}");
    }

    #[test]
    fn cni_versions_picks_highest_supported() {
        let list = NetworkConfigList::from_slice(
            br#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","9.9.9","0.3.1"],"name":"n","plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(list.cni_version, "1.0.0");
    }

    #[test]
    fn rejects_bad_configs_with_reasons() {
        let cases: [(&str, &str); 8] = [
            ("not json", "invalid JSON"),
            (r#"[]"#, "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","type":"bridge"}"#,
                "no network \"name\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a b","type":"bridge"}"#,
                "network name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, "no \"type\""),
            (r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, "empty"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "invalid plugin type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","capabilities":[]}]}"#,
                "capabilities",
            ),
        ];
        for (body, want) in cases {
            let err = NetworkConfigList::from_slice(body.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn conflist_round_trips_through_to_value() {
        let list = NetworkConfigList::from_slice(
            br#"{"cniVersion":"0.4.0","name":"pods","disableCheck":true,"plugins":[{"type":"bridge","mtu":1400}]}"#,
        )
        .unwrap();
        let again = NetworkConfigList::from_value(list.to_value()).unwrap();
        assert_eq!(again, list);
    }

    #[test]
    fn load_dir_picks_lexically_first_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "05-broken.conflist", "{ not json");
        write(
            dir.path(),
            "10-old.conf",
            r#"{"cniVersion":"0.2.0","name":"old","type":"bridge"}"#,
        );
        write(
            dir.path(),
            "20-pods.conflist",
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            dir.path(),
            "30-later.json",
            r#"{"cniVersion":"1.0.0","name":"later","type":"ptp"}"#,
        );
        write(
            dir.path(),
            "00-ignored.txt",
            r#"{"cniVersion":"1.0.0","name":"txt","type":"ptp"}"#,
        );
        std::fs::create_dir(dir.path().join("01-dir.conf")).unwrap();
        let list = load_dir(dir.path()).unwrap().unwrap();
        assert_eq!(list.name, "pods");
        assert_eq!(
            list.source.as_deref(),
            Some(dir.path().join("20-pods.conflist").as_path())
        );
    }

    #[test]
    fn load_dir_reads_single_conf_and_json() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "99-last.conflist",
            r#"{"cniVersion":"1.0.0","name":"last","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            dir.path(),
            "50-one.json",
            r#"{"cniVersion":"1.0.0","name":"one","type":"ptp"}"#,
        );
        let list = load_dir(dir.path()).unwrap().unwrap();
        assert_eq!(list.name, "one");
        assert_eq!(list.plugins[0].plugin_type(), "ptp");
    }

    #[test]
    fn load_dir_missing_or_without_valid_files_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_dir(&dir.path().join("nope")).unwrap().is_none());
        write(dir.path(), "10-bad.conf", r#"{"name":"x"}"#);
        assert!(load_dir(dir.path()).unwrap().is_none());
        let scan = scan_dir(dir.path()).unwrap();
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.skipped[0].0, dir.path().join("10-bad.conf"));
        assert!(scan.skipped[0].1.contains("cniVersion"), "{scan:?}");
    }

    #[test]
    fn version_parse_and_order() {
        assert_eq!(Version::parse("1.0.0"), Some(Version::new(1, 0, 0)));
        assert_eq!(Version::parse("1.0"), None);
        assert_eq!(Version::parse("1.0.0.0"), None);
        assert_eq!(Version::parse("a.b.c"), None);
        assert!(Version::parse("0.3.1").unwrap() < Version::V0_4_0);
        assert!(Version::parse("1.0.0").unwrap() > Version::V0_4_0);
    }
}
