//! `idle`: the daemon at rest, polled the way kubelet polls it.

use std::time::{Duration, Instant};

use crius_e2e::{Result, err};
use k8s_cri::v1::{
    ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, StatusRequest, VersionRequest,
};

use crate::args::Args;
use crate::target::Target;
use crate::util::{memory, mib};

/// The daemon at rest, polled the way kubelet polls it.
pub async fn run(args: &Args) -> Result<()> {
    let target = Target::new(args).await?;
    let (mut rt, mut img) = target.clients().await?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.seconds) {
        rt.version(VersionRequest::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        rt.status(StatusRequest::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        rt.list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        rt.list_containers(ListContainersRequest::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        img.list_images(ListImagesRequest::default())
            .await
            .map_err(|e| err(e.to_string()))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pid = target.pid();
    let (rss, pss) = memory(pid);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    println!(
        "{} idle after {} s of kubelet-style polling: RSS {}  PSS {}  threads {}",
        target.name(),
        args.seconds,
        mib(rss),
        mib(pss),
        threads
    );
    Ok(())
}
