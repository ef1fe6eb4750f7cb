//! The OCI runtime spec (config.json) of a container: the CRI config
//! merged with the image config and placed in its pod's namespaces.
//!
//! Pure: everything it needs from the system comes in [`SpecInput`], so
//! the rules are unit-tested without root.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxHugepageLimitBuilder, LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::devices::DeviceNode;
use super::user::Identity;
use super::{ContainerConfig, Propagation, Resources, SecurityProfile, seccomp};
use crate::error::{Error, Result};
use crate::image::ImageConfig;
use crate::sandbox::NamespaceKind;
use crate::sandbox::{NamespaceMode, Sandbox};

/// PATH when the image sets none (containerd's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities a container gets by default (containerd's and Docker's
/// set).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability the kernel knows, in number order (for "ALL").
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

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

/// The capabilities whose bits are set in a `CapBnd`-style mask.
pub fn capabilities_in_mask(mask: u64) -> Capabilities {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .filter_map(|(_, name)| capability(name).ok())
        .collect()
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
/// an error; with AppArmor, the default is crius's profile when it is
/// loaded (`loaded`), else none.
pub fn apparmor_profile(
    requested: &SecurityProfile,
    privileged: bool,
    enabled: bool,
    loaded: impl Fn(&str) -> bool,
) -> Result<Option<String>> {
    match requested {
        SecurityProfile::Unconfined => Ok(None),
        _ if privileged => Ok(None),
        SecurityProfile::RuntimeDefault => {
            Ok((enabled && loaded(APPARMOR_DEFAULT)).then(|| APPARMOR_DEFAULT.to_string()))
        }
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

/// The AppArmor profile RuntimeDefault means, when an operator has loaded
/// it.
pub const APPARMOR_DEFAULT: &str = "crius-default";

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
/// place.
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
    env
}

/// Parses a capability name as CRI gives it ("NET_ADMIN", "CAP_NET_ADMIN").
fn capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| Error::InvalidArgument(format!("unknown capability {name:?}")))
}

/// The capability set: the defaults, plus adds, minus drops ("ALL" on
/// either side as the CRI defines it).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Capabilities> {
    let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: Capabilities = if is_all(add) {
        ALL_CAPABILITIES
            .iter()
            .map(|c| capability(c))
            .collect::<Result<_>>()?
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| capability(c))
            .collect::<Result<_>>()?
    };
    if is_all(drop) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        caps.insert(capability(c)?);
    }
    for c in drop.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        caps.remove(&capability(c)?);
    }
    Ok(caps)
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

/// The cgroup resources of a container: CPU, memory, hugepages, pids and
/// `unified`. Also what UpdateContainerResources hands the OCI runtime.
/// `unified` is refused on cgroup v1 hosts (`cgroup_v2` false), where the
/// runtime could not apply it.
pub fn linux_resources(r: &Resources, pids_limit: i64, cgroup_v2: bool) -> Result<LinuxResources> {
    let mut cpu = LinuxCpuBuilder::default();
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares as u64);
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
    }
    if r.cpu_period > 0 {
        cpu = cpu.period(r.cpu_period as u64);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
    }
    let mut memory = LinuxMemoryBuilder::default();
    if r.memory_limit > 0 {
        memory = memory.limit(r.memory_limit);
    }
    if r.memory_swap_limit > 0 {
        memory = memory.swap(r.memory_swap_limit);
    }
    let mut b = LinuxResourcesBuilder::default()
        .cpu(cpu.build().map_err(spec_error)?)
        .memory(memory.build().map_err(spec_error)?);
    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|(size, limit)| {
                let limit = i64::try_from(*limit).map_err(|_| {
                    Error::InvalidArgument(format!("hugepage limit {limit} is out of range"))
                })?;
                LinuxHugepageLimitBuilder::default()
                    .page_size(size.clone())
                    .limit(limit)
                    .build()
                    .map_err(spec_error)
            })
            .collect::<Result<Vec<_>>>()?;
        b = b.hugepage_limits(limits);
    }
    if pids_limit > 0 {
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(pids_limit)
                .build()
                .map_err(spec_error)?,
        );
    }
    if !r.unified.is_empty() {
        if !cgroup_v2 {
            return Err(Error::InvalidArgument(format!(
                "unified (cgroup v2) resources {:?} given, but this node runs cgroup v1",
                r.unified.keys().collect::<Vec<_>>()
            )));
        }
        b = b.unified(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    b.build().map_err(spec_error)
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
        let maps = |m: &[crate::sandbox::IdMapping]| {
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
mod tests {
    use super::*;
    use crate::container::devices::DeviceNode;
    use crate::container::{Mount as CriMount, SecurityContext};
    use crate::sandbox::{PodConfig, SandboxState};
    use std::collections::BTreeMap;

    fn sandbox() -> Sandbox {
        Sandbox {
            id: "p1".into(),
            config: PodConfig::default(),
            state: SandboxState::Ready,
            created_at: 1,
            ips: vec!["10.0.0.2".into()],
            runtime_handler: "runc".into(),
            namespaces: BTreeMap::from([
                (
                    NamespaceKind::Net,
                    PathBuf::from("/run/crius/pods/p1/ns/net"),
                ),
                (
                    NamespaceKind::Ipc,
                    PathBuf::from("/run/crius/pods/p1/ns/ipc"),
                ),
                (
                    NamespaceKind::Uts,
                    PathBuf::from("/run/crius/pods/p1/ns/uts"),
                ),
            ]),
            shm: Some(PathBuf::from("/run/crius/pods/p1/shm")),
            files_dir: PathBuf::from("/var/lib/crius/pods/p1"),
            cgroup_parent: "/crius".into(),
            hostname: "pod-host".into(),
            ..Default::default()
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default-arg".into()],
            env: vec!["PATH=/bin".into(), "A=image".into(), "B=image".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        }
    }

    #[test]
    fn command_merging_follows_kubernetes() {
        let img = image();
        let mut c = ContainerConfig::default();
        assert_eq!(command_line(&c, &img).unwrap(), ["/entry", "default-arg"]);
        c.args = vec!["x".into()];
        assert_eq!(command_line(&c, &img).unwrap(), ["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        assert_eq!(command_line(&c, &img).unwrap(), ["/bin/sh", "x"]);
        c.args.clear();
        assert_eq!(command_line(&c, &img).unwrap(), ["/bin/sh"]);
        let e = command_line(&ContainerConfig::default(), &ImageConfig::default()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
    }

    #[test]
    fn config_env_wins_over_image_env_in_place() {
        let c = ContainerConfig {
            envs: vec![("B".into(), "config".into()), ("C".into(), "c".into())],
            ..Default::default()
        };
        assert_eq!(
            environment(&c, &image(), "h"),
            ["PATH=/bin", "HOSTNAME=h", "A=image", "B=config", "C=c"]
        );
    }

    #[test]
    fn capabilities_add_drop_all() {
        let caps = capabilities(&[], &[]).unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        let caps = capabilities(&["CAP_NET_ADMIN".into()], &["KILL".into()]).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Kill));
        let caps = capabilities(&["NET_RAW".into()], &["ALL".into()]).unwrap();
        assert_eq!(caps.into_iter().collect::<Vec<_>>(), [Capability::NetRaw]);
        let caps = capabilities(&["ALL".into()], &[]).unwrap();
        assert_eq!(caps.len(), ALL_CAPABILITIES.len());
        assert!(capabilities(&["NOT_A_CAP".into()], &[]).is_err());
    }

    fn build_with(config: &ContainerConfig, sandbox: &Sandbox, min_oom: i32) -> Spec {
        let img = image();
        let id = Identity {
            uid: 33,
            gid: 44,
            additional_gids: vec![5],
        };
        build(&SpecInput {
            config,
            image: &img,
            sandbox,
            identity: &id,
            cgroups_path: "/crius/c1".into(),
            min_oom_score_adj: min_oom,
            cgroup_namespace: false,
            pid_target: None,
            devices: &[],
            seccomp_profile: None,
            apparmor_profile: None,
            rlimits: &[],
            pids_limit: 0,
            available_capabilities: None,
            staged_mounts: &BTreeMap::new(),
        })
        .unwrap()
    }

    fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
        spec.linux().as_ref().unwrap()
    }

    fn mount_options(spec: &Spec, dest: &str) -> Vec<String> {
        spec.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap()
            .options()
            .clone()
            .unwrap()
    }

    #[test]
    fn defaults_mask_paths_and_are_unconfined_without_a_profile() {
        let spec = build_with(&ContainerConfig::default(), &sandbox(), 0);
        let l = linux(&spec);
        assert_eq!(l.masked_paths().as_ref().unwrap().len(), MASKED_PATHS.len());
        assert_eq!(
            l.readonly_paths().as_ref().unwrap().len(),
            READONLY_PATHS.len()
        );
        assert!(l.seccomp().is_none());
        assert!(mount_options(&spec, "/sys").contains(&"ro".to_string()));
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(!rules[0].allow());
    }

    #[test]
    fn given_masked_and_readonly_paths_replace_the_defaults() {
        let mut c = ContainerConfig::default();
        c.security.masked_paths = vec!["/proc/x".into()];
        c.security.readonly_paths = vec!["/proc/y".into()];
        let spec = build_with(&c, &sandbox(), 0);
        assert_eq!(linux(&spec).masked_paths().as_deref().unwrap(), ["/proc/x"]);
        assert_eq!(
            linux(&spec).readonly_paths().as_deref().unwrap(),
            ["/proc/y"]
        );
    }

    #[test]
    fn runtime_default_seccomp_follows_the_capabilities() {
        let mut c = ContainerConfig::default();
        c.security.seccomp = SecurityProfile::RuntimeDefault;
        let spec = build_with(&c, &sandbox(), 0);
        let seccomp = linux(&spec).seccomp().clone().unwrap();
        let allowed = seccomp.syscalls().as_ref().unwrap()[0].names().clone();
        assert!(!allowed.contains(&"mount".to_string()));
        c.security.add_capabilities = vec!["SYS_ADMIN".into()];
        let spec = build_with(&c, &sandbox(), 0);
        let seccomp = linux(&spec).seccomp().clone().unwrap();
        let allowed = seccomp.syscalls().as_ref().unwrap()[0].names().clone();
        assert!(allowed.contains(&"mount".to_string()));
    }

    #[test]
    fn a_localhost_seccomp_profile_is_used_as_read() {
        let mut c = ContainerConfig::default();
        c.security.seccomp = SecurityProfile::Localhost("/p.json".into());
        let profile: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_LOG"}"#).unwrap();
        let img = image();
        let id = Identity {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let sb = sandbox();
        let mut input = SpecInput {
            config: &c,
            image: &img,
            sandbox: &sb,
            identity: &id,
            cgroups_path: "/c".into(),
            min_oom_score_adj: 0,
            cgroup_namespace: false,
            pid_target: None,
            devices: &[],
            seccomp_profile: Some(&profile),
            apparmor_profile: Some("my-profile".into()),
            rlimits: &[],
            pids_limit: 0,
            available_capabilities: None,
            staged_mounts: &BTreeMap::new(),
        };
        let spec = build(&input).unwrap();
        assert_eq!(linux(&spec).seccomp().as_ref(), Some(&profile));
        assert_eq!(
            spec.process()
                .as_ref()
                .unwrap()
                .apparmor_profile()
                .as_deref(),
            Some("my-profile")
        );
        input.seccomp_profile = None;
        assert!(build(&input).is_err());
    }

    #[test]
    fn privileged_gets_everything_and_no_confinement() {
        let mut c = ContainerConfig::default();
        c.security.privileged = true;
        c.security.seccomp = SecurityProfile::RuntimeDefault;
        c.security.masked_paths = vec!["/proc/x".into()];
        let spec = build_with(&c, &sandbox(), 0);
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(
            caps.bounding().as_ref().unwrap().len(),
            ALL_CAPABILITIES.len()
        );
        let l = linux(&spec);
        assert!(l.seccomp().is_none());
        assert!(l.masked_paths().as_ref().unwrap().is_empty());
        assert!(l.readonly_paths().as_ref().unwrap().is_empty());
        assert!(mount_options(&spec, "/sys").contains(&"rw".to_string()));
        assert!(mount_options(&spec, "/sys/fs/cgroup").contains(&"rw".to_string()));
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert!(rules.len() == 1 && rules[0].allow());
    }

    #[test]
    fn devices_hugepages_pids_and_rlimits_land_in_the_spec() {
        let mut c = ContainerConfig::default();
        c.resources.hugepage_limits = vec![("2MB".into(), 4 << 20)];
        let nodes = [DeviceNode {
            path: "/dev/fuse".into(),
            kind: 'c',
            major: 10,
            minor: 229,
            mode: 0o666,
            uid: 0,
            gid: 0,
            access: "rw".into(),
        }];
        let rlimits = [parse_ulimit("nofile=1024:4096").unwrap()];
        let img = image();
        let sb = sandbox();
        let id = Identity {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let spec = build(&SpecInput {
            config: &c,
            image: &img,
            sandbox: &sb,
            identity: &id,
            cgroups_path: "/c".into(),
            min_oom_score_adj: 0,
            cgroup_namespace: false,
            pid_target: None,
            devices: &nodes,
            seccomp_profile: None,
            apparmor_profile: None,
            rlimits: &rlimits,
            pids_limit: 100,
            available_capabilities: None,
            staged_mounts: &BTreeMap::new(),
        })
        .unwrap();
        let l = linux(&spec);
        let dev = &l.devices().as_ref().unwrap()[0];
        assert_eq!((dev.major(), dev.minor()), (10, 229));
        let res = l.resources().as_ref().unwrap();
        let rules = res.devices().clone().unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules[1].allow() && rules[1].major() == Some(10));
        assert_eq!(rules[1].access().as_deref(), Some("rw"));
        assert_eq!(res.pids().unwrap().limit(), 100);
        let huge = &res.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((huge.page_size().as_str(), huge.limit()), ("2MB", 4 << 20));
        let rl = &spec.process().as_ref().unwrap().rlimits().clone().unwrap()[0];
        assert_eq!(
            (rl.typ(), rl.soft(), rl.hard()),
            (PosixRlimitType::RlimitNofile, 1024, 4096)
        );
    }

    #[test]
    fn capabilities_are_limited_to_what_crius_holds() {
        let available = capabilities_in_mask(0x1ff_ffff_ffff & !(1 << 24));
        assert!(!available.contains(&Capability::SysResource));
        assert!(available.contains(&Capability::CheckpointRestore));
        let mut c = ContainerConfig::default();
        c.security.privileged = true;
        let img = image();
        let sb = sandbox();
        let id = Identity {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let spec = build(&SpecInput {
            config: &c,
            image: &img,
            sandbox: &sb,
            identity: &id,
            cgroups_path: "/c".into(),
            min_oom_score_adj: 0,
            cgroup_namespace: false,
            pid_target: None,
            devices: &[],
            seccomp_profile: None,
            apparmor_profile: None,
            rlimits: &[],
            pids_limit: 0,
            available_capabilities: Some(&available),
            staged_mounts: &BTreeMap::new(),
        })
        .unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(
            caps.bounding().as_ref().unwrap().len(),
            ALL_CAPABILITIES.len() - 1
        );
        assert!(
            !caps
                .effective()
                .as_ref()
                .unwrap()
                .contains(&Capability::SysResource)
        );
    }

    #[test]
    fn unified_needs_cgroup_v2() {
        let mut r = crate::container::Resources::default();
        r.unified.insert("memory.high".into(), "1000000".into());
        assert!(matches!(
            linux_resources(&r, 0, false),
            Err(Error::InvalidArgument(_))
        ));
        let res = linux_resources(&r, 0, true).unwrap();
        assert_eq!(res.unified().as_ref().unwrap()["memory.high"], "1000000");
    }

    #[test]
    fn ulimits_parse_like_crio() {
        let n = parse_ulimit("nproc=4096").unwrap();
        assert_eq!(
            (n.typ, n.soft, n.hard),
            (PosixRlimitType::RlimitNproc, 4096, 4096)
        );
        assert_eq!(parse_ulimit("core=0:unlimited").unwrap().hard, u64::MAX);
        for bad in ["nofile", "nofile=a", "bogus=1", "nofile=10:5"] {
            assert!(parse_ulimit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apparmor_profiles_need_a_kernel_with_apparmor() {
        let none = |_: &str| false;
        let all = |_: &str| true;
        let local = SecurityProfile::Localhost("localhost/p".into());
        assert_eq!(
            apparmor_profile(&SecurityProfile::RuntimeDefault, false, false, none).unwrap(),
            None
        );
        assert!(apparmor_profile(&local, false, false, all).is_err());
        assert_eq!(
            apparmor_profile(&local, false, true, all)
                .unwrap()
                .as_deref(),
            Some("p")
        );
        assert!(apparmor_profile(&local, false, true, none).is_err());
        assert_eq!(
            apparmor_profile(&SecurityProfile::RuntimeDefault, false, true, all)
                .unwrap()
                .as_deref(),
            Some(APPARMOR_DEFAULT)
        );
        assert_eq!(apparmor_profile(&local, true, true, all).unwrap(), None);
    }

    #[test]
    fn recursive_read_only_mounts_use_the_staged_copy_and_are_checked() {
        let rro = |readonly, propagation| CriMount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            readonly,
            propagation,
            recursive_read_only: true,
            image: String::new(),
        };
        let img = image();
        let sb = sandbox();
        let id = Identity {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
        };
        let staged = BTreeMap::from([(0, PathBuf::from("/run/c1/staged/m0"))]);
        let build_mounts = |m: CriMount| {
            let c = ContainerConfig {
                mounts: vec![m],
                ..Default::default()
            };
            build(&SpecInput {
                config: &c,
                image: &img,
                sandbox: &sb,
                identity: &id,
                cgroups_path: "/c".into(),
                min_oom_score_adj: 0,
                cgroup_namespace: false,
                pid_target: None,
                devices: &[],
                seccomp_profile: None,
                apparmor_profile: None,
                rlimits: &[],
                pids_limit: 0,
                available_capabilities: None,
                staged_mounts: &staged,
            })
        };
        let spec = build_mounts(rro(true, Propagation::Private)).unwrap();
        let m = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/data"))
            .unwrap()
            .clone();
        assert_eq!(m.source().as_deref(), Some(Path::new("/run/c1/staged/m0")));
        assert_eq!(m.options().as_ref().unwrap(), &["rbind", "rprivate", "ro"]);
        for bad in [
            rro(false, Propagation::Private),
            rro(true, Propagation::HostToContainer),
            rro(true, Propagation::Bidirectional),
        ] {
            let e = build_mounts(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
            assert!(e.to_string().contains("/data"), "{e}");
        }
    }

    #[test]
    fn joins_the_pods_namespaces_and_mounts_its_files() {
        let sb = sandbox();
        let spec = build_with(&ContainerConfig::default(), &sb, 0);
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        let find = |t| ns.iter().find(|n| n.typ() == t).cloned();
        assert_eq!(
            find(LinuxNamespaceType::Network).unwrap().path().as_deref(),
            Some(Path::new("/run/crius/pods/p1/ns/net"))
        );
        assert!(find(LinuxNamespaceType::Uts).unwrap().path().is_some());
        assert!(find(LinuxNamespaceType::Pid).unwrap().path().is_none());
        assert!(find(LinuxNamespaceType::Cgroup).is_none());
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/crius/c1"))
        );
        let mounts = spec.mounts().as_ref().unwrap();
        let dest = |d: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(d))
                .cloned()
        };
        assert_eq!(
            dest("/etc/hosts").unwrap().source().as_deref(),
            Some(Path::new("/var/lib/crius/pods/p1/hosts"))
        );
        assert_eq!(
            dest("/dev/shm").unwrap().source().as_deref(),
            Some(Path::new("/run/crius/pods/p1/shm"))
        );
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.cwd(), Path::new("/srv"));
        assert_eq!(process.user().uid(), 33);
        assert_eq!(process.user().gid(), 44);
        assert_eq!(spec.hostname().as_deref(), Some("pod-host"));
    }

    #[test]
    fn host_network_pod_joins_no_network_namespace() {
        let mut sb = sandbox();
        sb.namespaces.clear();
        sb.shm = None;
        let spec = build_with(&ContainerConfig::default(), &sb, 0);
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Ipc));
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn user_mounts_replace_defaults_and_carry_options() {
        let c = ContainerConfig {
            mounts: vec![
                CriMount {
                    container_path: "/etc/hosts".into(),
                    host_path: "/tmp/myhosts".into(),
                    readonly: true,
                    propagation: Propagation::HostToContainer,
                    ..Default::default()
                },
                CriMount {
                    container_path: "/data".into(),
                    host_path: "/srv/data".into(),
                    readonly: false,
                    propagation: Propagation::Bidirectional,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let spec = build_with(&c, &sandbox(), 0);
        let mounts = spec.mounts().as_ref().unwrap();
        let hosts: Vec<_> = mounts
            .iter()
            .filter(|m| m.destination() == Path::new("/etc/hosts"))
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts[0].source().as_deref(),
            Some(Path::new("/tmp/myhosts"))
        );
        assert_eq!(
            hosts[0].options().as_deref().unwrap(),
            ["rbind", "rslave", "ro"]
        );
        let data = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/data"))
            .unwrap();
        assert_eq!(
            data.options().as_deref().unwrap(),
            ["rbind", "rshared", "rw"]
        );
        // A bidirectional mount needs the container's root rshared.
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .rootfs_propagation()
                .as_deref(),
            Some("rshared")
        );
        let private = build_with(&ContainerConfig::default(), &sandbox(), 0);
        assert_eq!(
            private.linux().as_ref().unwrap().rootfs_propagation(),
            &None
        );
    }

    #[test]
    fn oom_score_adj_is_clamped_to_the_daemons_own() {
        let mut c = ContainerConfig::default();
        c.resources.oom_score_adj = -997;
        let spec = build_with(&c, &sandbox(), -500);
        assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(-500));
        c.resources.oom_score_adj = 1000;
        let spec = build_with(&c, &sandbox(), 0);
        assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(1000));
    }

    #[test]
    fn resources_and_security_land_in_the_spec() {
        let c = ContainerConfig {
            resources: crate::container::Resources {
                cpu_shares: 512,
                cpu_quota: 50000,
                cpu_period: 100000,
                memory_limit: 64 << 20,
                cpuset_cpus: "0".into(),
                ..Default::default()
            },
            security: SecurityContext {
                readonly_rootfs: true,
                no_new_privs: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let spec = build_with(&c, &sandbox(), 0);
        let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let cpu = res.cpu().clone().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50000));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
        assert!(spec.root().as_ref().unwrap().readonly().unwrap());
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
    }

    #[test]
    fn pid_namespace_is_the_targets_the_pods_the_nodes_or_new() {
        let pid_ns = |sb: &Sandbox, target: Option<&str>| {
            let img = image();
            let id = Identity {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            };
            let spec = build(&SpecInput {
                config: &ContainerConfig::default(),
                image: &img,
                sandbox: sb,
                identity: &id,
                cgroups_path: "/crius/c1".into(),
                min_oom_score_adj: 0,
                cgroup_namespace: false,
                pid_target: target.map(PathBuf::from),
                devices: &[],
                seccomp_profile: None,
                apparmor_profile: None,
                rlimits: &[],
                pids_limit: 0,
                available_capabilities: None,
                staged_mounts: &BTreeMap::new(),
            })
            .unwrap();
            let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
            ns.iter()
                .find(|n| n.typ() == LinuxNamespaceType::Pid)
                .map(|n| n.path().clone())
        };
        // CONTAINER: a new one.
        let mut sb = sandbox();
        assert_eq!(pid_ns(&sb, None), Some(None));
        // TARGET: the target container's.
        assert_eq!(
            pid_ns(&sb, Some("/proc/42/ns/pid")),
            Some(Some(PathBuf::from("/proc/42/ns/pid")))
        );
        // POD: the one the infra process holds, pinned.
        sb.config.namespaces.pid = NamespaceMode::Pod;
        sb.namespaces.insert(
            NamespaceKind::Pid,
            PathBuf::from("/run/crius/pods/p1/ns/pid"),
        );
        assert_eq!(
            pid_ns(&sb, None),
            Some(Some(PathBuf::from("/run/crius/pods/p1/ns/pid")))
        );
        // NODE: none of its own.
        sb.namespaces.remove(&NamespaceKind::Pid);
        sb.config.namespaces.pid = NamespaceMode::Node;
        assert_eq!(pid_ns(&sb, None), None);
    }
}
