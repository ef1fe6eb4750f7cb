//! Helpers shared by the sandbox and network tests.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages};
use k8s_cri::v1::{
    ContainerState, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
};

/// How long a test waits for a line to show up in a container's log.
const LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon with the busybox test image pulled.
pub struct World {
    pub crius: Crius,
    pub rt: RuntimeClient,
    pub image: String,
    _registry: Registry,
}

impl World {
    pub async fn start(options: CriusOptions) -> World {
        let registry = Registry::start().unwrap();
        let images = TestImages::push(registry.addr()).await.unwrap();
        let crius = Crius::start(options).await.unwrap();
        let rt = crius.runtime_client();
        let image = images.oci.reference.clone();
        cri::pull_image(&mut crius.image_client(), &image)
            .await
            .unwrap();
        World {
            crius,
            rt,
            image,
            _registry: registry,
        }
    }

    /// A kubelet-style pod config named `name`.
    pub fn pod(&self, name: &str) -> PodSandboxConfig {
        cri::pod_config(self.crius.dir(), name)
    }

    /// RunPodSandbox with the default handler.
    pub async fn run_pod(&mut self, pod: &PodSandboxConfig) -> String {
        cri::run_pod(&mut self.rt, pod, "").await.unwrap()
    }

    /// Creates and starts container `name` running `sh -c script` in the
    /// pod; returns its id.
    pub async fn start_sh(
        &mut self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        name: &str,
        script: &str,
    ) -> String {
        let config = cri::container_config(name, &self.image, &["sh", "-c", script]);
        self.start_container(pod_id, pod, config).await
    }

    /// Creates and starts a container from `config`.
    pub async fn start_container(
        &mut self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        config: k8s_cri::v1::ContainerConfig,
    ) -> String {
        let id = cri::create_container(&mut self.rt, pod_id, pod, &config)
            .await
            .unwrap();
        cri::start_container(&mut self.rt, &id).await.unwrap();
        id
    }

    /// Runs `sh -c script` in the pod to completion; returns its stdout
    /// lines, asserting it exited 0.
    pub async fn run_sh(
        &mut self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        name: &str,
        script: &str,
    ) -> Vec<String> {
        let id = self.start_sh(pod_id, pod, name, script).await;
        let status = cri::wait_container_state(&mut self.rt, &id, ContainerState::ContainerExited)
            .await
            .unwrap();
        let log = self.log_path(pod, name);
        let lines = stdout(&log);
        assert_eq!(
            status.exit_code,
            0,
            "{name} failed: {status:?}\nlog: {:?}",
            std::fs::read_to_string(&log)
        );
        lines
    }

    /// Where container `name` of `pod` logs.
    pub fn log_path(&self, pod: &PodSandboxConfig, name: &str) -> std::path::PathBuf {
        Path::new(&pod.log_directory).join(format!("{name}.log"))
    }

    /// Waits until a stdout line of container `name` contains `needle`;
    /// returns that line.
    pub async fn wait_for_line(&self, pod: &PodSandboxConfig, name: &str, needle: &str) -> String {
        let log = self.log_path(pod, name);
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            if let Some(line) = stdout(&log).into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in {} after {LOG_TIMEOUT:?}: {:?}",
                log.display(),
                std::fs::read_to_string(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// StopPodSandbox + RemovePodSandbox.
    pub async fn remove_pod(&mut self, id: &str) {
        cri::stop_and_remove_pod(&mut self.rt, id).await.unwrap();
    }

    /// Stops the daemon and checks it left nothing behind.
    pub async fn finish(mut self) {
        assert_eq!(cri::pod_ids(&mut self.rt).await.unwrap(), [] as [String; 0]);
        self.crius.stop().await.unwrap();
        crius_e2e::assert_no_leaks(&self.crius);
    }
}

/// The stdout lines of a CRI log (empty while there is none).
pub fn stdout(log: &Path) -> Vec<String> {
    if !log.exists() {
        return Vec::new();
    }
    cri::read_cri_log(log)
        .unwrap()
        .into_iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.content)
        .collect()
}

/// Sets the pod's namespace options.
pub fn set_namespaces(pod: &mut PodSandboxConfig, network: NamespaceMode, pid: NamespaceMode) {
    let linux = pod.linux.get_or_insert_with(Default::default);
    let sc = linux
        .security_context
        .get_or_insert_with(LinuxSandboxSecurityContext::default);
    sc.namespace_options = Some(NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: if network == NamespaceMode::Node {
            NamespaceMode::Node as i32
        } else {
            NamespaceMode::Pod as i32
        },
        ..Default::default()
    });
}

/// The node's primary IPv4 address: that of the default route's interface.
pub fn node_ip() -> std::net::Ipv4Addr {
    let out = std::process::Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&out.stdout);
    let dev = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_else(|| panic!("no default route: {route:?}"))
        .to_string();
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &dev])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout);
    addrs
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address on {dev}: {addrs:?}"))
}
