//! A client of the Container Network Interface spec: load network configs,
//! run plugins, pin network namespaces. Knows nothing of pods beyond what
//! the CNI spec names.
//!
//! [`Cni`] is the facade: [`Cni::setup`] (ADD), [`Cni::teardown`] (DEL) and
//! [`Cni::check`] (CHECK) attach a container to the default network (the
//! lexically first valid config in the config directory, watched so that a
//! change takes effect at once) and to loopback; [`Cni::status`] (STATUS)
//! and [`Cni::gc`] (GC) speak for the network as a whole (spec 1.1).

mod cache;
pub mod config;
mod earlier;
pub mod error;
mod exec;
pub mod ifstats;
pub mod netns;
pub mod overlap;
pub mod result;
mod watch;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::cache::{Cache, CacheEntry};
use crate::exec::{Command, Invocation};
use crate::watch::ConfigWatch;

pub use config::{NetworkConfigList, PluginConf};
pub use error::Error;
pub use result::CniResult;

/// Name of the built-in loopback network.
pub const LOOPBACK_NETWORK: &str = "cni-loopback";

/// Interface name of loopback.
pub const LOOPBACK_IFNAME: &str = "lo";

/// The loopback network every container gets first, as containerd does:
/// `{"cniVersion":"1.0.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}`.
static LOOPBACK: LazyLock<NetworkConfigList> =
    LazyLock::new(|| config::single_plugin_list(LOOPBACK_NETWORK, "1.0.0", "loopback"));

/// Where configs, plugins and the result cache live.
#[derive(Debug, Clone)]
pub struct CniOptions {
    /// The config directory (`.conf`, `.conflist`, `.json`).
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries, in order (also CNI_PATH).
    pub bin_dirs: Vec<PathBuf>,
    /// Where ADD results are kept for DEL and CHECK.
    pub cache_dir: PathBuf,
    /// Timeout of a single plugin call; the plugin is killed on expiry.
    pub plugin_timeout: Duration,
    /// Attach every container to loopback by running the `loopback` plugin
    /// (as containerd does). When false, `lo` is the caller's business:
    /// [`netns::create`] brings it up, which saves a plugin call; cached
    /// loopback attachments (made while this was true) are still deleted.
    pub loopback_plugin: bool,
}

/// What a container's attachment is: the spec's runtime parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// CNI_CONTAINERID: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    pub container_id: String,
    /// CNI_NETNS: path of the network namespace (a pin, see [`netns`]).
    pub netns: PathBuf,
    /// CNI_IFNAME of the main network, e.g. `eth0`.
    pub ifname: String,
    /// CNI_ARGS pairs, e.g. `IgnoreUnknown=1`, `K8S_POD_NAME=…`.
    pub args: Vec<(String, String)>,
    /// Capability args (`portMappings`, `bandwidth`, …); each plugin gets in
    /// `runtimeConfig` only those it declares in its `capabilities`.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    /// Checks the spec's rules on container id and interface name.
    fn validate(&self) -> Result<(), Error> {
        config::validate_name(&self.container_id).map_err(|e| {
            Error::InvalidAttachment(format!("container id {:?}: {e}", self.container_id))
        })?;
        let ifname = &self.ifname;
        let bad_ifname =
            |why: &str| Error::InvalidAttachment(format!("interface name {ifname:?}: {why}"));
        if ifname.is_empty() {
            return Err(bad_ifname("empty"));
        }
        if ifname.len() > 15 {
            return Err(bad_ifname("longer than 15 bytes"));
        }
        if ifname == "." || ifname == ".." {
            return Err(bad_ifname("not a name"));
        }
        if ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(bad_ifname("holds '/', ':' or whitespace"));
        }
        if ifname == LOOPBACK_IFNAME {
            return Err(bad_ifname("reserved for loopback"));
        }
        for (k, v) in &self.args {
            if k.is_empty() || k.contains(['=', ';']) || v.contains(';') {
                return Err(Error::InvalidAttachment(format!(
                    "CNI_ARGS pair {k:?}={v:?} holds '=' or ';'"
                )));
            }
        }
        Ok(())
    }
}

/// An attachment that is still in use, as GC is told (spec 1.1
/// `cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidAttachment {
    /// The container id of the attachment.
    pub container_id: String,
    /// Its interface name.
    pub ifname: String,
}

/// What [`Cni::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Stale attachments deleted: (container id, network, interface).
    pub deleted: Vec<(String, String, String)>,
    /// What failed (GC goes on past failures).
    pub errors: Vec<String>,
}

/// The network condition, as CRI's `Status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// Whether a valid network config exists.
    pub ready: bool,
    /// Machine-readable reason when not ready (`NetworkPluginNotReady`).
    pub reason: String,
    /// Human-readable message when not ready.
    pub message: String,
}

/// The reason CRI's Status gives when the network is not ready.
const NOT_READY: &str = "NetworkPluginNotReady";
/// The reason it gives, ready, when the pod subnet is routed elsewhere.
const SUBNET_ROUTED: &str = "PodSubnetRoutedElsewhere";

fn ready() -> NetworkStatus {
    NetworkStatus {
        ready: true,
        reason: String::new(),
        message: String::new(),
    }
}

fn not_ready(message: String) -> NetworkStatus {
    NetworkStatus {
        ready: false,
        reason: NOT_READY.into(),
        message,
    }
}

/// One finished plugin call, as told to a [`CallObserver`].
#[derive(Debug, Clone, Copy)]
pub struct PluginCall<'a> {
    /// The plugin type ("bridge", "loopback" …).
    pub plugin: &'a str,
    /// "ADD", "DEL", "CHECK", "STATUS" or "GC".
    pub command: &'static str,
    /// "success", "timeout" or "error".
    pub result: &'static str,
    /// How long it took.
    pub duration: Duration,
}

/// Told of every plugin call once it has finished (for metrics).
#[derive(Clone)]
pub struct CallObserver(pub Arc<dyn Fn(&PluginCall<'_>) + Send + Sync>);

impl std::fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
}

/// The CNI client. Clones share the config watch and the cache.
#[derive(Debug, Clone)]
pub struct Cni {
    opts: CniOptions,
    cache: Cache,
    watch: Arc<ConfigWatch>,
    observer: Option<CallObserver>,
    /// Set once the calls an earlier client left running are over: the
    /// calls lock this client's plugins inherit.
    settled: Arc<tokio::sync::OnceCell<Option<earlier::CallsLock>>>,
    /// The last routes conflict [`Cni::status`] warned of.
    warned: Arc<std::sync::Mutex<String>>,
}

impl Cni {
    /// A client; nothing is read until it is used.
    pub fn new(opts: CniOptions) -> Self {
        let cache = Cache::new(opts.cache_dir.clone());
        let watch = Arc::new(ConfigWatch::new(opts.conf_dir.clone()));
        Cni {
            opts,
            cache,
            watch,
            observer: None,
            settled: Arc::new(tokio::sync::OnceCell::new()),
            warned: Arc::default(),
        }
    }

    /// The client, telling `observer` of every plugin call.
    pub fn with_observer(mut self, observer: CallObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs one plugin call and tells the observer. The first call waits
    /// for the calls an earlier client of the same cache left running
    /// ([`earlier::settle`]).
    async fn run(&self, inv: &Invocation<'_>) -> Result<Option<CniResult>, Error> {
        let client = &self.opts.cache_dir;
        let lock = self
            .settled
            .get_or_init(|| earlier::settle(client, self.opts.plugin_timeout))
            .await
            .as_ref()
            .map(earlier::CallsLock::fd);
        let began = std::time::Instant::now();
        let result = exec::run(
            inv,
            &self.opts.bin_dirs,
            self.opts.plugin_timeout,
            client,
            lock,
        )
        .await;
        if let Some(CallObserver(observe)) = &self.observer {
            observe(&PluginCall {
                plugin: inv.plugin.plugin_type(),
                command: inv.command.as_str(),
                result: match &result {
                    Ok(_) => "success",
                    Err(Error::Timeout { .. }) => "timeout",
                    Err(_) => "error",
                },
                duration: began.elapsed(),
            });
        }
        result
    }

    /// Ready iff the config directory holds a valid network config. Cheap:
    /// the directory is read again only after it changed. The message
    /// names the invalid files skipped, if any.
    pub fn config_status(&self) -> NetworkStatus {
        let snapshot = self.watch.snapshot();
        if snapshot.network.is_some() {
            return ready();
        }
        let dir = self.watch.dir().display();
        let mut message = match snapshot.error {
            Some(e) => format!("cni config uninitialized: {e}"),
            None => format!("cni config uninitialized: no valid network config in {dir}"),
        };
        for (path, reason) in &snapshot.skipped {
            message.push_str(&format!("; skipped {}: {reason}", path.display()));
        }
        not_ready(message)
    }

    /// [`Cni::config_status`], then, for a network of spec 1.1 or later,
    /// STATUS of each of its plugins in order: the first that fails makes
    /// the network not ready, with its message.
    pub async fn status(&self) -> NetworkStatus {
        let config = self.config_status();
        if !config.ready {
            return config;
        }
        let list = match self.default_network().await {
            Ok(Some(list)) => list,
            Ok(None) => return self.config_status(),
            Err(e) => return not_ready(format!("cni config uninitialized: {e}")),
        };
        let config = self.routes_status(&list).unwrap_or(config);
        if list.version() < config::Version::V1_1_0 {
            return config;
        }
        for plugin in &list.plugins {
            let inv = Invocation {
                command: Command::Status,
                list: &list,
                plugin,
                att: None,
                ifname: "",
                prev_result: None,
                inject: None,
            };
            if let Err(e) = self.run(&inv).await {
                return not_ready(e.to_string());
            }
        }
        config
    }

    /// Ready, but saying so, when the node already routes part of the
    /// network's pod subnets elsewhere (another runtime's bridge left
    /// behind): pods there would be unreachable. Warned of in the log
    /// when it is first seen.
    fn routes_status(&self, list: &NetworkConfigList) -> Option<NetworkStatus> {
        let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let conflicts = overlap::conflicts(list, &table);
        let message = conflicts.join("; ");
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if *warned != message {
            if !message.is_empty() {
                tracing::warn!(network = %list.name, "pod subnet already routed: {message}");
            }
            *warned = message.clone();
        }
        (!conflicts.is_empty()).then(|| NetworkStatus {
            ready: true,
            reason: SUBNET_ROUTED.into(),
            message: format!("network {:?}: {message}", list.name),
        })
    }

    /// The current default network, if any.
    pub async fn default_network(&self) -> Result<Option<Arc<NetworkConfigList>>, Error> {
        let watch = Arc::clone(&self.watch);
        blocking(move || watch.network()).await
    }

    /// GC (spec 1.1): every cached attachment not in `valid` is deleted
    /// (DEL with its cached config, arguments and result) and its cache
    /// entry dropped; then, for a default network of spec 1.1 or later,
    /// each of its plugins is told the valid attachments so that it can
    /// release whatever else it holds. Loopback attachments count as valid
    /// while their container has any valid attachment. Goes on past
    /// failures, which it reports.
    pub async fn gc(&self, valid: &[ValidAttachment]) -> Result<GcReport, Error> {
        let valid_set: BTreeSet<(&str, &str)> = valid
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        let valid_ids: BTreeSet<&str> = valid.iter().map(|a| a.container_id.as_str()).collect();
        let entries = {
            let cache = self.cache.clone();
            blocking(move || cache.all()).await?
        };
        let mut report = GcReport::default();
        for (path, entry) in entries {
            let Some(entry) = entry else { continue };
            let in_use = if entry.network == LOOPBACK_NETWORK {
                valid_ids.contains(entry.container_id.as_str())
            } else {
                valid_set.contains(&(entry.container_id.as_str(), entry.ifname.as_str()))
            };
            if in_use {
                continue;
            }
            let deleted = async {
                let list = entry.config_list(&path)?;
                let att = Attachment {
                    container_id: entry.container_id.clone(),
                    netns: entry.netns.clone(),
                    ifname: entry.ifname.clone(),
                    args: entry.args.clone(),
                    capability_args: entry.capability_args.clone(),
                };
                self.del_list(&list, &att, &entry.ifname, entry.prev_result())
                    .await?;
                let path = path.clone();
                blocking(move || Cache::remove_file(&path)).await
            }
            .await;
            match deleted {
                Ok(()) => report.deleted.push((
                    entry.container_id.clone(),
                    entry.network.clone(),
                    entry.ifname.clone(),
                )),
                Err(e) => report.errors.push(format!(
                    "stale attachment of container {:?} to {:?}: {e}",
                    entry.container_id, entry.network
                )),
            }
        }
        if let Some(list) = self.default_network().await?
            && list.version() >= config::Version::V1_1_0
        {
            let attachments: Vec<Value> = valid
                .iter()
                .map(|a| json!({"containerID": a.container_id, "ifname": a.ifname}))
                .collect();
            let mut inject = Map::new();
            inject.insert(
                "cni.dev/valid-attachments".into(),
                Value::Array(attachments),
            );
            for plugin in &list.plugins {
                let inv = Invocation {
                    command: Command::Gc,
                    list: &list,
                    plugin,
                    att: None,
                    ifname: "",
                    prev_result: None,
                    inject: Some(&inject),
                };
                if let Err(e) = self.run(&inv).await {
                    report.errors.push(e.to_string());
                }
            }
        }
        Ok(report)
    }

    /// Whether the cache still holds an attachment of `container_id` on
    /// `ifname` (to any network): a DEL is still owed for it, so its network
    /// namespace must stay (plugins such as bridge find what to undo, like
    /// masquerade rules, through the interfaces in it).
    pub async fn is_attached(&self, container_id: &str, ifname: &str) -> Result<bool, Error> {
        let cache = self.cache.clone();
        let (id, ifname) = (container_id.to_string(), ifname.to_string());
        blocking(move || cache.find(&id, &ifname))
            .await
            .map(|found| !found.is_empty())
    }

    /// ADD: brings up loopback, then attaches `att.ifname` to the default
    /// network, running its plugins in order with `prevResult` chaining.
    /// On any failure everything already added is deleted again (best
    /// effort) and the ADD error returned. The result is cached for DEL.
    pub async fn setup(&self, att: &Attachment) -> Result<CniResult, Error> {
        att.validate()?;
        let list = self
            .default_network()
            .await?
            .ok_or_else(|| Error::NoConfig {
                dir: self.opts.conf_dir.clone(),
            })?;

        // A failed ADD has already been rolled back by add_list.
        if self.opts.loopback_plugin {
            self.add_list(&LOOPBACK, att, LOOPBACK_IFNAME).await?;
        }
        match self.add_list(&list, att, &att.ifname).await {
            Ok(result) => Ok(result),
            Err(e) => {
                if self.opts.loopback_plugin {
                    self.undo_loopback(att).await;
                }
                Err(e)
            }
        }
    }

    /// DEL: detaches the container from the network it was set up with
    /// (from the cache; the current config when there is no cache entry)
    /// in reverse plugin order, then from loopback. Succeeds when the
    /// namespace is already gone and when called again; removes the cache
    /// entries on success.
    pub async fn teardown(&self, att: &Attachment) -> Result<(), Error> {
        att.validate()?;
        let found = {
            let cache = self.cache.clone();
            let (id, ifname) = (att.container_id.clone(), att.ifname.clone());
            blocking(move || cache.find(&id, &ifname)).await?
        };
        // An entry that cannot be used is logged and dropped after DEL.
        let found: Vec<_> = found
            .into_iter()
            .map(|(path, entry)| {
                let usable = entry.and_then(|e| match e.config_list(&path) {
                    Ok(list) => Some((list, e)),
                    Err(err) => {
                        tracing::warn!(error = %err, "ignoring unusable CNI cache entry");
                        None
                    }
                });
                (path, usable)
            })
            .collect();
        if found.iter().all(|(_, usable)| usable.is_none())
            && let Some(list) = self.default_network().await?
        {
            self.del_list(&list, att, &att.ifname, None).await?;
        }
        for (path, usable) in found {
            if let Some((list, entry)) = usable {
                // DEL undoes what ADD did: same args, same capability args
                // (portmap, for one, removes nothing without its mappings).
                let cached_att = Attachment {
                    args: entry.args.clone(),
                    capability_args: entry.capability_args.clone(),
                    ..att.clone()
                };
                self.del_list(&list, &cached_att, &att.ifname, entry.prev_result())
                    .await?;
            }
            blocking(move || Cache::remove_file(&path)).await?;
        }
        if self.opts.loopback_plugin
            || self
                .load_cache(LOOPBACK_NETWORK, att, LOOPBACK_IFNAME)
                .await?
                .is_some()
        {
            self.del_cached_or(&LOOPBACK, att, LOOPBACK_IFNAME).await?;
        }
        Ok(())
    }

    /// CHECK: verifies the attachment against its cached ADD result, for
    /// the main network and loopback. Skipped for a network with
    /// `disableCheck` or a version before 0.4.0.
    pub async fn check(&self, att: &Attachment) -> Result<(), Error> {
        att.validate()?;
        let found = {
            let cache = self.cache.clone();
            let (id, ifname) = (att.container_id.clone(), att.ifname.clone());
            blocking(move || cache.find(&id, &ifname)).await?
        };
        let mut checked = false;
        for (path, entry) in found {
            let entry = match entry {
                Some(e) => e,
                // Unreadable: read it again for the error naming the file.
                None => match self.cache.read(&path)? {
                    Some(e) => e,
                    None => continue,
                },
            };
            let list = entry.config_list(&path)?;
            let cached_att = Attachment {
                args: entry.args.clone(),
                capability_args: entry.capability_args.clone(),
                ..att.clone()
            };
            self.check_list(&list, &cached_att, &att.ifname, finished(&entry)?)
                .await?;
            checked = true;
        }
        if !checked {
            return Err(Error::NotCached {
                container_id: att.container_id.clone(),
                ifname: att.ifname.clone(),
            });
        }
        let lo = self
            .load_cache(LOOPBACK_NETWORK, att, LOOPBACK_IFNAME)
            .await?;
        if let Some(entry) = lo {
            self.check_list(&LOOPBACK, att, LOOPBACK_IFNAME, finished(&entry)?)
                .await?;
        }
        Ok(())
    }

    /// Runs ADD over `list`; on failure runs DEL over the whole chain.
    async fn add_list(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        ifname: &str,
    ) -> Result<CniResult, Error> {
        let pending = CacheEntry::pending(list, att, ifname);
        {
            let (cache, pending) = (self.cache.clone(), pending.clone());
            blocking(move || cache.store(&pending)).await?;
        }
        let mut prev: Option<CniResult> = None;
        for plugin in &list.plugins {
            let inv = Invocation {
                command: Command::Add,
                list,
                plugin,
                att: Some(att),
                ifname,
                prev_result: prev.as_ref().map(CniResult::raw),
                inject: None,
            };
            match self.run(&inv).await {
                Ok(Some(result)) => prev = Some(result),
                Ok(None) => {
                    return Err(Error::Internal(format!(
                        "network {:?}: ADD of {:?} gave no result",
                        list.name,
                        plugin.plugin_type()
                    )));
                }
                Err(e) => {
                    self.rollback(list, att, ifname, prev.as_ref()).await;
                    return Err(e);
                }
            }
        }
        let Some(result) = prev else {
            self.rollback(list, att, ifname, None).await;
            return Err(Error::Internal(format!(
                "network {:?} has no plugins",
                list.name
            )));
        };
        let entry = pending.finished(&result);
        let cache = self.cache.clone();
        if let Err(e) = blocking(move || cache.store(&entry)).await {
            // Without the result DEL could not undo this ADD exactly.
            self.rollback(list, att, ifname, Some(&result)).await;
            return Err(e);
        }
        Ok(result)
    }

    /// Best-effort DEL of a chain whose ADD failed; its cache entry goes
    /// once the DEL succeeded (else GC or a later DEL retries it).
    async fn rollback(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        ifname: &str,
        partial: Option<&CniResult>,
    ) {
        let prev = partial.map(|r| r.raw().clone());
        let undone = match self.del_list(list, att, ifname, prev.as_ref()).await {
            Ok(()) => {
                let path = self.cache.path(&list.name, &att.container_id, ifname);
                blocking(move || Cache::remove_file(&path)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = undone {
            tracing::warn!(
                network = %list.name,
                container_id = %att.container_id,
                error = %e,
                "cleanup after failed CNI ADD failed"
            );
        }
    }

    /// Undoes loopback after a failed setup and forgets its cache entry.
    async fn undo_loopback(&self, att: &Attachment) {
        if let Err(e) = self.del_cached_or(&LOOPBACK, att, LOOPBACK_IFNAME).await {
            tracing::warn!(container_id = %att.container_id, error = %e, "loopback cleanup after failed CNI ADD failed");
        }
    }

    /// DEL of `list` with its cached entry's result and args when there is
    /// one; removes the entry on success.
    async fn del_cached_or(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        ifname: &str,
    ) -> Result<(), Error> {
        let entry = self.load_cache(&list.name, att, ifname).await?;
        let prev = entry.as_ref().and_then(CacheEntry::prev_result);
        self.del_list(list, att, ifname, prev).await?;
        let path = self.cache.path(&list.name, &att.container_id, ifname);
        blocking(move || Cache::remove_file(&path)).await
    }

    /// DEL over `list` in reverse order. `prevResult` goes along from 0.4.0
    /// on, as libcni does.
    async fn del_list(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        ifname: &str,
        prev: Option<&Value>,
    ) -> Result<(), Error> {
        let prev = prev.filter(|_| list.version() >= config::Version::V0_4_0);
        for plugin in list.plugins.iter().rev() {
            let inv = Invocation {
                command: Command::Del,
                list,
                plugin,
                att: Some(att),
                ifname,
                prev_result: prev,
                inject: None,
            };
            self.run(&inv).await?;
        }
        Ok(())
    }

    /// CHECK over `list` in order, unless the network disables it.
    async fn check_list(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        ifname: &str,
        prev: &Value,
    ) -> Result<(), Error> {
        if !list.check_supported() {
            return Ok(());
        }
        for plugin in &list.plugins {
            let inv = Invocation {
                command: Command::Check,
                list,
                plugin,
                att: Some(att),
                ifname,
                prev_result: Some(prev),
                inject: None,
            };
            self.run(&inv).await?;
        }
        Ok(())
    }

    async fn load_cache(
        &self,
        network: &str,
        att: &Attachment,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, Error> {
        let cache = self.cache.clone();
        let (network, id, ifname) = (
            network.to_string(),
            att.container_id.clone(),
            ifname.to_string(),
        );
        blocking(move || cache.load(&network, &id, &ifname)).await
    }
}

/// The result of a cached ADD that finished; CHECK has nothing to check
/// an unfinished one against.
fn finished(entry: &CacheEntry) -> Result<&Value, Error> {
    entry.prev_result().ok_or_else(|| Error::NotCached {
        container_id: entry.container_id.clone(),
        ifname: entry.ifname.clone(),
    })
}

/// Runs blocking file work (reads, fsync) off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}
