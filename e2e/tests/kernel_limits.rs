//! Requests the kernel could not carry out because of one of its
//! fixed-size limits are refused by CreateContainer, INVALID_ARGUMENT
//! naming the container and the field, instead of making a container that
//! fails later without saying why: an argument or environment entry
//! longer than execve takes (`MAX_ARG_STRLEN`, 128 KiB with its NUL), a
//! log file name longer than a file name may be (`NAME_MAX`, 255 bytes).
//! Right at the limit, the container runs. (Paths of the daemon's own
//! that may be long, layer stacks and unix sockets under a long root and
//! state, are tried in `many_layers.rs`.)
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

mod common;

use common::World;
use crius_e2e::{CriusOptions, cri};
use k8s_cri::v1::CreateContainerRequest;
use tonic::Code;

/// The longest string execve takes, without its NUL.
const MAX_STRING: usize = 128 * 1024 - 1;

#[tokio::test]
async fn strings_and_names_longer_than_the_kernel_takes_are_refused() {
    let mut w = World::start(CriusOptions::without_cni()).await;
    let pod = {
        let mut pod = w.pod("limits");
        common::set_namespaces(
            &mut pod,
            k8s_cri::v1::NamespaceMode::Node,
            k8s_cri::v1::NamespaceMode::Container,
        );
        pod
    };
    let pod_id = w.run_pod(&pod).await;

    // At the limit: the argument and the variable reach the process whole.
    let longest = "x".repeat(MAX_STRING);
    let mut config = cri::container_config(
        "longest",
        &w.image,
        &["sh", "-c", "echo ${#1} ${#LONG}", "sh", &longest],
    );
    // LONG=… is the string execve sees.
    config.envs = cri::envs(&[("LONG", &longest[..MAX_STRING - 5])]);
    let id = w.start_container(&pod_id, &pod, config).await;
    let status =
        cri::wait_container_state(&mut w.rt, &id, k8s_cri::v1::ContainerState::ContainerExited)
            .await
            .unwrap();
    let out = common::stdout(&w.log_path(&pod, "longest"));
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    assert_eq!(out, [format!("{MAX_STRING} {}", MAX_STRING - 5)]);

    // One byte more, or a log file name of 256 bytes: refused.
    let too_long = "x".repeat(MAX_STRING + 1);
    let mut arg = cri::container_config("arg", &w.image, &["echo", &too_long]);
    arg.envs = cri::envs(&[("PATH", "/bin")]);
    let mut env = cri::container_config("env", &w.image, &["true"]);
    env.envs = cri::envs(&[("LONG", &too_long[5..])]);
    let mut log = cri::container_config("log", &w.image, &["true"]);
    log.log_path = format!("{}.log", "l".repeat(252));
    for (config, says) in [
        (arg, "container \"arg\" args[1]: is 131072 bytes"),
        (env, "container \"env\" env LONG: is 131072 bytes"),
        (
            log,
            "container \"log\" log_path: has a component of 256 bytes",
        ),
    ] {
        let err =
            w.rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(says),
            "{:?} lacks {says:?}",
            err.message()
        );
    }
    assert_eq!(
        cri::container_ids(&mut w.rt, None).await.unwrap(),
        std::slice::from_ref(&id)
    );
    w.remove_pod(&pod_id).await;
    w.finish().await;
}
