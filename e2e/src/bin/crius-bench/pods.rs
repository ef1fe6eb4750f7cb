//! `pods`: pod start and stop latency, and memory with the pods running.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crius_e2e::cri;
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::{RemoveContainerRequest, StopContainerRequest};

use crate::args::Args;
use crate::target::Target;
use crate::util::{helpers, memory, mib, percentiles};

/// Pod start and stop latency, and memory with the pods running.
pub async fn run(args: &Args) -> Result<()> {
    let registry = Registry::start()?;
    let images = TestImages::push(registry.addr()).await?;
    let target = Target::new(args).await?;
    let (mut rt, mut img) = target.clients().await?;
    let image = images.oci.reference.clone();
    let pull_start = Instant::now();
    cri::pull_image(&mut img, &image).await?;
    println!(
        "{}: pull of the test image (2 layers, {:.1} MiB): {:.1} ms",
        target.name(),
        std::fs::metadata("/bin/busybox").map_or(0.0, |m| m.len() as f64 / 1048576.0),
        pull_start.elapsed().as_secs_f64() * 1000.0
    );

    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut record = |name, since: Instant| times.entry(name).or_default().push(since.elapsed());
    let mut running = Vec::new();
    for i in 0..args.count {
        let pod = cri::pod_config(target.dir(), &format!("bench-{i}"));
        let t = Instant::now();
        let pod_id = cri::run_pod(&mut rt, &pod, &args.handler).await?;
        record("1 RunPodSandbox", t);
        let config = cri::container_config("sleeper", &image, &["sleep", "1000"]);
        let t = Instant::now();
        let ctr_id = cri::create_container(&mut rt, &pod_id, &pod, &config).await?;
        record("2 CreateContainer", t);
        let t2 = Instant::now();
        cri::start_container(&mut rt, &ctr_id).await?;
        record("3 StartContainer", t2);
        record("4 pod start (run+create+start)", t);
        running.push((pod_id, ctr_id));
    }

    let (rss, pss) = memory(target.pid());
    let helper_pids = helpers(target.dir().path());
    let (h_rss, h_pss) = helper_pids
        .iter()
        .map(|p| memory(*p))
        .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
    println!(
        "{} with {} pods running: daemon RSS {} PSS {}; {} helper processes RSS {} PSS {} ({} PSS each)",
        target.name(),
        args.count,
        mib(rss),
        mib(pss),
        helper_pids.len(),
        mib(h_rss),
        mib(h_pss),
        mib(h_pss / helper_pids.len().max(1) as u64)
    );

    for (pod_id, ctr_id) in &running {
        let t = Instant::now();
        rt.stop_container(StopContainerRequest {
            container_id: ctr_id.clone(),
            timeout: 0,
        })
        .await
        .map_err(|e| err(e.to_string()))?;
        record("5 StopContainer (SIGKILL)", t);
        let t = Instant::now();
        rt.remove_container(RemoveContainerRequest {
            container_id: ctr_id.clone(),
        })
        .await
        .map_err(|e| err(e.to_string()))?;
        record("6 RemoveContainer", t);
        let t = Instant::now();
        cri::stop_and_remove_pod(&mut rt, pod_id).await?;
        record("7 StopPodSandbox+RemovePodSandbox", t);
    }
    for (name, samples) in times.iter_mut() {
        println!("{}: {:<36} {}", target.name(), name, percentiles(samples));
    }
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}
