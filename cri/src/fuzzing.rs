//! The request → OCI spec path that a hostile client drives, as one
//! function over raw protobuf bytes, for the cargo-fuzz target in
//! `cri/fuzz` and for the pseudo-random test run by `cargo test`
//! (`cri/tests/request_fuzz.rs`). Not part of the API: compiled only
//! with the `fuzzing` feature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crius_runtime::container::{Identity, spec};
use crius_runtime::image::ImageConfig;
use crius_runtime::sandbox::{NamespaceKind, Sandbox, SandboxState};
use crius_runtime::validate;
use k8s_cri::v1 as cri;
use prost::Message;

use crate::convert;

/// Decodes `data` as a CreateContainerRequest (with its pod's config, as
/// kubelet sends it) and takes it through everything CreateContainer does
/// without touching the system: conversion, validation and the OCI spec
/// builder. Returns whether a spec was built; must never panic.
pub fn create_container_request(data: &[u8]) -> bool {
    let Ok(req) = cri::CreateContainerRequest::decode(data) else {
        return false;
    };
    create_container(req)
}

/// [`create_container_request`] over a decoded request.
pub fn create_container(req: cri::CreateContainerRequest) -> bool {
    let pod = match convert::pod_config(req.sandbox_config, String::new()) {
        Ok(pod) if validate::pod(&pod).is_ok() => pod,
        _ => Default::default(),
    };
    let Ok(config) = convert::container_config(req.config) else {
        return false;
    };
    if validate::container(&config).is_err() {
        return false;
    }
    let sandbox = Sandbox {
        id: "f".repeat(64),
        config: pod,
        state: SandboxState::Ready,
        created_at: 1,
        ips: vec!["10.0.0.2".into()],
        runtime_handler: "runc".into(),
        namespaces: BTreeMap::from([
            (
                NamespaceKind::Net,
                PathBuf::from("/run/crius/pods/f/ns/net"),
            ),
            (
                NamespaceKind::Ipc,
                PathBuf::from("/run/crius/pods/f/ns/ipc"),
            ),
            (
                NamespaceKind::Uts,
                PathBuf::from("/run/crius/pods/f/ns/uts"),
            ),
        ]),
        shm: Some(PathBuf::from("/run/crius/pods/f/shm")),
        files_dir: PathBuf::from("/var/lib/crius/pods/f"),
        cgroup_parent: "/crius".into(),
        hostname: "pod".into(),
        ..Default::default()
    };
    let image = ImageConfig {
        entrypoint: vec!["/bin/sh".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let identity = Identity {
        uid: config.security.run_as_user.unwrap_or(0) as u32,
        gid: config.security.run_as_group.unwrap_or(0) as u32,
        additional_gids: config
            .security
            .supplemental_groups
            .iter()
            .map(|g| *g as u32)
            .collect(),
    };
    let rlimits = ["nofile=1024:4096"]
        .iter()
        .filter_map(|u| spec::parse_ulimit(u).ok())
        .collect::<Vec<_>>();
    spec::build(&spec::SpecInput {
        config: &config,
        image: &image,
        sandbox: &sandbox,
        identity: &identity,
        cgroups_path: "/crius/ffff".into(),
        min_oom_score_adj: -998,
        cgroup_namespace: true,
        pid_target: None,
        devices: &[],
        seccomp_profile: None,
        apparmor_profile: None,
        rlimits: &rlimits,
        pids_limit: 4096,
        available_capabilities: None,
        staged_mounts: &std::collections::BTreeMap::new(),
    })
    .is_ok()
}
