//! The plugin protocol: find a plugin binary, build its stdin and
//! environment, run it under a timeout and read its result or error.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Attachment;
use crate::config::{NetworkConfigList, PluginConf};
use crate::earlier::CLIENT_ENV;
use crate::error::Error;
use crate::result::CniResult;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Attach.
    Add,
    /// Detach.
    Del,
    /// Verify an attachment.
    Check,
    /// Report whether the plugin can serve ADD (spec 1.1).
    Status,
    /// Clean up what no valid attachment uses (spec 1.1).
    Gc,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plugin call: everything its stdin and environment are made of.
pub(crate) struct Invocation<'a> {
    /// The command.
    pub command: Command,
    /// The network the plugin belongs to.
    pub list: &'a NetworkConfigList,
    /// The plugin.
    pub plugin: &'a PluginConf,
    /// Container id, netns, CNI_ARGS, capability args; `None` for the
    /// network-wide commands (STATUS, GC).
    pub att: Option<&'a Attachment>,
    /// The interface name (the attachment's, or `lo` for loopback).
    pub ifname: &'a str,
    /// `prevResult`: the previous plugin's result on ADD, the cached
    /// result on DEL and CHECK.
    pub prev_result: Option<&'a Value>,
    /// Further keys for the plugin's config (GC's
    /// `cni.dev/valid-attachments`).
    pub inject: Option<&'a Map<String, Value>>,
}

/// The plugin's stdin: its own config with the list's `name` and
/// `cniVersion`, `prevResult` when given, and `runtimeConfig` holding the
/// capability args the plugin declares (libcni's `buildOneConfig`).
pub(crate) fn build_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
    inject: Option<&Map<String, Value>>,
) -> Vec<u8> {
    let mut conf = plugin.raw().clone();
    conf.insert("name".into(), list.name.clone().into());
    conf.insert("cniVersion".into(), list.cni_version.clone().into());
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    for (k, v) in inject.into_iter().flatten() {
        conf.insert(k.clone(), v.clone());
    }
    let runtime_config: Map<String, Value> = capability_args
        .iter()
        .filter(|(cap, _)| plugin.has_capability(cap))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    Value::Object(conf).to_string().into_bytes()
}

/// The plugin's `CNI_*` environment. The network-wide commands (no
/// attachment) get only CNI_COMMAND and CNI_PATH, as the spec says.
pub(crate) fn build_env(
    command: Command,
    att: Option<&Attachment>,
    ifname: &str,
    bin_dirs: &[PathBuf],
) -> Vec<(&'static str, OsString)> {
    let mut cni_path = OsString::new();
    for (i, dir) in bin_dirs.iter().enumerate() {
        if i > 0 {
            cni_path.push(":");
        }
        cni_path.push(dir);
    }
    let mut env = vec![("CNI_COMMAND", command.as_str().into())];
    if let Some(att) = att {
        let cni_args = att
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        env.extend([
            ("CNI_CONTAINERID", att.container_id.clone().into()),
            ("CNI_NETNS", att.netns.clone().into_os_string()),
            ("CNI_IFNAME", ifname.into()),
            ("CNI_ARGS", cni_args.into()),
        ]);
    }
    env.push(("CNI_PATH", cni_path));
    env
}

/// The first `bin_dirs` entry holding a file named `plugin_type`.
pub(crate) fn find_plugin(
    network: &str,
    plugin_type: &str,
    bin_dirs: &[PathBuf],
) -> Result<PathBuf, Error> {
    bin_dirs
        .iter()
        .map(|d| d.join(plugin_type))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::PluginNotFound {
            network: network.into(),
            plugin: plugin_type.into(),
            dirs: bin_dirs.to_vec(),
        })
}

/// The error object a failing plugin prints on stdout.
#[derive(Debug, PartialEq, serde::Deserialize)]
pub(crate) struct PluginError {
    #[serde(default)]
    pub code: Option<u32>,
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

/// Reads a failed plugin's error: the spec's JSON on stdout, else its
/// stderr (or the exit status when it said nothing at all).
pub(crate) fn parse_plugin_error(stdout: &[u8], stderr: &[u8], status: &str) -> PluginError {
    if let Ok(e) = serde_json::from_slice::<PluginError>(stdout) {
        return e;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let msg = [text(stderr), text(stdout)]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "plugin printed no error".into());
    PluginError {
        code: None,
        msg,
        details: status.into(),
    }
}

/// Runs one plugin call. ADD returns the parsed result; the other
/// commands return `None`. `client` goes into the plugin's environment
/// as [`CLIENT_ENV`], and the plugin inherits `calls_lock` (see
/// [`crate::earlier`]).
pub(crate) async fn run(
    inv: &Invocation<'_>,
    bin_dirs: &[PathBuf],
    timeout: Duration,
    client: &Path,
    calls_lock: Option<RawFd>,
) -> Result<Option<CniResult>, Error> {
    let network = inv.list.name.as_str();
    let plugin = inv.plugin.plugin_type();
    let path = find_plugin(network, plugin, bin_dirs)?;
    let no_args = Map::new();
    let stdin = build_stdin(
        inv.list,
        inv.plugin,
        inv.prev_result,
        inv.att.map_or(&no_args, |a| &a.capability_args),
        inv.inject,
    );
    let mut env = build_env(inv.command, inv.att, inv.ifname, bin_dirs);
    env.push((CLIENT_ENV, client.as_os_str().to_owned()));
    tracing::debug!(
        network,
        plugin,
        command = %inv.command,
        container_id = inv.att.map_or("", |a| a.container_id.as_str()),
        ifname = inv.ifname,
        "running CNI plugin"
    );
    let exec_err = |context: String| {
        move |source| Error::PluginExec {
            network: network.into(),
            plugin: plugin.into(),
            command: inv.command.as_str(),
            context,
            source,
        }
    };
    let output = exec(&path, &stdin, env, timeout, calls_lock)
        .await
        .map_err(|e| match e {
            ExecError::Io(context, source) => {
                exec_err(format!("{context} {}", path.display()))(source)
            }
            ExecError::Timeout => Error::Timeout {
                network: network.into(),
                plugin: plugin.into(),
                command: inv.command.as_str(),
                timeout,
            },
        })?;

    if !output.status.success() {
        let e = parse_plugin_error(&output.stdout, &output.stderr, &output.status.to_string());
        return Err(Error::Plugin {
            network: network.into(),
            plugin: plugin.into(),
            command: inv.command.as_str(),
            code: e.code,
            msg: e.msg,
            details: e.details,
        });
    }
    if !output.stderr.is_empty() {
        tracing::debug!(network, plugin, stderr = %String::from_utf8_lossy(&output.stderr), "CNI plugin stderr");
    }
    if inv.command != Command::Add {
        return Ok(None);
    }
    CniResult::from_slice(&output.stdout)
        .map(Some)
        .map_err(|reason| Error::BadResult {
            network: network.into(),
            plugin: plugin.into(),
            command: inv.command.as_str(),
            reason,
        })
}

/// Why [`exec`] failed.
enum ExecError {
    Io(&'static str, std::io::Error),
    Timeout,
}

/// Spawns `path` in its own process group, feeds `stdin`, collects
/// stdout/stderr and waits, all within `timeout`. On expiry the whole group
/// is killed: a plugin may have started a delegate (an IPAM plugin) that
/// would otherwise outlive it and hold the pipes open. The child keeps
/// `inherit` open across its exec.
async fn exec(
    path: &Path,
    stdin: &[u8],
    env: Vec<(&'static str, OsString)>,
    timeout: Duration,
    inherit: Option<RawFd>,
) -> Result<std::process::Output, ExecError> {
    let mut command = tokio::process::Command::new(path);
    command
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(fd) = inherit {
        // SAFETY: runs in the child between fork and exec, where it only
        // calls fcntl (async-signal-safe) on a descriptor the caller keeps
        // open until the spawn has returned.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().map_err(|e| ExecError::Io("spawn", e))?;
    let pid = child.id();
    let child_stdin = child.stdin.take();
    let child_stdout = child.stdout.take();
    let child_stderr = child.stderr.take();

    let talk = async {
        let write = async {
            if let Some(mut pipe) = child_stdin {
                match pipe.write_all(stdin).await {
                    // A plugin may exit without reading its config.
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(ExecError::Io("write stdin of", e));
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        let read_out = read_all(child_stdout, "read stdout of");
        let read_err = read_all(child_stderr, "read stderr of");
        let (w, out, err, status) = tokio::join!(write, read_out, read_err, child.wait());
        w?;
        Ok(std::process::Output {
            status: status.map_err(|e| ExecError::Io("wait for", e))?,
            stdout: out?,
            stderr: err?,
        })
    };
    match tokio::time::timeout(timeout, talk).await {
        Ok(output) => output,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // ESRCH: the group is already gone.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Reap the plugin itself; an error means it was reaped already.
            let _ = child.kill().await;
            Err(ExecError::Timeout)
        }
    }
}

/// The most a plugin may print on stdout or stderr. A result or an error
/// is a few KiB; a plugin gone wrong must not fill the daemon's memory.
const MAX_OUTPUT: u64 = 4 << 20;

async fn read_all<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    what: &'static str,
) -> Result<Vec<u8>, ExecError> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(MAX_OUTPUT + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| ExecError::Io(what, e))?;
    }
    if buf.len() as u64 > MAX_OUTPUT {
        return Err(ExecError::Io(
            what,
            std::io::Error::other(format!("the plugin printed more than {MAX_OUTPUT} bytes")),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> NetworkConfigList {
        NetworkConfigList::from_slice(
            br#"{"cniVersion":"0.4.0","name":"pods","plugins":[
                {"type":"bridge","name":"ignored","cniVersion":"0.3.0","bridge":"cni0"},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
        )
        .unwrap()
    }

    fn att() -> Attachment {
        Attachment {
            container_id: "abc123".into(),
            netns: "/run/crius/netns/abc".into(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "web".into()),
            ],
            capability_args: json!({
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                "bandwidth": {"ingressRate": 1},
                "dns": {"servers": ["1.1.1.1"]}
            })
            .as_object()
            .unwrap()
            .clone(),
        }
    }

    fn stdin_json(plugin: usize, prev: Option<&Value>) -> Value {
        let list = list();
        serde_json::from_slice(&build_stdin(
            &list,
            &list.plugins[plugin],
            prev,
            &att().capability_args,
            None,
        ))
        .unwrap()
    }

    #[test]
    fn stdin_injects_list_name_and_version_over_plugin_values() {
        let conf = stdin_json(0, None);
        assert_eq!(conf["name"], "pods");
        assert_eq!(conf["cniVersion"], "0.4.0");
        assert_eq!(conf["bridge"], "cni0");
        assert!(conf.get("prevResult").is_none());
        // bridge declares no capabilities: no runtimeConfig at all.
        assert!(conf.get("runtimeConfig").is_none());
    }

    #[test]
    fn stdin_runtime_config_holds_only_declared_capabilities() {
        let conf = stdin_json(1, None);
        assert_eq!(
            conf["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        // The plugin's own keys are passed through.
        assert_eq!(conf["capabilities"]["portMappings"], true);
    }

    #[test]
    fn stdin_carries_prev_result() {
        let prev = json!({"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]});
        let conf = stdin_json(1, Some(&prev));
        assert_eq!(conf["prevResult"], prev);
    }

    #[test]
    fn env_has_every_cni_variable() {
        let env = build_env(
            Command::Del,
            Some(&att()),
            "eth0",
            &["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        );
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(get("CNI_COMMAND"), "DEL");
        assert_eq!(get("CNI_CONTAINERID"), "abc123");
        assert_eq!(get("CNI_NETNS"), "/run/crius/netns/abc");
        assert_eq!(get("CNI_IFNAME"), "eth0");
        assert_eq!(get("CNI_ARGS"), "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(get("CNI_PATH"), "/opt/cni/bin:/usr/lib/cni");
        assert_eq!(env.len(), 6);
    }

    #[test]
    fn env_with_no_args_is_empty_string() {
        let mut a = att();
        a.args.clear();
        let env = build_env(Command::Add, Some(&a), "lo", &[]);
        assert!(env.iter().any(|(k, v)| *k == "CNI_ARGS" && v.is_empty()));
        assert!(env.iter().any(|(k, v)| *k == "CNI_IFNAME" && v == "lo"));
    }

    #[test]
    fn network_wide_commands_get_only_command_and_path() {
        let env = build_env(Command::Status, None, "", &["/opt/cni/bin".into()]);
        let names: Vec<_> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["CNI_COMMAND", "CNI_PATH"]);
        assert_eq!(env[0].1, "STATUS");
    }

    #[test]
    fn stdin_carries_injected_keys() {
        let list = list();
        let inject = json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]});
        let conf: Value = serde_json::from_slice(&build_stdin(
            &list,
            &list.plugins[0],
            None,
            &Map::new(),
            inject.as_object(),
        ))
        .unwrap();
        assert_eq!(
            conf["cni.dev/valid-attachments"],
            json!([{"containerID": "a", "ifname": "eth0"}])
        );
        assert_eq!(conf["name"], "pods");
    }

    #[test]
    fn plugin_error_json_is_parsed() {
        let e = parse_plugin_error(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}"#,
            b"noise",
            "exit status: 1",
        );
        assert_eq!(
            e,
            PluginError {
                code: Some(7),
                msg: "invalid config".into(),
                details: "no bridge".into()
            }
        );
    }

    #[test]
    fn plugin_error_falls_back_to_stderr_then_status() {
        let e = parse_plugin_error(b"", b"  panic: boom\n", "exit status: 2");
        assert_eq!(e.code, None);
        assert_eq!(e.msg, "panic: boom");
        assert_eq!(e.details, "exit status: 2");
        let e = parse_plugin_error(b"", b"", "signal: 9 (SIGKILL)");
        assert_eq!(e.msg, "plugin printed no error");
        assert_eq!(e.details, "signal: 9 (SIGKILL)");
    }

    #[test]
    fn find_plugin_searches_dirs_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("bridge"), "").unwrap();
        std::fs::create_dir(a.path().join("portmap")).unwrap();
        std::fs::write(b.path().join("portmap"), "").unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_plugin("n", "bridge", &dirs).unwrap(),
            b.path().join("bridge")
        );
        // A directory of that name is not a plugin.
        assert_eq!(
            find_plugin("n", "portmap", &dirs).unwrap(),
            b.path().join("portmap")
        );
        std::fs::write(a.path().join("bridge"), "").unwrap();
        assert_eq!(
            find_plugin("n", "bridge", &dirs).unwrap(),
            a.path().join("bridge")
        );
        let err = find_plugin("n", "nope", &dirs).unwrap_err();
        assert!(matches!(err, Error::PluginNotFound { .. }), "{err}");
    }
}
