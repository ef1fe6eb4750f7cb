use super::capabilities::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};
use super::*;
use crate::container::devices::DeviceNode;
use crate::records::container::{Mount as CriMount, SecurityContext};
use crate::records::pod::{PodConfig, SandboxState};
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
fn a_terminal_gets_a_term_unless_one_is_named() {
    let mut c = ContainerConfig {
        tty: true,
        ..Default::default()
    };
    assert_eq!(
        environment(&c, &image(), "h").last().map(String::as_str),
        Some("TERM=xterm")
    );
    c.envs = vec![("TERM".into(), "vt100".into())];
    let env = environment(&c, &image(), "h");
    assert_eq!(env.iter().filter(|e| e.starts_with("TERM=")).count(), 1);
    assert!(env.contains(&"TERM=vt100".to_string()), "{env:?}");
    c.tty = false;
    c.envs.clear();
    assert!(
        !environment(&c, &image(), "h")
            .iter()
            .any(|e| e.starts_with("TERM="))
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
    let mut r = crate::records::container::Resources::default();
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
    // The default not loaded (creation loads it first): an error, never
    // an unconfined container in its place.
    let e = apparmor_profile(&SecurityProfile::RuntimeDefault, false, true, none).unwrap_err();
    assert!(e.to_string().contains(APPARMOR_DEFAULT), "{e}");
    assert_eq!(apparmor_profile(&local, true, true, all).unwrap(), None);
    assert_eq!(
        apparmor_profile(&SecurityProfile::RuntimeDefault, true, true, none).unwrap(),
        None
    );
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
        resources: crate::records::container::Resources {
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
