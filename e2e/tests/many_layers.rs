//! Images of many layers: 128, as deep as Docker and containerd run. A real
//! image of 128 layers (each adding a file, the top one whiting out a
//! lower one's) is pushed to a real registry and pulled; a container runs
//! from it, with an image volume of it, in a plain pod and in a pod with a
//! user namespace (whose layers are ID-mapped copies), and lists files of
//! the bottom, a middle and the top layer in both trees. Once with the
//! test's own root and state, once with both more than 200 bytes long;
//! there the containers are on a terminal, and an exec on a terminal and
//! an attach are made too, so that every unix socket under the state dir
//! (a container's and an exec's console socket, the monitor's attach
//! socket; addresses hold 108 bytes) is made and used under a long path.
//! Nothing is left behind.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

use std::time::Duration;

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::remotecommand::{RemoteCommand, Stdio, Transport};
use crius_e2e::synth::{self, Flavour, STACK_DIR, STACK_WHITED_OUT, stack_file};
use crius_e2e::{Crius, CriusOptions, Registry, assert_no_leaks};
use k8s_cri::v1::{AttachRequest, ContainerState, ExecRequest, ImageSpec, Mount};
use oci_client::secrets::RegistryAuth;

/// The depth of the image.
const LAYERS: usize = 128;
/// A middle layer.
const MIDDLE: usize = LAYERS / 2;
/// Where the image volume is mounted in the container.
const VOLUME: &str = "/imgvol";
/// A directory name to nest root and state under: three of them make each
/// more than 200 bytes long.
const LONG: &str = "a-directory-name-long-enough-to-try-fixed-size-kernel-limits";

/// What the container reports about the tree at `$r` (the rootfs, then
/// the image volume), one fact a line, each prefixed with the tree.
fn script() -> String {
    let top = LAYERS - 1;
    format!(
        "for r in '' {VOLUME}; do \
           echo \"$r bottom=$(cat $r/data/keep)\"; \
           echo \"$r middle=$(cat $r/{STACK_DIR}/{middle})\"; \
           echo \"$r top=$(cat $r/{STACK_DIR}/{top_file})\"; \
           echo \"$r files=$(ls $r/{STACK_DIR} | wc -l)\"; \
           echo \"$r owner=$(stat -c %u $r/{STACK_DIR}/{top_file})\"; \
           test -e $r/{STACK_DIR}/{gone} || echo \"$r whiteout-seen\"; \
         done",
        middle = stack_file(MIDDLE),
        top_file = stack_file(top),
        gone = stack_file(STACK_WHITED_OUT),
    )
}

/// The lines [`script`] must print for each tree.
fn expected() -> Vec<String> {
    // Layers 1..LAYERS add a file each; one is whited out.
    let files = LAYERS - 2;
    let mut lines = Vec::new();
    for r in ["", VOLUME] {
        for fact in [
            "bottom=keep".to_string(),
            format!("middle={MIDDLE}"),
            format!("top={}", LAYERS - 1),
            format!("files={files}"),
            "owner=0".into(),
            "whiteout-seen".into(),
        ] {
            lines.push(format!("{r} {fact}"));
        }
    }
    lines
}

#[tokio::test]
async fn an_image_of_128_layers_runs_in_plain_and_userns_pods() {
    deep_image(CriusOptions::default(), &[""], "deep").await;
}

#[tokio::test]
async fn an_image_of_128_layers_runs_under_long_root_and_state_paths() {
    let options = CriusOptions {
        nest: [LONG; 3].join("/"),
        ..Default::default()
    };
    deep_image(options, &["runc", "crun"], "deep-long").await;
}

/// Runs the container of the module docs from a 128-layer image, with
/// each of `handlers`, in a plain pod and a userns one; on a terminal
/// when `options` nest root and state (long paths).
async fn deep_image(options: CriusOptions, handlers: &[&str], name: &str) {
    let tty = !options.nest.is_empty();
    let registry = Registry::start().unwrap();
    let layers = synth::stacked_layers(LAYERS).unwrap();
    let pushed = synth::push(
        registry.addr(),
        "crius-e2e/deep",
        "128",
        &layers,
        Flavour::Oci,
        "deep",
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let mut crius = Crius::start(options).await.unwrap();
    let root = crius.dir().root();
    let state = crius.dir().state();
    if tty {
        assert!(root.as_os_str().len() > 200 && state.as_os_str().len() > 200);
    }
    let mut rt = crius.runtime_client();
    cri::pull_image(&mut crius.image_client(), &pushed.reference)
        .await
        .unwrap();
    let script = script();
    let runs = handlers.iter().flat_map(|h| [(*h, false), (*h, true)]);
    for (handler, userns) in runs {
        let kind = if userns { "userns" } else { "plain" };
        let pod_name = format!("{name}-{handler}-{kind}");
        let mut pod = cri::pod_config(crius.dir(), &pod_name);
        if userns {
            pod = cri::in_user_namespace(pod);
        }
        let pod_id = cri::run_pod(&mut rt, &pod, handler).await.unwrap();
        let mut config =
            cri::container_config("deep", &pushed.reference, &["/bin/sh", "-c", &script]);
        config.envs = cri::envs(&[("PATH", "/bin")]);
        config.tty = tty;
        config.mounts = vec![Mount {
            container_path: VOLUME.into(),
            readonly: true,
            image: Some(ImageSpec {
                image: pushed.reference.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
            .await
            .unwrap();
        cri::start_container(&mut rt, &id).await.unwrap();
        let status = cri::wait_container_state(&mut rt, &id, ContainerState::ContainerExited)
            .await
            .unwrap();
        let log = std::path::Path::new(&pod.log_directory).join("deep.log");
        let out: Vec<String> = cri::read_cri_log(&log)
            .unwrap()
            .into_iter()
            .map(|l| l.content.trim_end_matches('\r').to_string())
            .collect();
        assert_eq!(status.exit_code, 0, "{pod_name}: {status:?} {out:?}");
        assert_eq!(out, expected(), "{pod_name}");
        cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    }
    if tty {
        exec_and_attach(&crius, &mut rt, &pushed.reference).await;
    }
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// How long a streaming session may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// An exec on a terminal and an attach to a container of `image` on a
/// terminal: their console and attach sockets are under the state dir.
async fn exec_and_attach(crius: &Crius, rt: &mut RuntimeClient, image: &str) {
    let pod = cri::pod_config(crius.dir(), "deep-long-streams");
    let pod_id = cri::run_pod(rt, &pod, "").await.unwrap();
    let ticker = "while true; do echo tick; sleep 1; done";
    let mut config = cri::container_config("ticker", image, &["/bin/sh", "-c", ticker]);
    config.envs = cri::envs(&[("PATH", "/bin")]);
    config.tty = true;
    let id = cri::create_container(rt, &pod_id, &pod, &config)
        .await
        .unwrap();
    cri::start_container(rt, &id).await.unwrap();
    let stdio = Stdio {
        stdout: true,
        tty: true,
        ..Default::default()
    };
    let top = format!("/{STACK_DIR}/{}", stack_file(LAYERS - 1));
    let url = rt
        .exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["cat".into(), top],
            tty: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let exec = RemoteCommand::connect(&url, Transport::WebSocketV5, stdio)
        .await
        .unwrap()
        .finish(STREAM_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(exec.exit_code(), Some(0), "{exec:?}");
    let printed = String::from_utf8_lossy(&exec.stdout);
    assert_eq!(printed.trim_end(), (LAYERS - 1).to_string(), "{exec:?}");
    let url = rt
        .attach(AttachRequest {
            container_id: id.clone(),
            tty: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut attached = RemoteCommand::connect(&url, Transport::WebSocketV5, stdio)
        .await
        .unwrap();
    attached
        .read_stdout_until("tick", STREAM_TIMEOUT)
        .await
        .unwrap();
    attached.abort();
    cri::stop_and_remove_pod(rt, &pod_id).await.unwrap();
}

/// As deep as overlayfs stacks (500 lower directories) runs; deeper is
/// refused, naming the image and its layer count, and leaves nothing.
#[tokio::test]
async fn images_as_deep_as_overlayfs_stacks_run_and_deeper_ones_are_refused() {
    let registry = Registry::start().unwrap();
    let mut pushed = Vec::new();
    for depth in [500, 501] {
        let layers = synth::stacked_layers(depth).unwrap();
        let image = synth::push(
            registry.addr(),
            "crius-e2e/deepest",
            &depth.to_string(),
            &layers,
            Flavour::Oci,
            "deepest",
            &RegistryAuth::Anonymous,
        )
        .await
        .unwrap();
        pushed.push(image.reference);
    }
    let [fits, too_deep] = &pushed[..] else {
        unreachable!()
    };
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    for reference in &pushed {
        cri::pull_image(&mut crius.image_client(), reference)
            .await
            .unwrap();
    }
    let pod = cri::pod_config(crius.dir(), "deepest");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
    let top = stack_file(499);
    let script = format!("cat /data/keep /{STACK_DIR}/{top}");
    let mut config = cri::container_config("fits", fits, &["/bin/sh", "-c", &script]);
    config.envs = cri::envs(&[("PATH", "/bin")]);
    let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
        .await
        .unwrap();
    cri::start_container(&mut rt, &id).await.unwrap();
    let status = cri::wait_container_state(&mut rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    let log = std::path::Path::new(&pod.log_directory).join("fits.log");
    let out: Vec<String> = cri::read_cri_log(&log)
        .unwrap()
        .into_iter()
        .map(|l| l.content)
        .collect();
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    assert_eq!(out, ["keep", "499"]);

    // 501 layers as a rootfs; 500 as an image volume, whose empty base
    // takes one more.
    let volume = |image: &str| Mount {
        container_path: VOLUME.into(),
        readonly: true,
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut deep_rootfs = cri::container_config("too-deep", too_deep, &["true"]);
    deep_rootfs.envs = cri::envs(&[("PATH", "/bin")]);
    let mut deep_volume = deep_rootfs.clone();
    deep_volume.image.as_mut().unwrap().image = fits.clone();
    deep_volume.mounts = vec![volume(fits)];
    for (config, says) in [
        (
            deep_rootfs,
            format!("image {too_deep} has 501 layers: more than overlayfs stacks (500)"),
        ),
        (
            deep_volume,
            format!(
                "image {fits} has 500 layers: more than overlayfs stacks as an image volume (499)"
            ),
        ),
    ] {
        let err = rt
            .create_container(k8s_cri::v1::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(&says), "{err:?}");
    }
    // Only the container that fits was made.
    assert_eq!(cri::container_ids(&mut rt, None).await.unwrap(), [id]);
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
