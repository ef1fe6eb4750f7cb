//! The result cache: per attachment (network, container id, interface) the
//! config list ADD ran with, its arguments and its final result. DEL reads
//! it back, so teardown undoes exactly what setup did even after a daemon
//! restart or a change of the config directory.
//!
//! The entry is written before the first plugin's ADD runs, without a
//! result, and again with it once the chain is done: a daemon that dies
//! in between (a plugin may still finish its ADD, and host-local keep an
//! address) leaves an entry that DEL and GC find.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::NetworkConfigList;
use crate::error::Error;
use crate::result::CniResult;

/// Marks the file format, so a future one can be told apart.
const KIND: &str = "crius-cni-cache-v1";

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheEntry {
    kind: String,
    /// The network name.
    pub network: String,
    /// The container id.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
    /// The namespace path ADD ran in.
    pub netns: PathBuf,
    /// The config list, in conflist form.
    pub config: Value,
    /// The file the config came from, if any.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// CNI_ARGS pairs.
    #[serde(default)]
    pub args: Vec<(String, String)>,
    /// Capability args.
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The final ADD result; null while the ADD has not finished.
    #[serde(default)]
    pub result: Value,
}

impl CacheEntry {
    /// An entry for an ADD about to run: no result yet.
    pub fn pending(list: &NetworkConfigList, att: &crate::Attachment, ifname: &str) -> Self {
        CacheEntry {
            kind: KIND.into(),
            network: list.name.clone(),
            container_id: att.container_id.clone(),
            ifname: ifname.into(),
            netns: att.netns.clone(),
            config: list.to_value(),
            source: list.source.clone(),
            args: att.args.clone(),
            capability_args: att.capability_args.clone(),
            result: Value::Null,
        }
    }

    /// The entry of a finished ADD.
    pub fn finished(mut self, result: &CniResult) -> Self {
        self.result = result.raw().clone();
        self
    }

    /// The ADD result, for DEL's and CHECK's `prevResult`: none if the ADD
    /// did not finish.
    pub fn prev_result(&self) -> Option<&Value> {
        (!self.result.is_null()).then_some(&self.result)
    }

    /// The cached config list.
    pub fn config_list(&self, file: &Path) -> Result<NetworkConfigList, Error> {
        let mut list = NetworkConfigList::from_value(self.config.clone()).map_err(|reason| {
            Error::BadCache {
                path: file.to_path_buf(),
                reason: format!("config: {reason}"),
            }
        })?;
        list.source = self.source.clone();
        Ok(list)
    }
}

/// The cache directory. Files are `<container>:<network>:<ifname>.json`;
/// `:` can appear in none of the three, so names never collide.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache kept in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    /// The file of one attachment.
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(format!("{container_id}:{network}:{ifname}.json"))
    }

    /// Writes an entry atomically: temp file, rename. Not fsynced, as
    /// libcni does not either: a daemon crash keeps the page cache, and a
    /// node crash takes the namespaces and interfaces the entry describes
    /// with it, while an fsync would cost RunPodSandbox milliseconds.
    pub fn store(&self, entry: &CacheEntry) -> Result<(), Error> {
        let path = self.path(&entry.network, &entry.container_id, &entry.ifname);
        let io = |context: &str| {
            let path = path.clone();
            let context = context.to_string();
            move |source| Error::Cache {
                path,
                context,
                source,
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create cache directory"))?;
        let data = serde_json::to_vec_pretty(entry).map_err(|e| Error::Cache {
            path: path.clone(),
            context: "encode".into(),
            source: e.into(),
        })?;
        // Dot-prefixed so a listing never mistakes it for an entry; the
        // tempfile removes itself if anything below fails.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io("create temp file"))?;
        tmp.write_all(&data).map_err(io("write"))?;
        tmp.persist(&path).map_err(|e| io("rename")(e.error))?;
        Ok(())
    }

    /// Reads one entry; `None` when there is none.
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, Error> {
        self.read(&self.path(network, container_id, ifname))
    }

    /// Every entry of `container_id` on `ifname`, whatever its network (the
    /// config directory may name another network by now), with its file.
    /// An unreadable entry is logged and given as `None`, so that teardown
    /// can still go on with the current config and then drop the file.
    pub fn find(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<(PathBuf, Option<CacheEntry>)>, Error> {
        let prefix = format!("{container_id}:");
        let suffix = format!(":{ifname}.json");
        let found = self.scan(|name| name.starts_with(&prefix) && name.ends_with(&suffix))?;
        Ok(found
            .into_iter()
            .filter(|(_, e)| {
                e.as_ref()
                    .is_none_or(|e| e.container_id == container_id && e.ifname == ifname)
            })
            .collect())
    }

    /// Every entry in the cache, with its file (`None`: unreadable).
    pub fn all(&self) -> Result<Vec<(PathBuf, Option<CacheEntry>)>, Error> {
        self.scan(|name| name.ends_with(".json") && !name.starts_with('.'))
    }

    /// The entries whose file name passes `wanted`, sorted by file.
    fn scan(
        &self,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<(PathBuf, Option<CacheEntry>)>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Cache {
                    path: self.dir.clone(),
                    context: "list".into(),
                    source,
                });
            }
        };
        let mut found = Vec::new();
        for dirent in entries {
            let dirent = dirent.map_err(|source| Error::Cache {
                path: self.dir.clone(),
                context: "list".into(),
                source,
            })?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if !wanted(name) {
                continue;
            }
            let path = dirent.path();
            match self.read(&path) {
                Ok(Some(entry)) => found.push((path, Some(entry))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable CNI cache entry");
                    found.push((path, None));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Removes an entry's file; a missing one is fine.
    pub fn remove_file(path: &Path) -> Result<(), Error> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Cache {
                path: path.to_path_buf(),
                context: "remove".into(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Reads the entry at `path`; `None` when there is none.
    pub fn read(&self, path: &Path) -> Result<Option<CacheEntry>, Error> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Cache {
                    path: path.to_path_buf(),
                    context: "read".into(),
                    source,
                });
            }
        };
        let entry: CacheEntry = serde_json::from_slice(&data).map_err(|e| Error::BadCache {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if entry.kind != KIND {
            return Err(Error::BadCache {
                path: path.to_path_buf(),
                reason: format!("unknown kind {:?}", entry.kind),
            });
        }
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attachment(id: &str) -> crate::Attachment {
        crate::Attachment {
            container_id: id.into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "web".into())],
            capability_args:
                json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
                    .as_object()
                    .unwrap()
                    .clone(),
        }
    }

    fn list(name: &str) -> NetworkConfigList {
        let body = format!(
            r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{{"type":"bridge"}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#
        );
        NetworkConfigList::from_slice(body.as_bytes()).unwrap()
    }

    #[test]
    fn round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let result =
            CniResult::from_value(json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]}))
                .unwrap();
        let att = attachment("abc");
        let entry = CacheEntry::pending(&list("pods"), &att, "eth0").finished(&result);
        cache.store(&entry).unwrap();

        let back = cache.load("pods", "abc", "eth0").unwrap().unwrap();
        assert_eq!(back, entry);
        let path = cache.path("pods", "abc", "eth0");
        assert_eq!(back.config_list(&path).unwrap(), list("pods"));
        assert_eq!(CniResult::from_value(back.result).unwrap(), result);
        // An ADD that did not finish: no result, none given to DEL.
        let pending = CacheEntry::pending(&list("pods"), &att, "eth0");
        assert_eq!(pending.prev_result(), None);
        cache.store(&pending).unwrap();
        let back = cache.load("pods", "abc", "eth0").unwrap().unwrap();
        assert_eq!(back.prev_result(), None);
        assert!(entry.prev_result().is_some());
        // Nothing but the entry is left in the directory.
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            1
        );

        Cache::remove_file(&path).unwrap();
        assert!(cache.load("pods", "abc", "eth0").unwrap().is_none());
        Cache::remove_file(&path).unwrap();
    }

    #[test]
    fn find_matches_container_and_ifname_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let result = CniResult::from_value(json!({"cniVersion":"1.0.0"})).unwrap();
        for (id, net) in [
            ("abc", "old"),
            ("abc", "new"),
            ("abc-2", "old"),
            ("ab", "c"),
        ] {
            cache
                .store(&CacheEntry::pending(&list(net), &attachment(id), "eth0").finished(&result))
                .unwrap();
        }
        cache
            .store(&CacheEntry::pending(&list("lo"), &attachment("abc"), "lo").finished(&result))
            .unwrap();
        let found = cache.find("abc", "eth0").unwrap();
        let nets: Vec<_> = found
            .iter()
            .map(|(_, e)| e.as_ref().unwrap().network.as_str())
            .collect();
        assert_eq!(nets, ["new", "old"]);
        assert!(cache.find("zzz", "eth0").unwrap().is_empty());
        assert_eq!(cache.all().unwrap().len(), 5);
        assert!(
            Cache::new(dir.path().join("missing"))
                .find("abc", "eth0")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn corrupt_entry_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let path = cache.path("pods", "abc", "eth0");
        std::fs::write(&path, "{").unwrap();
        let err = cache.load("pods", "abc", "eth0").unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let found = cache.find("abc", "eth0").unwrap();
        assert_eq!(found, [(path, None)]);
    }
}
