//! Limits and checks on what a CRI client may ask for, applied before
//! anything is made: names that cannot smuggle path separators or control
//! characters into files and logs, paths that cannot escape where they
//! belong (a container's log path stays inside its pod's log directory;
//! paths in the container are absolute and hold no `..`), and sizes that
//! cannot exhaust the daemon.
//!
//! The limits are generous — above what kubelet and the API server let a
//! pod carry — so that only a broken or hostile client meets them:
//!
//! | what | limit |
//! |---|---|
//! | pod name, namespace, uid; container name | 253 bytes (a DNS subdomain) |
//! | hostname | 64 bytes (the kernel's) |
//! | labels, annotations: keys and values together | 256 KiB each (the API server's annotation limit) |
//! | command + args (also of Exec and ExecSync) | 4096 entries, 1 MiB together, 128 KiB each (the kernel's `MAX_ARG_STRLEN`) |
//! | environment | 16384 variables, 1 MiB together, 128 KiB each as `KEY=value` |
//! | mounts, devices | 1024 each |
//! | DNS servers / searches / options | 32 / 64 / 64 entries of 253 bytes |
//! | port mappings | 1024 |
//! | any path | 4096 bytes (PATH_MAX), 255 a component (NAME_MAX) |

use std::path::{Component, Path};

use crate::error::{Error, Result};
use crate::records::container::{ContainerConfig, Resources, TERMINATION_MESSAGE_PATH_ANNOTATION};
use crate::records::pod::PodConfig;

/// Longest pod or container name, namespace or uid.
pub const MAX_NAME: usize = 253;
/// Longest hostname.
pub const MAX_HOSTNAME: usize = 64;
/// Most bytes of labels (or of annotations), keys and values together.
pub const MAX_LABEL_BYTES: usize = 256 * 1024;
/// Most command and argument entries.
pub const MAX_ARGS: usize = 4096;
/// Most bytes of command and arguments together.
pub const MAX_ARG_BYTES: usize = 1 << 20;
/// Most environment variables.
pub const MAX_ENVS: usize = 16384;
/// Most bytes of environment, keys and values together.
pub const MAX_ENV_BYTES: usize = 1 << 20;
/// Most mounts (and most devices).
pub const MAX_MOUNTS: usize = 1024;
/// Most DNS servers.
pub const MAX_DNS_SERVERS: usize = 32;
/// Most DNS search domains (and most resolver options).
pub const MAX_DNS_SEARCHES: usize = 64;
/// Longest DNS server, search domain or option.
pub const MAX_DNS_ENTRY: usize = 253;
/// Most port mappings.
pub const MAX_PORT_MAPPINGS: usize = 1024;
/// Longest path.
pub const MAX_PATH: usize = 4096;
/// Longest component of a path (a file name).
pub const MAX_FILE_NAME: usize = 255;
/// Longest string execve takes as one argument or environment entry, its
/// NUL included (the kernel's `MAX_ARG_STRLEN`, 32 pages): a longer one
/// makes the container's process fail to start with E2BIG.
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

fn invalid(what: impl std::fmt::Display, why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {why}"))
}

/// A name: not empty, at most [`MAX_NAME`] bytes, no `/` and no control
/// characters (it names files and log lines).
fn name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(what, "is empty"));
    }
    if value.len() > MAX_NAME {
        return Err(invalid(
            what,
            format!("is {} bytes long (at most {MAX_NAME})", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| *c == '/' || c.is_control()) {
        return Err(invalid(
            format!("{what} {value:?}"),
            format!("must not hold {c:?}"),
        ));
    }
    Ok(())
}

/// No NUL (which the kernel's strings cannot hold) in `value`.
fn no_nul(what: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(invalid(what, "holds a NUL byte"));
    }
    Ok(())
}

/// A single-line text (written into hosts or resolv.conf): at most `max`
/// bytes, no whitespace or control characters.
fn word(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(invalid(
            what,
            format!("is {} bytes long (at most {max})", value.len()),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            format!("{what} {value:?}"),
            format!("must not hold {c:?}"),
        ));
    }
    Ok(())
}

/// An absolute path without `.` or `..` components or NUL, at most
/// [`MAX_PATH`] bytes.
pub fn absolute_clean_path(what: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(invalid(
            format!("{what} {path:?}"),
            "must be an absolute path",
        ));
    }
    clean_path(what, path)
}

/// A path without `..` components or NUL, at most [`MAX_PATH`] bytes.
fn clean_path(what: &str, path: &str) -> Result<()> {
    no_nul(what, path)?;
    if path.len() > MAX_PATH {
        return Err(invalid(
            what,
            format!("is {} bytes long (at most {MAX_PATH})", path.len()),
        ));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(invalid(format!("{what} {path:?}"), "must not hold \"..\""));
    }
    if let Some(long) = path.split('/').find(|c| c.len() > MAX_FILE_NAME) {
        return Err(invalid(
            what,
            format!(
                "has a component of {} bytes (at most {MAX_FILE_NAME}): {:?}…",
                long.len(),
                long.chars().take(32).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Labels or annotations: no empty key, no NUL in a key or value (they
/// go on into the OCI spec and to CNI and NRI plugins, where a NUL would
/// cut a C string short), and keys and values together at most
/// [`MAX_LABEL_BYTES`].
fn labels<'a>(what: &str, map: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    let mut total = 0usize;
    for (k, v) in map {
        if k.is_empty() {
            return Err(invalid(what, "has an empty key"));
        }
        if k.contains('\0') {
            return Err(invalid(format!("{what} key {k:?}"), "holds a NUL byte"));
        }
        if v.contains('\0') {
            return Err(invalid(
                format!("{what} value of {k:?}"),
                "holds a NUL byte",
            ));
        }
        total = total.saturating_add(k.len() + v.len());
    }
    if total > MAX_LABEL_BYTES {
        return Err(invalid(
            what,
            format!("take {total} bytes (at most {MAX_LABEL_BYTES})"),
        ));
    }
    Ok(())
}

/// The streams asked of an Exec or Attach to container `container_id`
/// (`method` names the call), checked as kubelet and containerd do: at
/// least one stream, and no stderr with a terminal (a terminal has one
/// output).
pub fn stdio(
    method: &str,
    container_id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<()> {
    if !(stdin || stdout || stderr) {
        return Err(invalid(
            format!("{method} to container {container_id:?}"),
            "one of stdin, stdout and stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(invalid(
            format!("{method} to container {container_id:?}"),
            "tty and stderr cannot both be set",
        ));
    }
    Ok(())
}

/// Checks a RunPodSandbox request (see the module docs).
pub fn pod(config: &PodConfig) -> Result<()> {
    name("pod sandbox metadata.name", &config.name)?;
    name("pod sandbox metadata.namespace", &config.namespace)?;
    name("pod sandbox metadata.uid", &config.uid)?;
    if !config.hostname.is_empty() {
        word("pod sandbox hostname", &config.hostname, MAX_HOSTNAME)?;
        if config.hostname.contains('/') {
            return Err(invalid("pod sandbox hostname", "must not hold '/'"));
        }
    }
    let log_dir = config.log_directory.to_string_lossy();
    if !log_dir.is_empty() {
        absolute_clean_path("pod sandbox log_directory", &log_dir)?;
    }
    labels("pod sandbox labels", &config.labels)?;
    labels("pod sandbox annotations", &config.annotations)?;
    if let Some(dns) = &config.dns {
        for (what, entries, max) in [
            ("DNS server", &dns.servers, MAX_DNS_SERVERS),
            ("DNS search domain", &dns.searches, MAX_DNS_SEARCHES),
            ("DNS option", &dns.options, MAX_DNS_SEARCHES),
        ] {
            if entries.len() > max {
                return Err(invalid(
                    format!("pod sandbox {what}s"),
                    format!("{} given (at most {max})", entries.len()),
                ));
            }
            for e in entries {
                word(&format!("pod sandbox {what}"), e, MAX_DNS_ENTRY)?;
            }
        }
    }
    if config.port_mappings.len() > MAX_PORT_MAPPINGS {
        return Err(invalid(
            "pod sandbox port_mappings",
            format!(
                "{} given (at most {MAX_PORT_MAPPINGS})",
                config.port_mappings.len()
            ),
        ));
    }
    for (k, v) in &config.sysctls {
        no_nul("pod sandbox sysctl", k)?;
        no_nul("pod sandbox sysctl", v)?;
    }
    Ok(())
}

/// Checks a CreateContainer request (see the module docs).
pub fn container(config: &ContainerConfig) -> Result<()> {
    name("container metadata.name", &config.name)?;
    let what = |field: &str| format!("container {:?} {field}", config.name);
    no_nul(&what("image"), &config.image)?;
    if !config.log_path.is_empty() {
        if config.log_path.starts_with('/') {
            return Err(invalid(
                format!("{} {:?}", what("log_path"), config.log_path),
                "must be relative to the pod's log_directory",
            ));
        }
        clean_path(&what("log_path"), &config.log_path)?;
    }
    let argv = config.command.iter().chain(&config.args);
    let (count, bytes) = argv.clone().fold((0usize, 0usize), |(n, b), a| {
        (n + 1, b.saturating_add(a.len()))
    });
    if count > MAX_ARGS || bytes > MAX_ARG_BYTES {
        return Err(invalid(
            what("command and args"),
            format!(
                "{count} entries, {bytes} bytes (at most {MAX_ARGS} entries, {MAX_ARG_BYTES} bytes)"
            ),
        ));
    }
    for a in argv {
        no_nul(&what("command or args"), a)?;
    }
    let entries = [("command", &config.command), ("args", &config.args)];
    for (field, list) in entries {
        if let Some((i, a)) = list
            .iter()
            .enumerate()
            .find(|(_, a)| a.len() >= MAX_ARG_STRLEN)
        {
            return Err(invalid(
                what(&format!("{field}[{i}]")),
                format!(
                    "is {} bytes (the kernel takes at most {} a string)",
                    a.len(),
                    MAX_ARG_STRLEN - 1
                ),
            ));
        }
    }
    if !config.working_dir.is_empty() {
        absolute_clean_path(&what("working_dir"), &config.working_dir)?;
    }
    let env_bytes = config
        .envs
        .iter()
        .fold(0usize, |b, (k, v)| b.saturating_add(k.len() + v.len() + 1));
    if config.envs.len() > MAX_ENVS || env_bytes > MAX_ENV_BYTES {
        return Err(invalid(
            what("envs"),
            format!(
                "{} variables, {env_bytes} bytes (at most {MAX_ENVS} variables, {MAX_ENV_BYTES} bytes)",
                config.envs.len()
            ),
        ));
    }
    for (k, v) in &config.envs {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(invalid(
                format!("{} {k:?}", what("env key")),
                "must be non-empty without '=' or NUL",
            ));
        }
        no_nul(&what(&format!("env {k}")), v)?;
        // `KEY=value` and its NUL.
        if k.len() + v.len() + 2 > MAX_ARG_STRLEN {
            return Err(invalid(
                what(&format!("env {k}")),
                format!(
                    "is {} bytes as KEY=value (the kernel takes at most {} a string)",
                    k.len() + v.len() + 1,
                    MAX_ARG_STRLEN - 1
                ),
            ));
        }
    }
    for (field, n) in [
        ("mounts", config.mounts.len()),
        ("devices", config.devices.len()),
    ] {
        if n > MAX_MOUNTS {
            return Err(invalid(
                what(field),
                format!("{n} given (at most {MAX_MOUNTS})"),
            ));
        }
    }
    for m in &config.mounts {
        absolute_clean_path(&what("mount container_path"), &m.container_path)?;
        // An image volume has no host path (the image is mounted instead).
        if m.image.is_empty() || !m.host_path.is_empty() {
            absolute_clean_path(&what("mount host_path"), &m.host_path)?;
        }
    }
    for d in &config.devices {
        absolute_clean_path(&what("device container_path"), &d.container_path)?;
        absolute_clean_path(&what("device host_path"), &d.host_path)?;
    }
    for p in config
        .security
        .masked_paths
        .iter()
        .chain(&config.security.readonly_paths)
    {
        absolute_clean_path(&what("masked or read-only path"), p)?;
    }
    labels(&what("labels"), &config.labels)?;
    labels(&what("annotations"), &config.annotations)?;
    resources(&what("resources"), &config.resources)?;
    if let Some(path) = config
        .annotations
        .get(TERMINATION_MESSAGE_PATH_ANNOTATION)
        .filter(|p| !p.is_empty())
    {
        absolute_clean_path(&what("termination message path"), path)?;
    }
    Ok(())
}

/// Checks the cgroup resources `what` (a container's, at creation or in
/// UpdateContainerResources): hugepage sizes as the runtimes name them
/// (`2MB`, `1GB`, `64KB`) and `unified` keys that are one cgroup file's
/// name (`memory.high`) — both become file names in the container's
/// cgroup, so neither may hold a path.
pub fn resources(what: &str, r: &Resources) -> Result<()> {
    for (size, _) in &r.hugepage_limits {
        let ok = (3..=16).contains(&size.len()) && {
            // Bytes, not chars: a size may be any text (never a panic).
            let (n, unit) = size.as_bytes().split_at(size.len() - 2);
            !n.is_empty()
                && n.iter().all(u8::is_ascii_digit)
                && matches!(unit, b"KB" | b"MB" | b"GB")
        };
        if !ok {
            return Err(invalid(
                format!("{what} hugepage page_size {size:?}"),
                "must be a page size such as 2MB, 1GB or 64KB",
            ));
        }
    }
    for (key, value) in &r.unified {
        let (controller, file) = key.split_once('.').unwrap_or(("", ""));
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        };
        if key.len() > MAX_FILE_NAME
            || !part_ok(controller)
            || !part_ok(file)
            || controller.contains('.')
        {
            return Err(invalid(
                format!("{what} unified key {key:?}"),
                "must name one cgroup v2 file, such as memory.high",
            ));
        }
        if value.contains('\0') || value.len() > MAX_PATH {
            return Err(invalid(
                format!("{what} unified {key}"),
                format!("must be at most {MAX_PATH} bytes without NUL"),
            ));
        }
    }
    Ok(())
}

/// Checks the command of an Exec or ExecSync in `container`: not empty,
/// within the command limits, no NUL (execve cannot pass one).
pub fn exec_command(container: &str, cmd: &[String]) -> Result<()> {
    let what = format!("exec in container {container:?}: cmd");
    if cmd.is_empty() {
        return Err(invalid(what, "is empty"));
    }
    let bytes = cmd.iter().fold(0usize, |b, a| b.saturating_add(a.len()));
    if cmd.len() > MAX_ARGS || bytes > MAX_ARG_BYTES {
        return Err(invalid(
            what,
            format!(
                "{} entries, {bytes} bytes (at most {MAX_ARGS} entries, {MAX_ARG_BYTES} bytes)",
                cmd.len()
            ),
        ));
    }
    for (i, a) in cmd.iter().enumerate() {
        no_nul(&format!("{what}[{i}]"), a)?;
        if a.len() >= MAX_ARG_STRLEN {
            return Err(invalid(
                format!("{what}[{i}]"),
                format!(
                    "is {} bytes (the kernel takes at most {} a string)",
                    a.len(),
                    MAX_ARG_STRLEN - 1
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::container::{Device, Mount};
    use crate::records::pod::DnsConfig;

    fn pod_ok() -> PodConfig {
        PodConfig {
            name: "web".into(),
            namespace: "default".into(),
            uid: "0b1e5c1e-uid".into(),
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_0b1e".into(),
            ..Default::default()
        }
    }

    fn ctr_ok() -> ContainerConfig {
        ContainerConfig {
            name: "app".into(),
            image: "busybox".into(),
            log_path: "app/0.log".into(),
            command: vec!["sh".into()],
            working_dir: "/srv".into(),
            envs: vec![("A".into(), "b=c".into())],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/kubelet/pods/x/volumes/data".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn rejects(e: Result<()>, says: &str) {
        let e = e.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains(says), "{e} should say {says:?}");
    }

    #[test]
    fn good_requests_pass() {
        pod(&pod_ok()).unwrap();
        container(&ctr_ok()).unwrap();
    }

    #[test]
    fn pod_names_and_paths_are_checked() {
        let mut p = pod_ok();
        p.name = "a/b".into();
        rejects(pod(&p), "metadata.name");
        let mut p = pod_ok();
        p.namespace = "x".repeat(254);
        rejects(pod(&p), "metadata.namespace");
        let mut p = pod_ok();
        p.uid = "u\nid".into();
        rejects(pod(&p), "metadata.uid");
        let mut p = pod_ok();
        p.log_directory = "relative/logs".into();
        rejects(pod(&p), "log_directory");
        let mut p = pod_ok();
        p.log_directory = "/var/log/pods/../../etc".into();
        rejects(pod(&p), "log_directory");
        let mut p = pod_ok();
        p.hostname = "evil\n10.0.0.1 kubernetes".into();
        rejects(pod(&p), "hostname");
        let mut p = pod_ok();
        p.dns = Some(DnsConfig {
            searches: vec!["svc.local\nnameserver 6.6.6.6".into()],
            ..Default::default()
        });
        rejects(pod(&p), "DNS search domain");
        let mut p = pod_ok();
        p.annotations
            .insert("big".into(), "x".repeat(MAX_LABEL_BYTES));
        rejects(pod(&p), "annotations");
    }

    #[test]
    fn container_paths_cannot_escape() {
        for (log_path, says) in [
            ("../../../etc/cron.d/x", "log_path"),
            ("app/../../x.log", "log_path"),
            ("/etc/passwd", "relative"),
        ] {
            let mut c = ctr_ok();
            c.log_path = log_path.into();
            rejects(container(&c), says);
        }
        let mut c = ctr_ok();
        c.mounts[0].container_path = "/data/../../etc".into();
        rejects(container(&c), "container_path");
        let mut c = ctr_ok();
        c.mounts[0].container_path = "data".into();
        rejects(container(&c), "absolute");
        let mut c = ctr_ok();
        c.mounts[0].host_path = "/var/lib/../../etc".into();
        rejects(container(&c), "host_path");
        let mut c = ctr_ok();
        c.devices.push(Device {
            container_path: "/dev/../etc/x".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        });
        rejects(container(&c), "device container_path");
        let mut c = ctr_ok();
        c.working_dir = "srv".into();
        rejects(container(&c), "working_dir");
        let mut c = ctr_ok();
        c.annotations.insert(
            TERMINATION_MESSAGE_PATH_ANNOTATION.into(),
            "/dev/../etc/shadow".into(),
        );
        rejects(container(&c), "termination message path");
    }

    #[test]
    fn strings_and_names_longer_than_the_kernel_takes_are_refused() {
        let at_most = MAX_ARG_STRLEN - 1;
        let mut c = ctr_ok();
        c.args = vec!["echo".into(), "x".repeat(at_most)];
        container(&c).unwrap();
        c.args[1].push('x');
        rejects(container(&c), "args[1]: is 131072 bytes");
        let mut c = ctr_ok();
        c.envs = vec![("K".into(), "v".repeat(at_most - 2))];
        container(&c).unwrap();
        c.envs[0].1.push('v');
        rejects(container(&c), "env K: is 131072 bytes");
        let mut c = ctr_ok();
        c.log_path = format!("app/{}.log", "l".repeat(MAX_FILE_NAME - 4));
        container(&c).unwrap();
        c.log_path = format!("app/{}.log", "l".repeat(MAX_FILE_NAME));
        rejects(container(&c), "log_path: has a component of 259 bytes");
        let mut c = ctr_ok();
        c.mounts[0].container_path = format!("/{}", "m".repeat(256));
        rejects(container(&c), "container_path");
    }

    #[test]
    fn oversize_and_malformed_container_inputs_are_refused() {
        let mut c = ctr_ok();
        c.args = vec!["x".repeat(1024); 1025];
        rejects(container(&c), "command and args");
        let mut c = ctr_ok();
        c.envs = (0..=MAX_ENVS)
            .map(|i| (format!("K{i}"), String::new()))
            .collect();
        rejects(container(&c), "envs");
        let mut c = ctr_ok();
        c.envs = vec![("A=B".into(), "c".into())];
        rejects(container(&c), "env key");
        let mut c = ctr_ok();
        c.args = vec!["a\0b".into()];
        rejects(container(&c), "NUL");
        let mut c = ctr_ok();
        c.labels.insert(String::new(), "v".into());
        rejects(container(&c), "empty key");
        let mut c = ctr_ok();
        c.mounts = vec![c.mounts[0].clone(); MAX_MOUNTS + 1];
        rejects(container(&c), "mounts");
    }

    #[test]
    fn resources_cannot_name_files_outside_the_cgroup() {
        let with = |f: &dyn Fn(&mut Resources)| {
            let mut c = ctr_ok();
            f(&mut c.resources);
            container(&c)
        };
        with(&|r| {
            r.hugepage_limits = vec![("2MB".into(), 1 << 21), ("1GB".into(), 0)];
            r.unified.insert("memory.high".into(), "max".into());
            r.unified.insert("io.bfq.weight".into(), "100".into());
        })
        .unwrap();
        for size in [
            "../../x",
            "2MB/../..",
            "MB",
            "2mb",
            "2M",
            "",
            "99999999999999999MB",
        ] {
            rejects(
                with(&|r| r.hugepage_limits = vec![(size.into(), 1)]),
                "page_size",
            );
        }
        for key in [
            "../cgroup.procs",
            "memory",
            ".high",
            "memory.",
            "a/b.c",
            "x.y\0",
            "cpu max",
        ] {
            rejects(
                with(&|r| {
                    r.unified.insert(key.into(), "1".into());
                }),
                "unified key",
            );
        }
        rejects(
            with(&|r| {
                r.unified.insert("memory.high".into(), "1\0".into());
            }),
            "without NUL",
        );
    }

    #[test]
    fn exec_commands_are_checked() {
        exec_command("c1", &["sh".into(), "-c".into(), "true".into()]).unwrap();
        rejects(
            exec_command("c1", &["echo".into(), "x".repeat(MAX_ARG_STRLEN)]),
            "cmd[1]: is 131072 bytes",
        );
        rejects(exec_command("c1", &[]), "is empty");
        rejects(
            exec_command("c1", &["sh".into(), "a\0b".into()]),
            "exec in container \"c1\": cmd[1]: holds a NUL byte",
        );
        rejects(
            exec_command("c1", &vec!["x".repeat(1024); 1025]),
            "1025 entries, 1049600 bytes",
        );
    }

    #[test]
    fn nul_bytes_in_labels_and_annotations_are_refused() {
        let mut p = pod_ok();
        p.annotations.insert("a\0b".into(), "v".into());
        rejects(
            pod(&p),
            "pod sandbox annotations key \"a\\0b\": holds a NUL byte",
        );
        let mut p = pod_ok();
        p.annotations.insert("k".into(), "v\0".into());
        rejects(pod(&p), "pod sandbox annotations value of \"k\"");
        let mut p = pod_ok();
        p.labels.insert("l".into(), "\0".into());
        rejects(pod(&p), "pod sandbox labels value of \"l\"");
        let mut c = ctr_ok();
        c.annotations.insert("x\0".into(), String::new());
        rejects(container(&c), "annotations key");
        let mut c = ctr_ok();
        c.labels
            .insert("io.kubernetes.pod.name".into(), "web\0".into());
        rejects(container(&c), "labels value of \"io.kubernetes.pod.name\"");
    }
}
