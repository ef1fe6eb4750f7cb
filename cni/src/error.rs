//! Errors of the CNI client.
//!
//! Every variant names what it concerns: the config file, the network, the
//! plugin and the CNI command, or the namespace path.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A CNI error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A network config file could not be read or is not a valid config.
    #[error("CNI config {path}: {reason}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The config directory exists but could not be listed.
    #[error("CNI config directory {dir}: {source}")]
    ConfigDir {
        /// The config directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The config directory holds no valid network config.
    #[error("no valid CNI network config in {dir}")]
    NoConfig {
        /// The config directory.
        dir: PathBuf,
    },
    /// The attachment (container id, interface name …) is not acceptable
    /// to the CNI spec.
    #[error("invalid CNI attachment: {0}")]
    InvalidAttachment(String),
    /// No plugin binary of that type exists in any bin dir.
    #[error("network {network:?}: CNI plugin {plugin:?} not found in {}", join_paths(.dirs))]
    PluginNotFound {
        /// The network whose config names the plugin.
        network: String,
        /// The plugin type (binary name).
        plugin: String,
        /// The directories searched, in order.
        dirs: Vec<PathBuf>,
    },
    /// The plugin ran and reported an error.
    #[error("{}", PluginFailure { network, plugin, command, code: *code, msg, details })]
    Plugin {
        /// The network being set up or torn down.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The CNI command (ADD, DEL, CHECK).
        command: &'static str,
        /// The CNI error code; `None` when the plugin printed no error JSON.
        code: Option<u32>,
        /// The error message (the plugin's stderr when it printed no JSON).
        msg: String,
        /// Details of the error, possibly empty.
        details: String,
    },
    /// The plugin did not finish in time and was killed.
    #[error(
        "network {network:?}: CNI plugin {plugin:?} {command} timed out after {timeout:?} and was killed"
    )]
    Timeout {
        /// The network being set up or torn down.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The plugin could not be started or talked to.
    #[error("network {network:?}: CNI plugin {plugin:?} {command}: {context}: {source}")]
    PluginExec {
        /// The network being set up or torn down.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// What was being done ("spawn /usr/lib/cni/bridge" …).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin succeeded but printed a result that is not a CNI result.
    #[error("network {network:?}: CNI plugin {plugin:?} {command} returned a bad result: {reason}")]
    BadResult {
        /// The network being set up.
        network: String,
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: &'static str,
        /// What is wrong with the output.
        reason: String,
    },
    /// CHECK was asked for an attachment that has no cached ADD result.
    #[error(
        "no cached CNI result for container {container_id:?} interface {ifname:?}; was it set up?"
    )]
    NotCached {
        /// The container id.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// Reading or writing the result cache failed.
    #[error("CNI cache {path}: {context}: {source}")]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cache file is not a valid cache entry.
    #[error("CNI cache {path}: {reason}")]
    BadCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating, entering or removing a network namespace failed.
    #[error("network namespace {path}: {context}: {source}")]
    Netns {
        /// The namespace's pin file.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A background task or thread died (a bug, or the runtime is shutting
    /// down).
    #[error("CNI internal error: {0}")]
    Internal(String),
}

fn join_paths(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no bin dirs configured)".to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Formats [`Error::Plugin`].
struct PluginFailure<'a> {
    network: &'a str,
    plugin: &'a str,
    command: &'a str,
    code: Option<u32>,
    msg: &'a str,
    details: &'a str,
}

impl fmt::Display for PluginFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "network {:?}: CNI plugin {:?} {} failed",
            self.network, self.plugin, self.command
        )?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        write!(f, ": {}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_error_message_names_network_plugin_command_and_code() {
        let e = Error::Plugin {
            network: "pods".into(),
            plugin: "bridge".into(),
            command: "ADD",
            code: Some(11),
            msg: "failed to allocate".into(),
            details: "range full".into(),
        };
        assert_eq!(
            e.to_string(),
            "network \"pods\": CNI plugin \"bridge\" ADD failed (code 11): failed to allocate: range full"
        );
    }

    #[test]
    fn not_found_lists_searched_dirs() {
        let e = Error::PluginNotFound {
            network: "pods".into(),
            plugin: "bridge".into(),
            dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        };
        assert!(
            e.to_string()
                .ends_with("not found in /opt/cni/bin, /usr/lib/cni")
        );
    }
}
