//! Wrong requests get the right gRPC code, a message naming what was wrong,
//! and change nothing.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use crius_e2e::cri::{self, assert_code};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks, free_port};
use k8s_cri::v1::{
    CheckpointContainerRequest, ContainerStatusRequest, CreateContainerRequest, ExecRequest,
    ExecSyncRequest, ImageSpec, PodSandboxState, PodSandboxStatusRequest, PullImageRequest,
    RemoveContainerRequest, RunPodSandboxRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::Code;

const NONE: [String; 0] = [];

#[tokio::test]
async fn bad_pod_requests() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();

    let mut anonymous = cri::pod_config(crius.dir(), "anonymous");
    anonymous.metadata = None;
    assert_code(
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(anonymous),
            runtime_handler: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "metadata",
    );
    assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), NONE);

    let pod = cri::pod_config(crius.dir(), "twice");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
    assert_code(
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await,
        Code::AlreadyExists,
        "twice",
    );
    assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), [pod_id.as_str()]);
    let status = cri::pod_status(&mut rt, &pod_id).await.unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);

    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_code(
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: unknown.into(),
            verbose: false,
        })
        .await,
        Code::NotFound,
        unknown,
    );
    // Stop is idempotent: a pod that is gone is already stopped.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: unknown.into(),
    })
    .await
    .unwrap();
    rt.stop_container(StopContainerRequest {
        container_id: unknown.into(),
        timeout: 0,
    })
    .await
    .unwrap();
    assert_code(
        rt.container_status(ContainerStatusRequest {
            container_id: unknown.into(),
            verbose: false,
        })
        .await,
        Code::NotFound,
        unknown,
    );
    assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), [pod_id.as_str()]);
    assert_eq!(cri::container_ids(&mut rt, None).await.unwrap(), NONE);

    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn bad_container_requests() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &images.oci.reference)
        .await
        .unwrap();
    let pod = cri::pod_config(crius.dir(), "containers");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();

    // Pushed but never pulled: the runtime must not fetch it on its own.
    let unpulled = &images.docker.reference;
    let config = cri::container_config("unpulled", unpulled, &["true"]);
    assert_code(
        rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await,
        Code::NotFound,
        unpulled,
    );
    assert_eq!(cri::container_ids(&mut rt, None).await.unwrap(), NONE);
    assert_eq!(
        cri::image_ids(&mut img).await.unwrap(),
        [images.oci.image_id.as_str()]
    );

    let config = cri::container_config("twice", &images.oci.reference, &["true"]);
    let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
        .await
        .unwrap();
    assert_code(
        rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await,
        Code::AlreadyExists,
        "twice",
    );
    assert_eq!(
        cri::container_ids(&mut rt, None).await.unwrap(),
        [id.as_str()]
    );

    // Exec commands are checked before anything runs, as a container's
    // command is: no NUL (execve cannot pass one), within the limits.
    assert_code(
        rt.exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo a\0b".into()],
            timeout: 5,
        })
        .await,
        Code::InvalidArgument,
        "cmd[2]: holds a NUL byte",
    );
    assert_code(
        rt.exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["y".repeat(1024); 2048],
            stdout: true,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "2048 entries",
    );

    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn pull_from_a_closed_port_and_unimplemented_calls() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();

    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    assert_code(
        img.pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: format!("{addr}/crius-e2e/busybox:oci"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await,
        Code::Unavailable,
        &addr,
    );
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);

    // CheckpointContainer: the CRI call crius does not implement.
    assert_code(
        rt.checkpoint_container(CheckpointContainerRequest {
            container_id: "any".into(),
            location: "/tmp/nowhere.tar".into(),
            timeout: 0,
        })
        .await,
        Code::Unimplemented,
        "CheckpointContainer",
    );

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn network_not_ready_without_a_cni_config() {
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    let mut rt = crius.runtime_client();

    let conditions = cri::runtime_conditions(&mut rt).await.unwrap();
    let runtime = conditions.get("RuntimeReady");
    assert!(runtime.is_some_and(|c| c.status), "{conditions:?}");
    let network = conditions.get("NetworkReady");
    assert!(
        network.is_some_and(|c| !c.status && !c.reason.is_empty()),
        "{conditions:?}"
    );

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// Fields that could escape where they belong, or inject lines into the
/// pod's files, or exhaust the daemon: refused with InvalidArgument naming
/// the field; nothing is made, nothing written outside the log directory.
#[tokio::test]
async fn hostile_fields_are_refused() {
    use k8s_cri::v1::{DnsConfig, KeyValue, Mount};

    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();
    let image = images.oci.reference.clone();
    cri::pull_image(&mut img, &image).await.unwrap();

    type PodEdit = Box<dyn Fn(&mut k8s_cri::v1::PodSandboxConfig)>;
    let pod_cases: Vec<(&str, PodEdit)> = vec![
        (
            "log_directory",
            Box::new(|p| p.log_directory = format!("{}/../../escape", p.log_directory)),
        ),
        (
            "log_directory",
            Box::new(|p| p.log_directory = "relative/logs".into()),
        ),
        (
            "metadata.name",
            Box::new(|p| p.metadata.as_mut().unwrap().name = "../../etc".into()),
        ),
        (
            "hostname",
            Box::new(|p| p.hostname = "evil\n10.9.9.9 kubernetes.default".into()),
        ),
        (
            "DNS search domain",
            Box::new(|p| {
                p.dns_config = Some(DnsConfig {
                    searches: vec!["svc.local\nnameserver 6.6.6.6".into()],
                    ..Default::default()
                })
            }),
        ),
        (
            "annotations",
            Box::new(|p| {
                p.annotations.insert("huge".into(), "x".repeat(300 * 1024));
            }),
        ),
        (
            "pod sandbox annotations key \"a\\0b\": holds a NUL byte",
            Box::new(|p| {
                p.annotations.insert("a\0b".into(), "v".into());
            }),
        ),
        (
            "pod sandbox annotations value of \"note\": holds a NUL byte",
            Box::new(|p| {
                p.annotations.insert("note".into(), "v\0w".into());
            }),
        ),
        (
            "pod sandbox labels value of \"app\": holds a NUL byte",
            Box::new(|p| {
                p.labels.insert("app".into(), "web\0".into());
            }),
        ),
    ];
    for (needle, edit) in &pod_cases {
        let mut pod = cri::pod_config(crius.dir(), "hostile");
        edit(&mut pod);
        assert_code(
            rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod),
                runtime_handler: String::new(),
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), NONE, "{needle}");
    }

    let pod = cri::pod_config(crius.dir(), "target");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();
    type CtrEdit = Box<dyn Fn(&mut k8s_cri::v1::ContainerConfig)>;
    let mount = |container_path: &str, host_path: &str| Mount {
        container_path: container_path.into(),
        host_path: host_path.into(),
        ..Default::default()
    };
    let ctr_cases: Vec<(&str, CtrEdit)> = vec![
        (
            "log_path",
            Box::new(|c| c.log_path = "../../../escaped.log".into()),
        ),
        ("log_path", Box::new(|c| c.log_path = "/tmp/abs.log".into())),
        (
            "mount container_path",
            Box::new(move |c| c.mounts = vec![mount("/data/../../etc", "/tmp")]),
        ),
        (
            "mount host_path",
            Box::new(move |c| c.mounts = vec![mount("/data", "/tmp/../etc")]),
        ),
        (
            "termination message path",
            Box::new(|c| {
                c.annotations.insert(
                    "io.kubernetes.container.terminationMessagePath".into(),
                    "/dev/../../etc/shadow".into(),
                );
            }),
        ),
        ("working_dir", Box::new(|c| c.working_dir = "srv".into())),
        (
            "env key",
            Box::new(|c| {
                c.envs = vec![KeyValue {
                    key: "A=B".into(),
                    value: "c".into(),
                }]
            }),
        ),
        (
            "command and args",
            Box::new(|c| c.args = vec!["y".repeat(1024); 2048]),
        ),
        (
            "metadata.name",
            Box::new(|c| c.metadata.as_mut().unwrap().name = "a/b".into()),
        ),
        (
            "annotations key \"\\0\": holds a NUL byte",
            Box::new(|c| {
                c.annotations.insert("\0".into(), "v".into());
            }),
        ),
        (
            "annotations value of \"note\": holds a NUL byte",
            Box::new(|c| {
                c.annotations.insert("note".into(), "\0".into());
            }),
        ),
        (
            "labels key \"l\\0\": holds a NUL byte",
            Box::new(|c| {
                c.labels.insert("l\0".into(), "v".into());
            }),
        ),
    ];
    for (needle, edit) in &ctr_cases {
        let mut config = cri::container_config("hostile", &image, &["true"]);
        edit(&mut config);
        assert_code(
            rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await,
            Code::InvalidArgument,
            needle,
        );
        assert_eq!(
            cri::container_ids(&mut rt, None).await.unwrap(),
            NONE,
            "{needle}"
        );
    }
    // Nothing was written beside the pods' log directories.
    let escaped = crius.dir().logs().parent().unwrap().join("escaped.log");
    assert!(!escaped.exists(), "{}", escaped.display());
    assert!(!std::path::Path::new("/tmp/abs.log").exists());

    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}

/// A codec for hand-encoded messages: bytes in, bytes out.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `path` on the daemon with a hand-encoded request.
async fn raw_call(
    crius: &Crius,
    path: &'static str,
    message: Vec<u8>,
) -> Result<tonic::Response<Vec<u8>>, tonic::Status> {
    let channel = crius_e2e::connect_unix(&crius.dir().socket())
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(message),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
}

/// A length-delimited protobuf field.
fn field(number: u8, value: &[u8]) -> Vec<u8> {
    assert!(value.len() < 128, "one-byte lengths only");
    let mut out = vec![(number << 3) | 2, value.len() as u8];
    out.extend_from_slice(value);
    out
}

/// Requests whose strings are not UTF-8 are the client's error on both
/// services: INVALID_ARGUMENT naming the message and field, and nothing is
/// made.
#[tokio::test]
async fn requests_that_do_not_decode_are_invalid_arguments() {
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();

    // RunPodSandboxRequest { config { metadata { name: "bad\xffname",
    // uid: "u", namespace: "ns" } } }
    let metadata = [field(1, b"bad\xffname"), field(2, b"u"), field(3, b"ns")].concat();
    let request = field(1, &field(1, &metadata));
    let status = assert_code(
        raw_call(&crius, "/runtime.v1.RuntimeService/RunPodSandbox", request).await,
        Code::InvalidArgument,
        "PodSandboxMetadata.name",
    );
    assert!(
        status.message().contains("RunPodSandbox") && status.message().contains("UTF-8"),
        "{}",
        status.message()
    );
    assert_eq!(cri::pod_ids(&mut rt).await.unwrap(), NONE);

    // ImageStatusRequest { image { image: "\xc3(" } }
    let request = field(1, &field(1, b"\xc3("));
    assert_code(
        raw_call(&crius, "/runtime.v1.ImageService/ImageStatus", request).await,
        Code::InvalidArgument,
        "ImageSpec.image",
    );
    // PullImageRequest { image { image: "\xff" } }: nothing pulled.
    let request = field(1, &field(1, b"\xff"));
    assert_code(
        raw_call(&crius, "/runtime.v1.ImageService/PullImage", request).await,
        Code::InvalidArgument,
        "ImageSpec.image",
    );
    assert_eq!(cri::image_ids(&mut img).await.unwrap(), NONE);
    // A field cut short: the message does not decode either.
    assert_code(
        raw_call(
            &crius,
            "/runtime.v1.RuntimeService/Version",
            vec![0x0a, 0x10],
        )
        .await,
        Code::InvalidArgument,
        "Version",
    );
    // A valid hand-encoded request still works the same way.
    let version = raw_call(
        &crius,
        "/runtime.v1.RuntimeService/Version",
        field(1, b"v1"),
    )
    .await
    .unwrap()
    .into_inner();
    assert!(version.windows(5).any(|w| w == b"crius"), "{version:?}");

    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
}
