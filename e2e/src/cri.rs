//! CRI request builders, calls and assertions the tests share.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, IdMapping, ImageSpec, KeyValue,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest, ListImagesRequest,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatus, PodSandboxStatusRequest, PullImageRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, RuntimeCondition, StartContainerRequest, StatusRequest,
    StopPodSandboxRequest, UserNamespace,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::{Context, NodeDir, Result, err};

/// The CRI RuntimeService client the harness hands out.
pub type RuntimeClient = RuntimeServiceClient<Channel>;
/// The CRI ImageService client the harness hands out.
pub type ImageClient = ImageServiceClient<Channel>;

/// The namespace of every test pod.
pub const NAMESPACE: &str = "crius-e2e";
/// How long a container may take to reach a state the test waits for.
const STATE_TIMEOUT: Duration = Duration::from_secs(60);

/// A pod config as kubelet sends it: metadata (`name`, a uid derived from
/// it, [`NAMESPACE`], attempt 0), hostname `name`, a log directory under
/// the test's [`NodeDir::logs`], the test's cgroup parent, PID namespace
/// mode CONTAINER (kubelet's default; the CRI's is POD), a label and an
/// annotation.
pub fn pod_config(dir: &NodeDir, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("{name}-uid-{}", dir.id()),
            namespace: NAMESPACE.to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: dir.pod_log_dir(name).to_string_lossy().into_owned(),
        labels: HashMap::from([("e2e-pod".to_string(), name.to_string())]),
        annotations: HashMap::from([("e2e.crius/pod".to_string(), name.to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: dir.cgroup_parent(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `pod` in a user namespace of its own (mode POD): container ID 0 is
/// host ID 100000, 65536 IDs, for users and groups.
pub fn in_user_namespace(mut pod: PodSandboxConfig) -> PodSandboxConfig {
    let ids = vec![IdMapping {
        container_id: 0,
        host_id: 100_000,
        length: 65_536,
    }];
    if let Some(ns) = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.userns_options = Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: ids.clone(),
            gids: ids,
        });
    }
    pod
}

/// A container config: metadata (`name`, attempt 0), `image`, `args` (the
/// image's entrypoint is kept), log path `<name>.log`, a label and an
/// annotation.
pub fn container_config(name: &str, image: &str, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        args: args.iter().map(|a| a.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: HashMap::from([("e2e-container".to_string(), name.to_string())]),
        annotations: HashMap::from([("e2e.crius/container".to_string(), name.to_string())]),
        ..Default::default()
    }
}

/// `key=value` pairs as CRI environment entries.
pub fn envs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// PullImage; returns the image ref the runtime reports.
pub async fn pull_image(images: &mut ImageClient, reference: &str) -> Result<String> {
    let response = images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: reference.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context(|| format!("PullImage {reference}"))?;
    Ok(response.into_inner().image_ref)
}

/// Creates the pod's log directory and calls RunPodSandbox with runtime
/// `handler` ("" for the default), as kubelet does; returns the pod id.
pub async fn run_pod(
    runtime: &mut RuntimeClient,
    config: &PodSandboxConfig,
    handler: &str,
) -> Result<String> {
    // kubelet creates the log directory before asking for the pod.
    if !config.log_directory.is_empty() {
        std::fs::create_dir_all(&config.log_directory)
            .context(|| format!("create {}", config.log_directory))?;
    }
    let response = runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .context(|| format!("RunPodSandbox {:?}", config.metadata))?;
    Ok(response.into_inner().pod_sandbox_id)
}

/// PodSandboxStatus of `id`.
pub async fn pod_status(runtime: &mut RuntimeClient, id: &str) -> Result<PodSandboxStatus> {
    runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        })
        .await
        .context(|| format!("PodSandboxStatus {id}"))?
        .into_inner()
        .status
        .ok_or_else(|| err(format!("PodSandboxStatus {id}: no status in the response")))
}

/// StopPodSandbox then RemovePodSandbox, as kubelet does.
pub async fn stop_and_remove_pod(runtime: &mut RuntimeClient, id: &str) -> Result<()> {
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .context(|| format!("StopPodSandbox {id}"))?;
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .context(|| format!("RemovePodSandbox {id}"))?;
    Ok(())
}

/// The runtime conditions of Status, by type (`RuntimeReady`,
/// `NetworkReady`, …).
pub async fn runtime_conditions(
    runtime: &mut RuntimeClient,
) -> Result<HashMap<String, RuntimeCondition>> {
    let status = runtime
        .status(StatusRequest { verbose: false })
        .await
        .context(|| "Status")?
        .into_inner()
        .status
        .ok_or_else(|| err("Status: no runtime status in the response"))?;
    Ok(status
        .conditions
        .into_iter()
        .map(|c| (c.r#type.clone(), c))
        .collect())
}

/// CreateContainer in pod `pod_id` (whose config was `pod`); returns the
/// container id.
pub async fn create_container(
    runtime: &mut RuntimeClient,
    pod_id: &str,
    pod: &PodSandboxConfig,
    config: &ContainerConfig,
) -> Result<String> {
    let response = runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .context(|| format!("CreateContainer {:?} in pod {pod_id}", config.metadata))?;
    Ok(response.into_inner().container_id)
}

/// StartContainer `id`.
pub async fn start_container(runtime: &mut RuntimeClient, id: &str) -> Result<()> {
    runtime
        .start_container(StartContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .context(|| format!("StartContainer {id}"))?;
    Ok(())
}

/// ContainerStatus of `id`.
pub async fn container_status(runtime: &mut RuntimeClient, id: &str) -> Result<ContainerStatus> {
    runtime
        .container_status(ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        })
        .await
        .context(|| format!("ContainerStatus {id}"))?
        .into_inner()
        .status
        .ok_or_else(|| err(format!("ContainerStatus {id}: no status in the response")))
}

/// Polls ContainerStatus until container `id` is in `state` (bounded, so
/// that a hang fails the test instead of blocking it).
pub async fn wait_container_state(
    runtime: &mut RuntimeClient,
    id: &str,
    state: ContainerState,
) -> Result<ContainerStatus> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let status = container_status(runtime, id).await?;
        if status.state == state as i32 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "container {id} not {state:?} after {STATE_TIMEOUT:?}; last status: {status:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ids of the pods ListPodSandbox returns.
pub async fn pod_ids(runtime: &mut RuntimeClient) -> Result<Vec<String>> {
    let pods = runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .context(|| "ListPodSandbox")?
        .into_inner()
        .items;
    Ok(pods.into_iter().map(|p| p.id).collect())
}

/// Ids of the containers ListContainers returns for `filter`.
pub async fn container_ids(
    runtime: &mut RuntimeClient,
    filter: Option<ContainerFilter>,
) -> Result<Vec<String>> {
    let containers = runtime
        .list_containers(ListContainersRequest { filter })
        .await
        .context(|| "ListContainers")?
        .into_inner()
        .containers;
    Ok(containers.into_iter().map(|c| c.id).collect())
}

/// Ids of the images ListImages returns.
pub async fn image_ids(images: &mut ImageClient) -> Result<Vec<String>> {
    let list = images
        .list_images(ListImagesRequest::default())
        .await
        .context(|| "ListImages")?
        .into_inner()
        .images;
    Ok(list.into_iter().map(|i| i.id).collect())
}

/// Asserts that a CRI call failed with `code` and a message containing
/// `needle`; returns the status for further checks.
#[track_caller]
pub fn assert_code<T: Debug>(
    result: std::result::Result<tonic::Response<T>, Status>,
    code: Code,
    needle: &str,
) -> Status {
    match result {
        Ok(response) => panic!(
            "expected {code:?} ({needle}), got success: {:?}",
            response.into_inner()
        ),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "wrong code; message: {}",
                status.message()
            );
            assert!(
                status.message().contains(needle),
                "{code:?} message {:?} does not mention {needle:?}",
                status.message()
            );
            status
        }
    }
}

/// One line of a CRI (kubelet-format) container log:
/// `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp field as written.
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `F` (full line) or `P` (partial line).
    pub tag: String,
    /// The logged text.
    pub content: String,
}

/// Reads and checks a CRI log file: every line must have the four fields,
/// a valid timestamp, a known stream and tag.
pub fn read_cri_log(path: &Path) -> Result<Vec<LogLine>> {
    let text = std::fs::read_to_string(path).context(|| format!("read {}", path.display()))?;
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(4, ' ');
            let mut next = || fields.next().unwrap_or_default().to_string();
            let parsed = LogLine {
                time: next(),
                stream: next(),
                tag: next(),
                content: next(),
            };
            let valid = is_rfc3339(&parsed.time)
                && matches!(parsed.stream.as_str(), "stdout" | "stderr")
                && matches!(parsed.tag.as_str(), "F" | "P");
            if valid {
                Ok(parsed)
            } else {
                Err(err(format!(
                    "{}: not a CRI log line: {line:?}",
                    path.display()
                )))
            }
        })
        .collect()
}

/// Whether `s` is an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac]`
/// then `Z` or `±HH:MM`), as Go's RFC3339Nano writes.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    let zone = rest.as_bytes();
    rest == "Z"
        || (zone.len() == 6
            && matches!(zone[0], b'+' | b'-')
            && zone[1..3].iter().all(u8::is_ascii_digit)
            && zone[3] == b':'
            && zone[4..6].iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        assert!(is_rfc3339("2016-10-06T00:17:09.669794202Z"));
        assert!(is_rfc3339("2016-10-06T00:17:09Z"));
        assert!(is_rfc3339("2016-10-06T00:17:09.5+02:00"));
        assert!(!is_rfc3339("2016-10-06 00:17:09Z"));
        assert!(!is_rfc3339("2016-10-06T00:17:09."));
        assert!(!is_rfc3339("2016-10-06T00:17:09.1234567890Z"));
        assert!(!is_rfc3339("2016-10-06T00:17:09+0200"));
        assert!(!is_rfc3339("stdout"));
    }

    #[test]
    fn cri_log_lines_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:00.1Z stdout F hello world\n\
             2024-01-01T00:00:00.2Z stderr P part\n\
             2024-01-01T00:00:00.3Z stdout F \n",
        )
        .unwrap();
        let lines = read_cri_log(&path).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].content, "hello world");
        assert_eq!(lines[1].stream, "stderr");
        assert_eq!(lines[1].tag, "P");
        assert_eq!(lines[2].content, "");

        std::fs::write(&path, "2024-01-01T00:00:00Z stdin F x\n").unwrap();
        assert!(read_cri_log(&path).is_err());
    }
}
