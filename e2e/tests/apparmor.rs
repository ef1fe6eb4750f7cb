//! AppArmor as containers see it, with real runc: on a kernel with
//! AppArmor (the guest lane's node), a container that names no profile,
//! or RuntimeDefault, runs confined by crius-default, which crius loads
//! itself, and what that profile denies is denied (a mount, with
//! CAP_SYS_ADMIN and no seccomp in the way) while Unconfined allows it;
//! Status says what the node has. On a kernel without AppArmor (this
//! host) the same containers run unconfined and Status says so.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use common::World;
use crius_e2e::CriusOptions;
use crius_e2e::cri;
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{
    Capability, ContainerState, LinuxContainerSecurityContext, SecurityProfile, StatusRequest,
};

/// Prints the process's AppArmor label (or `none` where the kernel has no
/// AppArmor) and whether a tmpfs mount succeeded.
const SCRIPT: &str = "cat /proc/self/attr/current 2>/dev/null || echo none; \
     mkdir -p /tmp/m; if err=$(mount -t tmpfs none /tmp/m 2>&1); then echo mounted; else echo \"mount-denied: $err\"; fi";

fn kernel_has_apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn profile(t: ProfileType) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: t as i32,
        localhost_ref: String::new(),
    })
}

/// Status verbose's `apparmor` entry.
async fn apparmor_info(w: &mut World) -> serde_json::Value {
    let status =
        w.rt.status(StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
    serde_json::from_str(&status.info["apparmor"]).unwrap()
}

#[tokio::test]
async fn containers_run_under_the_default_profile_crius_loads() {
    let enabled = kernel_has_apparmor();
    let mut w = World::start(CriusOptions::default()).await;
    let info = apparmor_info(&mut w).await;
    assert_eq!(info["enabled"], enabled, "{info}");
    assert_eq!(info["defaultProfile"], "crius-default", "{info}");

    let pod = w.pod("apparmor");
    let pod_id = w.run_pod(&pod).await;
    let image = w.image.clone();
    // CAP_SYS_ADMIN and no seccomp: only AppArmor stands between the
    // process and a mount.
    let config = |name: &str, apparmor: Option<SecurityProfile>| {
        let mut c = cri::container_config(name, &image, &["sh", "-c", SCRIPT]);
        c.linux.get_or_insert_default().security_context = Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["CAP_SYS_ADMIN".into()],
                ..Default::default()
            }),
            seccomp: profile(ProfileType::Unconfined),
            apparmor,
            ..Default::default()
        });
        c
    };
    let mut outputs = Vec::new();
    for (name, apparmor) in [
        ("unnamed", None),
        ("default", profile(ProfileType::RuntimeDefault)),
        ("unconfined", profile(ProfileType::Unconfined)),
    ] {
        let id = w
            .start_container(&pod_id, &pod, config(name, apparmor))
            .await;
        let status = cri::wait_container_state(&mut w.rt, &id, ContainerState::ContainerExited)
            .await
            .unwrap();
        assert_eq!(status.exit_code, 0, "{name}: {status:?}");
        outputs.push((name, common::stdout(&w.log_path(&pod, name))));
    }
    for (name, out) in &outputs {
        let confined = enabled && *name != "unconfined";
        let label = out.first().map(String::as_str).unwrap_or_default();
        if confined {
            assert_eq!(label, "crius-default (enforce)", "{name}: {out:?}");
            assert!(
                out.get(1).is_some_and(
                    |l| l.starts_with("mount-denied") && l.contains("Permission denied")
                ),
                "{name}: {out:?}"
            );
        } else {
            assert!(label == "none" || label == "unconfined", "{name}: {out:?}");
            assert_eq!(
                out.get(1).map(String::as_str),
                Some("mounted"),
                "{name}: {out:?}"
            );
        }
    }
    let info = apparmor_info(&mut w).await;
    assert_eq!(info["defaultProfileLoaded"], enabled, "{info}");

    w.remove_pod(&pod_id).await;
    w.finish().await;
}
