//! Round trips and refusals of the conversions.

use crius_runtime::container::{ContainerConfig, SecurityProfile};
use crius_runtime::image::Image;
use crius_runtime::sandbox::NamespaceMode;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::container::resources_to_cri;
use super::pod::{user_namespace, userns_to_cri};
use super::*;

fn pod_req() -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 2,
        }),
        hostname: "web-0".into(),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: String::new(),
        }],
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/pod1".into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn user_namespace_modes() {
    let map = cri::IdMapping {
        container_id: 0,
        host_id: 100000,
        length: 65536,
    };
    let u = |mode: cri::NamespaceMode| cri::UserNamespace {
        mode: mode as i32,
        uids: vec![map],
        gids: vec![map],
    };
    assert_eq!(user_namespace("p", None).unwrap(), None);
    assert_eq!(
        user_namespace("p", Some(&u(cri::NamespaceMode::Node))).unwrap(),
        None
    );
    let pod = user_namespace("p", Some(&u(cri::NamespaceMode::Pod)))
        .unwrap()
        .unwrap();
    assert_eq!(pod.uids[0].host_id, 100000);
    assert_eq!(userns_to_cri(Some(&pod)), u(cri::NamespaceMode::Pod));
    for mode in [cri::NamespaceMode::Container, cri::NamespaceMode::Target] {
        let e = user_namespace("web", Some(&u(mode))).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("web") && e.message().contains(mode.as_str_name()),
            "{e:?}"
        );
    }
}

#[test]
fn pod_config_round_trip() {
    let c = pod_config(Some(pod_req()), "crun".into()).unwrap();
    assert_eq!((c.name.as_str(), c.attempt), ("web", 2));
    assert_eq!(c.namespaces.network, NamespaceMode::Node);
    assert_eq!(c.namespaces.pid, NamespaceMode::Container);
    assert_eq!(c.namespaces.ipc, NamespaceMode::Pod);
    assert_eq!(c.port_mappings[0].protocol, "udp");
    assert_eq!(c.cgroup_parent, "/kubepods/pod1");
    assert_eq!(c.runtime_handler, "crun");
}

#[test]
fn missing_parts_are_invalid_arguments() {
    assert_eq!(
        pod_config(None, String::new()).unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let mut req = pod_req();
    req.metadata = None;
    let e = pod_config(Some(req), String::new()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("metadata"), "{}", e.message());
    let mut req = pod_req();
    req.port_mappings[0].protocol = 9;
    assert!(pod_config(Some(req), String::new()).is_err());

    let e = container_config(Some(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata::default()),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(e.message().contains("image"), "{}", e.message());

    let with_mount = |host: &str, ctr: &str| {
        container_config(Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata::default()),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            mounts: vec![cri::Mount {
                host_path: host.into(),
                container_path: ctr.into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    };
    assert!(with_mount("/srv", "/data").is_ok());
    let e = container_config(Some(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata::default()),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 5 }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(e.message().contains("run_as_group"), "{}", e.message());
    let e = with_mount("", "/data").unwrap_err();
    assert!(e.message().contains("host_path"), "{}", e.message());
    let e = with_mount("/srv", "data").unwrap_err();
    assert!(e.message().contains("container_path"), "{}", e.message());
}

fn ctr_with(sc: cri::LinuxContainerSecurityContext) -> Result<ContainerConfig, Status> {
    container_config(Some(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata::default()),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

#[test]
#[allow(deprecated)] // the string forms are tested on purpose
fn security_profiles_from_both_forms() {
    let c = ctr_with(Default::default()).unwrap();
    assert_eq!(c.security.seccomp, SecurityProfile::Unconfined);
    assert_eq!(c.security.apparmor, SecurityProfile::RuntimeDefault);
    let c = ctr_with(cri::LinuxContainerSecurityContext {
        seccomp: Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: "/p.json".into(),
        }),
        apparmor_profile: "runtime/default".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        c.security.seccomp,
        SecurityProfile::Localhost("/p.json".into())
    );
    assert_eq!(c.security.apparmor, SecurityProfile::RuntimeDefault);
    let c = ctr_with(cri::LinuxContainerSecurityContext {
        seccomp_profile_path: "localhost//x.json".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        c.security.seccomp,
        SecurityProfile::Localhost("/x.json".into())
    );
    for bad in [
        cri::LinuxContainerSecurityContext {
            seccomp_profile_path: "bogus".into(),
            ..Default::default()
        },
        cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        },
        cri::LinuxContainerSecurityContext {
            supplemental_groups_policy: 7,
            ..Default::default()
        },
    ] {
        assert_eq!(
            ctr_with(bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}

#[test]
fn status_reports_resources_and_user() {
    let mut r = cri::LinuxContainerResources {
        memory_limit_in_bytes: 1 << 20,
        ..Default::default()
    };
    r.hugepage_limits.push(cri::HugepageLimit {
        page_size: "2MB".into(),
        limit: 2 << 20,
    });
    let res = resources(r.clone());
    assert_eq!(resources_to_cri(&res), r);
}

#[test]
fn image_user_becomes_uid_or_username() {
    let mut img = Image {
        id: "sha256:ab".into(),
        repo_tags: vec![],
        repo_digests: vec![],
        size: 1,
        config: Default::default(),
        layers: vec![],
        blobs: vec![],
    };
    img.config.user = "1000:1000".into();
    assert_eq!(image(&img).uid, Some(cri::Int64Value { value: 1000 }));
    img.config.user = "nginx".into();
    let i = image(&img);
    assert_eq!((i.uid, i.username.as_str()), (None, "nginx"));
}
