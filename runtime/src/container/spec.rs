//! The OCI runtime spec (config.json) of a container: the CRI config
//! merged with the image config and placed in its pod's namespaces.
//!
//! Pure: everything it needs from the system comes in [`SpecInput`], so
//! the rules are unit-tested without root.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxSeccomp, Mount, MountBuilder,
    PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

mod capabilities;
mod resources;

pub use capabilities::{capabilities, capabilities_in_mask};
pub use resources::linux_resources;

use super::devices::DeviceNode;
use super::{ContainerConfig, Identity, Propagation, SecurityProfile, seccomp};
use crate::error::{Error, Result};
use crate::image::ImageConfig;
use crate::records::pod::NamespaceKind;
use crate::records::pod::{NamespaceMode, Sandbox};

/// PATH when the image sets none (containerd's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths hidden from containers (containerd's defaults).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths containers see read-only (containerd's defaults).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the spec is built from.
#[derive(Debug)]
pub struct SpecInput<'a> {
    /// The container's CRI config.
    pub config: &'a ContainerConfig,
    /// The image's config.
    pub image: &'a ImageConfig,
    /// Its pod.
    pub sandbox: &'a Sandbox,
    /// The resolved user.
    pub identity: &'a Identity,
    /// cgroupfs path of the container.
    pub cgroups_path: String,
    /// The daemon's own oom_score_adj: the container's cannot go lower
    /// (root here lacks CAP_SYS_RESOURCE), so requests are clamped to it.
    pub min_oom_score_adj: i32,
    /// Whether to give the container its own cgroup namespace (cgroup v2
    /// hosts). Also says whether `unified` resources can be applied.
    pub cgroup_namespace: bool,
    /// The PID namespace of another container to join (CRI PID mode
    /// TARGET), as a `/proc/<pid>/ns/pid` path; `None` follows the pod.
    pub pid_target: Option<PathBuf>,
    /// Device nodes: those the config names, resolved on the host, and
    /// for a privileged container the host's.
    pub devices: &'a [DeviceNode],
    /// The Localhost seccomp profile, read from its file.
    pub seccomp_profile: Option<&'a LinuxSeccomp>,
    /// The AppArmor profile to run under, resolved by
    /// [`apparmor_profile`].
    pub apparmor_profile: Option<String>,
    /// Resource limits of the process (`runtime.default_ulimits`).
    pub rlimits: &'a [Rlimit],
    /// The pids limit of every container (`runtime.pids_limit`); 0 or
    /// less means none.
    pub pids_limit: i64,
    /// The capabilities crius itself may hand out (its bounding set; root
    /// here lacks CAP_SYS_RESOURCE): "ALL" and privileged mean these, and
    /// a capability outside them is left out, or the runtime would fail.
    pub available_capabilities: Option<&'a Capabilities>,
    /// Copies crius made of some of the config's mounts (by index in
    /// `config.mounts`), mounted instead of their host paths: the
    /// recursively read-only ones (see `staged`).
    pub staged_mounts: &'a BTreeMap<usize, PathBuf>,
}

/// One resource limit of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// The limit, e.g. `RLIMIT_NOFILE`.
    pub typ: PosixRlimitType,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Parses `name=soft:hard` (or `name=both`) as in CRI-O's
/// `default_ulimits`: `nofile=1024:4096`, `nproc=4096`.
pub fn parse_ulimit(s: &str) -> Result<Rlimit> {
    let bad = |why: &str| Error::InvalidArgument(format!("ulimit {s:?}: {why}"));
    let (name, values) = s.split_once('=').ok_or_else(|| bad("not name=soft:hard"))?;
    let typ = PosixRlimitType::from_str(&format!("RLIMIT_{}", name.trim().to_ascii_uppercase()))
        .map_err(|_| bad("unknown limit name"))?;
    let parse = |v: &str| match v.trim() {
        "-1" | "unlimited" => Ok(u64::MAX),
        v => v.parse::<u64>().map_err(|_| bad("limits must be numbers")),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (parse(soft)?, parse(hard)?),
        None => (parse(values)?, parse(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard one"));
    }
    Ok(Rlimit { typ, soft, hard })
}

/// The AppArmor profile for a requested one: `None` for unconfined. On a
/// kernel without AppArmor the default means none and a named profile is
/// an error; with AppArmor, the default is crius's profile, which must be
/// loaded (`loaded`; creation loads it first), and a named profile must be
/// loaded too.
pub fn apparmor_profile(
    requested: &SecurityProfile,
    privileged: bool,
    enabled: bool,
    loaded: impl Fn(&str) -> bool,
) -> Result<Option<String>> {
    match requested {
        SecurityProfile::Unconfined => Ok(None),
        _ if privileged => Ok(None),
        SecurityProfile::RuntimeDefault if !enabled => Ok(None),
        SecurityProfile::RuntimeDefault if !loaded(APPARMOR_DEFAULT) => {
            Err(Error::FailedPrecondition(format!(
                "AppArmor profile {APPARMOR_DEFAULT} (RuntimeDefault) is not loaded on this node"
            )))
        }
        SecurityProfile::RuntimeDefault => Ok(Some(APPARMOR_DEFAULT.to_string())),
        SecurityProfile::Localhost(name) if !enabled => Err(Error::InvalidArgument(format!(
            "AppArmor profile {name:?} requested, but this node's kernel has no AppArmor"
        ))),
        SecurityProfile::Localhost(name) => {
            let name = name.strip_prefix("localhost/").unwrap_or(name);
            if name.is_empty() || !loaded(name) {
                return Err(Error::InvalidArgument(format!(
                    "AppArmor profile {name:?} is not loaded on this node"
                )));
            }
            Ok(Some(name.to_string()))
        }
    }
}

/// The AppArmor profile RuntimeDefault means.
pub const APPARMOR_DEFAULT: &str = super::apparmor::DEFAULT_PROFILE;

/// The process's argv: Kubernetes' rules for merging command/args with
/// the image's Entrypoint/Cmd.
pub fn command_line(config: &ContainerConfig, image: &ImageConfig) -> Result<Vec<String>> {
    let argv: Vec<String> = if !config.command.is_empty() {
        config.command.iter().chain(&config.args).cloned().collect()
    } else if !config.args.is_empty() {
        image
            .entrypoint
            .iter()
            .chain(&config.args)
            .cloned()
            .collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container {:?}: no command given and the image has no Entrypoint or Cmd",
            config.name
        )));
    }
    Ok(argv)
}

/// The environment: a default PATH and HOSTNAME, then the image's, then the
/// config's; a later value replaces an earlier one of the same name, in
/// place. A container with a terminal gets `TERM=xterm` if neither names
/// a TERM (as containerd and Docker do), so curses programs work.
pub fn environment(config: &ContainerConfig, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = vec![DEFAULT_PATH.to_string(), format!("HOSTNAME={hostname}")];
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or_default().to_string();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    };
    for e in &image.env {
        set(e.clone());
    }
    for (k, v) in &config.envs {
        set(format!("{k}={v}"));
    }
    with_term(&mut env, config.tty);
    env
}

/// Adds `TERM=xterm` to `env` for a process with a terminal whose
/// environment names no TERM.
pub fn with_term(env: &mut Vec<String>, terminal: bool) {
    if terminal && !env.iter().any(|e| e.split('=').next() == Some("TERM")) {
        env.push("TERM=xterm".into());
    }
}

fn bind(destination: &str, source: &Path, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)
}

fn spec_error(e: oci_spec::OciSpecError) -> Error {
    Error::Internal(format!("build OCI spec: {e}"))
}

/// The mounts: the standard kernel filesystems, the pod's files and shm,
/// then the CRI bind mounts, which win over anything at the same place.
fn mounts(input: &SpecInput<'_>) -> Result<Vec<Mount>> {
    let config = input.config;
    let user_destinations: HashSet<&str> = config
        .mounts
        .iter()
        .map(|m| m.container_path.trim_end_matches('/'))
        .collect();
    let free = |dest: &str| !user_destinations.contains(dest);
    // A privileged container may write the kernel's files.
    let sys_mode = if config.security.privileged {
        "rw"
    } else {
        "ro"
    };
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
    ];
    out.retain(|m| free(&m.destination().to_string_lossy()));
    if free("/dev/shm") {
        let host_ipc = input.sandbox.config.namespaces.ipc == NamespaceMode::Node;
        out.push(match &input.sandbox.shm {
            Some(shm) => bind(
                "/dev/shm",
                shm,
                &["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"],
            )?,
            // In the node's IPC namespace, the node's POSIX shared memory.
            None if host_ipc => bind(
                "/dev/shm",
                Path::new("/dev/shm"),
                &["rbind", "rprivate", "rw"],
            )?,
            None => mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            )?,
        });
    }
    let files_mode = if config.security.readonly_rootfs {
        "ro"
    } else {
        "rw"
    };
    for name in ["hostname", "hosts", "resolv.conf"] {
        let dest = format!("/etc/{name}");
        if free(&dest) {
            out.push(bind(
                &dest,
                &input.sandbox.files_dir.join(name),
                &["rbind", "rprivate", files_mode],
            )?);
        }
    }
    for (i, m) in config.mounts.iter().enumerate() {
        check_recursive_read_only(m)?;
        let propagation = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => "rslave",
            Propagation::Bidirectional => "rshared",
        };
        let mode = if m.readonly { "ro" } else { "rw" };
        // A staged copy is already read-only all the way down, and a bind
        // mount keeps the flags of every mount it copies.
        let source = input
            .staged_mounts
            .get(&i)
            .map_or(Path::new(&m.host_path), PathBuf::as_path);
        out.push(bind(
            &m.container_path,
            source,
            &["rbind", propagation, mode],
        )?);
    }
    Ok(out)
}

/// The rules for a recursively read-only mount (kubelet's and
/// containerd's): it must be read-only, and private, since a mount
/// propagated in later would not be read-only.
pub fn check_recursive_read_only(m: &super::Mount) -> Result<()> {
    if !m.recursive_read_only {
        return Ok(());
    }
    if !m.readonly {
        return Err(Error::InvalidArgument(format!(
            "mount {}: recursive_read_only needs readonly to be set too",
            m.container_path
        )));
    }
    if m.propagation != Propagation::Private {
        return Err(Error::InvalidArgument(format!(
            "mount {}: recursive_read_only needs propagation PRIVATE, not {:?}",
            m.container_path, m.propagation
        )));
    }
    Ok(())
}

/// The propagation of the container's root mount: mounts shared with the
/// host (Bidirectional) need the root rshared, mounts that receive from it
/// (HostToContainer) need it at least rslave, else runc's default (rprivate)
/// cuts them off.
fn rootfs_propagation(config: &ContainerConfig) -> Option<String> {
    let has = |p| config.mounts.iter().any(|m| m.propagation == p);
    if has(Propagation::Bidirectional) {
        Some("rshared".into())
    } else if has(Propagation::HostToContainer) {
        Some("rslave".into())
    } else {
        None
    }
}

fn namespace(typ: LinuxNamespaceType, path: Option<&PathBuf>) -> Result<LinuxNamespace> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p.clone());
    }
    b.build().map_err(spec_error)
}

/// The namespaces: the pod's network, IPC and UTS (by pinned path, or the
/// host's when the pod uses the node's), a new mount namespace, and a PID
/// namespace: a target container's (TARGET), the pod's (POD, held by its
/// infra process), none (NODE) or a new one (CONTAINER).
fn namespaces(input: &SpecInput<'_>) -> Result<Vec<LinuxNamespace>> {
    let sb = input.sandbox;
    let mut out = vec![namespace(LinuxNamespaceType::Mount, None)?];
    // The pod's user namespace, which owns its other namespaces.
    if let Some(path) = sb.namespace(NamespaceKind::User) {
        out.push(namespace(LinuxNamespaceType::User, Some(path))?);
    }
    match (&input.pid_target, sb.namespace(NamespaceKind::Pid)) {
        (Some(target), _) => out.push(namespace(LinuxNamespaceType::Pid, Some(target))?),
        (None, Some(pod)) => out.push(namespace(LinuxNamespaceType::Pid, Some(pod))?),
        // Records of older versions have no pod PID namespace even in
        // mode POD: those pods get one per container, as they did.
        (None, None) if sb.config.namespaces.pid == NamespaceMode::Node => {}
        (None, None) => out.push(namespace(LinuxNamespaceType::Pid, None)?),
    }
    for (kind, typ) in [
        (NamespaceKind::Net, LinuxNamespaceType::Network),
        (NamespaceKind::Ipc, LinuxNamespaceType::Ipc),
        (NamespaceKind::Uts, LinuxNamespaceType::Uts),
    ] {
        if let Some(path) = sb.namespace(kind) {
            out.push(namespace(typ, Some(path))?);
        }
    }
    if input.cgroup_namespace {
        out.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(out)
}

fn device_type(kind: char) -> LinuxDeviceType {
    match kind {
        'b' => LinuxDeviceType::B,
        'c' => LinuxDeviceType::C,
        'p' => LinuxDeviceType::P,
        _ => LinuxDeviceType::A,
    }
}

/// The device cgroup rules: deny everything, then allow what runc's
/// default set and the given devices need; a privileged container may use
/// every device.
fn device_rules(input: &SpecInput<'_>) -> Result<Vec<LinuxDeviceCgroup>> {
    let rule =
        |allow: bool, kind: Option<char>, major: Option<i64>, minor: Option<i64>, access: &str| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .access(access);
            if let Some(k) = kind {
                b = b.typ(device_type(k));
            }
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            b.build().map_err(spec_error)
        };
    if input.config.security.privileged {
        return Ok(vec![rule(true, None, None, None, "rwm")?]);
    }
    let mut rules = vec![rule(false, None, None, None, "rwm")?];
    for d in input.devices {
        rules.push(rule(
            true,
            Some(d.kind),
            Some(d.major),
            Some(d.minor),
            &d.access,
        )?);
    }
    Ok(rules)
}

/// Builds the container's OCI spec, its root being `rootfs` relative to the
/// bundle.
pub fn build(input: &SpecInput<'_>) -> Result<Spec> {
    let config = input.config;
    let image = input.image;
    let sc = &config.security;
    let mut caps = if sc.privileged {
        capabilities(&["ALL".to_string()], &[])?
    } else {
        capabilities(&sc.add_capabilities, &sc.drop_capabilities)?
    };
    if let Some(available) = input.available_capabilities {
        caps.retain(|c| available.contains(c));
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else if !image.working_dir.is_empty() {
        image.working_dir.clone()
    } else {
        "/".to_string()
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "container {:?}: working directory {cwd:?} is not absolute",
            config.name
        )));
    }
    let oom = config
        .resources
        .oom_score_adj
        .clamp(i64::from(input.min_oom_score_adj), 1000) as i32;
    let user = UserBuilder::default()
        .uid(input.identity.uid)
        .gid(input.identity.gid)
        .additional_gids(input.identity.additional_gids.clone())
        .build()
        .map_err(spec_error)?;
    let rlimits = input
        .rlimits
        .iter()
        .map(|r| {
            PosixRlimitBuilder::default()
                .typ(r.typ)
                .soft(r.soft)
                .hard(r.hard)
                .build()
                .map_err(spec_error)
        })
        .collect::<Result<Vec<PosixRlimit>>>()?;
    let mut process = ProcessBuilder::default()
        .terminal(config.tty)
        .args(command_line(config, image)?)
        .env(environment(config, image, &input.sandbox.hostname))
        .cwd(cwd)
        .user(user)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                // The builder's defaults would give every process, root
                // or not, ambient capabilities; none are inherited, as
                // with containerd since CVE-2022-24769.
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()
                .map_err(spec_error)?,
        )
        .no_new_privileges(sc.no_new_privs)
        .oom_score_adj(oom)
        .rlimits(rlimits)
        .build()
        .map_err(spec_error)?;
    process.set_apparmor_profile(input.apparmor_profile.clone());

    let mut resources =
        linux_resources(&config.resources, input.pids_limit, input.cgroup_namespace)?;
    resources.set_devices(Some(device_rules(input)?));
    let devices = input
        .devices
        .iter()
        .map(|d| {
            LinuxDeviceBuilder::default()
                .path(d.path.clone())
                .typ(device_type(d.kind))
                .major(d.major)
                .minor(d.minor)
                .file_mode(d.mode)
                .uid(d.uid)
                .gid(d.gid)
                .build()
                .map_err(spec_error)
        })
        .collect::<Result<Vec<_>>>()?;
    let seccomp = match (&sc.seccomp, sc.privileged) {
        (_, true) | (SecurityProfile::Unconfined, _) => None,
        (SecurityProfile::RuntimeDefault, _) => {
            let caps: Vec<Capability> = caps.iter().copied().collect();
            Some(seccomp::default_profile(&caps)?)
        }
        (SecurityProfile::Localhost(path), _) => Some(
            input
                .seccomp_profile
                .cloned()
                .ok_or_else(|| Error::Internal(format!("seccomp profile {path} was not read")))?,
        ),
    };
    let (masked, readonly): (Vec<String>, Vec<String>) = if sc.privileged {
        (Vec::new(), Vec::new())
    } else {
        let or_default = |given: &[String], default: &[&str]| {
            if given.is_empty() {
                default.iter().map(|s| s.to_string()).collect()
            } else {
                given.to_vec()
            }
        };
        (
            or_default(&sc.masked_paths, MASKED_PATHS),
            or_default(&sc.readonly_paths, READONLY_PATHS),
        )
    };
    let mut linux = LinuxBuilder::default()
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(resources)
        .namespaces(namespaces(input)?)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .devices(devices)
        .build()
        .map_err(spec_error)?;
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(rootfs_propagation(config));
    if let Some(userns) = &input.sandbox.config.user_namespace {
        // The runtime joins the pod's user namespace by path; runc checks
        // that the mappings given match it.
        let maps = |m: &[crate::records::pod::IdMapping]| {
            m.iter()
                .map(|m| {
                    LinuxIdMappingBuilder::default()
                        .container_id(m.container_id)
                        .host_id(m.host_id)
                        .size(m.length)
                        .build()
                        .map_err(spec_error)
                })
                .collect::<Result<Vec<_>>>()
        };
        linux.set_uid_mappings(Some(maps(&userns.uids)?));
        linux.set_gid_mappings(Some(maps(&userns.gids)?));
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(sc.readonly_rootfs)
                .build()
                .map_err(spec_error)?,
        )
        .process(process)
        .mounts(mounts(input)?)
        .linux(linux)
        .annotations(
            config
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .map_err(spec_error)?;
    // The builder's default hostname is not ours: name the pod's UTS
    // namespace, or none when the container is in the node's.
    spec.set_hostname(
        input
            .sandbox
            .namespace(NamespaceKind::Uts)
            .map(|_| input.sandbox.hostname.clone()),
    );
    Ok(spec)
}

#[cfg(test)]
mod tests;
