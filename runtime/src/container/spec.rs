//! The OCI runtime spec (config.json) of a container: the CRI config
//! merged with the image config and placed in its pod's namespaces.
//!
//! Pure: everything it needs from the system comes in [`SpecInput`], so
//! the rules are unit-tested without root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use super::user::Identity;
use super::{ContainerConfig, Propagation};
use crate::error::{Error, Result};
use crate::image::ImageConfig;
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
    /// hosts).
    pub cgroup_namespace: bool,
    /// The PID namespace of another container to join (CRI PID mode
    /// TARGET), as a `/proc/<pid>/ns/pid` path; `None` follows the pod.
    pub pid_target: Option<PathBuf>,
}

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
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
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
    for m in &config.mounts {
        let propagation = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => "rslave",
            Propagation::Bidirectional => "rshared",
        };
        let mode = if m.readonly { "ro" } else { "rw" };
        out.push(bind(
            &m.container_path,
            Path::new(&m.host_path),
            &["rbind", propagation, mode],
        )?);
    }
    Ok(out)
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
    match (&input.pid_target, sb.namespace("pid")) {
        (Some(target), _) => out.push(namespace(LinuxNamespaceType::Pid, Some(target))?),
        (None, Some(pod)) => out.push(namespace(LinuxNamespaceType::Pid, Some(pod))?),
        // Records of older versions have no pod PID namespace even in
        // mode POD: those pods get one per container, as they did.
        (None, None) if sb.config.namespaces.pid == NamespaceMode::Node => {}
        (None, None) => out.push(namespace(LinuxNamespaceType::Pid, None)?),
    }
    for (kind, typ) in [
        ("net", LinuxNamespaceType::Network),
        ("ipc", LinuxNamespaceType::Ipc),
        ("uts", LinuxNamespaceType::Uts),
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

/// Builds the container's OCI spec, its root being `rootfs` relative to the
/// bundle.
pub fn build(input: &SpecInput<'_>) -> Result<Spec> {
    let config = input.config;
    let image = input.image;
    let caps = capabilities(
        &config.security.add_capabilities,
        &config.security.drop_capabilities,
    )?;
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
    let process = ProcessBuilder::default()
        .terminal(config.tty)
        .args(command_line(config, image)?)
        .env(environment(config, image, &input.sandbox.hostname))
        .cwd(cwd)
        .user(user)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()
                .map_err(spec_error)?,
        )
        .no_new_privileges(config.security.no_new_privs)
        .oom_score_adj(oom)
        .build()
        .map_err(spec_error)?;

    let r = &config.resources;
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
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .map_err(spec_error)?,
        ])
        .cpu(cpu.build().map_err(spec_error)?)
        .memory(memory.build().map_err(spec_error)?)
        .build()
        .map_err(spec_error)?;
    let linux = LinuxBuilder::default()
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(resources)
        .namespaces(namespaces(input)?)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_error)?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(config.security.readonly_rootfs)
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
            .namespace("uts")
            .map(|_| input.sandbox.hostname.clone()),
    );
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
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
                    "net".to_string(),
                    PathBuf::from("/run/crius/pods/p1/ns/net"),
                ),
                (
                    "ipc".to_string(),
                    PathBuf::from("/run/crius/pods/p1/ns/ipc"),
                ),
                (
                    "uts".to_string(),
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
        })
        .unwrap()
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
                },
                CriMount {
                    container_path: "/data".into(),
                    host_path: "/srv/data".into(),
                    readonly: false,
                    propagation: Propagation::Bidirectional,
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
        sb.namespaces
            .insert("pid".into(), PathBuf::from("/run/crius/pods/p1/ns/pid"));
        assert_eq!(
            pid_ns(&sb, None),
            Some(Some(PathBuf::from("/run/crius/pods/p1/ns/pid")))
        );
        // NODE: none of its own.
        sb.namespaces.remove("pid");
        sb.config.namespaces.pid = NamespaceMode::Node;
        assert_eq!(pid_ns(&sb, None), None);
    }
}
