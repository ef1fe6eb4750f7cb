//! `stats`: latency of ListContainerStats and ListPodSandboxStats (what
//! kubelet and `crictl stats` call) with `--count` containers running, in
//! pods of five, each call repeated `--runs` × 20 times; and of
//! ListPodSandboxMetrics.

use std::time::Instant;

use crius_e2e::cri;
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::{
    ListContainerStatsRequest, ListPodSandboxMetricsRequest, ListPodSandboxStatsRequest,
};

use crate::args::Args;
use crate::target::Target;
use crate::util::percentiles;

/// Containers per pod.
const PER_POD: usize = 5;

/// ListContainerStats / ListPodSandboxStats latency.
pub async fn run(args: &Args) -> Result<()> {
    let registry = Registry::start()?;
    let images = TestImages::push(registry.addr()).await?;
    let target = Target::new(args).await?;
    let (mut rt, mut img) = target.clients().await?;
    let image = images.oci.reference.clone();
    cri::pull_image(&mut img, &image).await?;
    let name = target.name();

    let mut pods = Vec::new();
    for p in 0..args.count.div_ceil(PER_POD) {
        let pod = cri::pod_config(target.dir(), &format!("bench-stats-{p}"));
        let pod_id = cri::run_pod(&mut rt, &pod, &args.handler).await?;
        for c in 0..PER_POD.min(args.count - p * PER_POD) {
            let config = cri::container_config(&format!("c{c}"), &image, &["sleep", "100000"]);
            let id = cri::create_container(&mut rt, &pod_id, &pod, &config).await?;
            cri::start_container(&mut rt, &id).await?;
        }
        pods.push(pod_id);
    }
    let calls = args.runs * 20;
    let (mut containers, mut sandboxes, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_containers, mut n_pods) = (0, 0);
    for _ in 0..calls {
        let t = Instant::now();
        let r = rt
            .list_container_stats(ListContainerStatsRequest::default())
            .await
            .map_err(|e| err(format!("ListContainerStats: {e}")))?;
        containers.push(t.elapsed());
        n_containers = r.into_inner().stats.len();
        let t = Instant::now();
        let r = rt
            .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
            .await
            .map_err(|e| err(format!("ListPodSandboxStats: {e}")))?;
        sandboxes.push(t.elapsed());
        n_pods = r.into_inner().stats.len();
        let t = Instant::now();
        match rt
            .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest::default())
            .await
        {
            Ok(_) => metrics.push(t.elapsed()),
            // Not every runtime serves it.
            Err(e) if e.code() == tonic::Code::Unimplemented => {}
            Err(e) => return Err(err(format!("ListPodSandboxMetrics: {e}"))),
        }
    }
    println!(
        "{name}: {} pods, {} containers running; {calls} calls each",
        pods.len(),
        args.count
    );
    println!(
        "{name}: ListContainerStats   ({n_containers:>3} stats) {}",
        percentiles(&mut containers)
    );
    println!(
        "{name}: ListPodSandboxStats  ({n_pods:>3} stats) {}",
        percentiles(&mut sandboxes)
    );
    if !metrics.is_empty() {
        println!(
            "{name}: ListPodSandboxMetrics ({n_pods:>3} pods)  {}",
            percentiles(&mut metrics)
        );
    }
    for pod_id in &pods {
        cri::stop_and_remove_pod(&mut rt, pod_id).await?;
    }
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}
