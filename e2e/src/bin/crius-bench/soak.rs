//! `soak`: churns pods for N minutes — `--count` pods at a time, each
//! made with a container that writes a line, started, stopped and
//! removed, round after round — and prints the daemon's RSS, open file
//! descriptors and threads as it goes. They must stay flat: growth is a
//! leak.

use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::{RemoveContainerRequest, StopContainerRequest};

use crate::args::Args;
use crate::target::Target;
use crate::util::{memory, mib};

/// What is sampled of the daemon.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    threads: usize,
}

fn sample(pid: u32) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    Sample {
        rss_kib: memory(pid).0,
        fds,
        threads,
    }
}

/// One pod's life: RunPodSandbox, CreateContainer, StartContainer, then
/// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.
async fn one_pod(
    mut rt: RuntimeClient,
    pod: k8s_cri::v1::PodSandboxConfig,
    image: String,
    handler: String,
) -> Result<()> {
    let pod_id = cri::run_pod(&mut rt, &pod, &handler).await?;
    let config = cri::container_config("churn", &image, &["sh", "-c", "echo hi; sleep 3600"]);
    let id = cri::create_container(&mut rt, &pod_id, &pod, &config).await?;
    cri::start_container(&mut rt, &id).await?;
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .map_err(|e| err(format!("StopContainer {id}: {e}")))?;
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(|e| err(format!("RemoveContainer {id}: {e}")))?;
    cri::stop_and_remove_pod(&mut rt, &pod_id).await
}

/// Churns for `--minutes`, printing a sample every `--seconds` (at most
/// a minute apart).
pub async fn run(args: &Args) -> Result<()> {
    let registry = Registry::start()?;
    let images = TestImages::push(registry.addr()).await?;
    let target = Target::new(args).await?;
    let (rt, mut img) = target.clients().await?;
    let image = images.oci.reference.clone();
    cri::pull_image(&mut img, &image).await?;
    let pid = target.pid();
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs(args.seconds.clamp(1, 60));
    println!(
        "soak {}: {} pods at a time for {:.1} min; daemon pid {pid}",
        target.name(),
        args.count,
        args.minutes
    );
    println!(
        "{:>8} {:>8} {:>11} {:>5} {:>8}",
        "elapsed", "pods", "RSS", "fds", "threads"
    );
    let print = |elapsed: Duration, pods: usize, s: Sample| {
        println!(
            "{:>7.0}s {:>8} {:>11} {:>5} {:>8}",
            elapsed.as_secs_f64(),
            pods,
            mib(s.rss_kib),
            s.fds,
            s.threads
        );
    };
    let began = Instant::now();
    let first = sample(pid);
    print(Duration::ZERO, 0, first);
    let mut samples = vec![first];
    let (mut pods, mut round, mut next_print) = (0usize, 0usize, every);
    while began.elapsed() < total {
        let tasks: Vec<_> = (0..args.count)
            .map(|i| {
                let pod = cri::pod_config(target.dir(), &format!("soak{round}-{i}"));
                tokio::spawn(one_pod(
                    rt.clone(),
                    pod,
                    image.clone(),
                    args.handler.clone(),
                ))
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| err(format!("pod task: {e}")))??;
            pods += 1;
        }
        // The pods' log directories would pile up otherwise.
        let _ = std::fs::remove_dir_all(target.dir().logs());
        round += 1;
        if began.elapsed() >= next_print {
            let s = sample(pid);
            print(began.elapsed(), pods, s);
            samples.push(s);
            next_print += every;
        }
    }
    let last = sample(pid);
    print(began.elapsed(), pods, last);
    samples.push(last);
    // The first sample after warm-up (caches, thread pool) against the
    // last.
    let warm = samples.get(1).copied().unwrap_or(first);
    println!(
        "soak {}: {pods} pods in {round} rounds; after warm-up RSS {} -> {}, fds {} -> {}, threads {} -> {}",
        target.name(),
        mib(warm.rss_kib),
        mib(last.rss_kib),
        warm.fds,
        last.fds,
        warm.threads,
        last.threads
    );
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}
