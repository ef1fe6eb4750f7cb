//! `containers`: CreateContainer + StartContainer latency over N
//! containers in one pod, and the memory of the per-container helper
//! processes (crius's monitors, containerd's shims).
//!
//! With `--registry HOST:PORT` the test images and a pause image
//! (`HOST:PORT/crius-e2e/busybox:pause`) are pushed to a registry already
//! running, so that a runtime started beforehand (containerd, with that
//! pause image as its `sandbox_image`) can be measured side by side.

use std::time::{Duration, Instant};

use crius_e2e::cri;
use crius_e2e::image::push_pause;
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::{RemoveContainerRequest, StopContainerRequest};

use crate::args::Args;
use crate::target::Target;
use crate::util::{helpers, memory};

/// "min … p50 … p99 … max" of samples, in ms.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        ms(samples[i])
    };
    format!(
        "n={:<3} min {:>6.1} ms   p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms",
        samples.len(),
        ms(samples[0]),
        at(0.5),
        at(0.99),
        ms(samples[samples.len() - 1])
    )
}

/// Helper processes of the target other than those in `before`; for
/// another runtime, only those whose command line names its socket (other
/// containerds may run on the machine).
fn new_helpers(target: &Target, before: &[u32]) -> Vec<u32> {
    let socket = match target {
        Target::External { socket, .. } => Some(socket.to_string_lossy().into_owned()),
        Target::Crius(_) => None,
    };
    helpers(target.dir().path())
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter(|p| {
            socket.as_ref().is_none_or(|s| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(s.as_str()))
            })
        })
        .collect()
}

/// CreateContainer + StartContainer latency and helper memory.
pub async fn run(args: &Args) -> Result<()> {
    // A registry given with --registry (for a runtime started beforehand
    // that must pull its pause image from it), else one of our own.
    let own_registry = match &args.registry {
        Some(_) => None,
        None => Some(Registry::start()?),
    };
    let registry = match (&args.registry, &own_registry) {
        (Some(addr), _) => addr.clone(),
        (None, Some(r)) => r.addr().to_string(),
        (None, None) => return Err(err("no registry")),
    };
    let images = TestImages::push(&registry).await?;
    let pause = push_pause(&registry).await?;
    println!("pause image for runtimes that need one: {pause}");
    let target = Target::new(args).await?;
    let (mut rt, mut img) = target.clients().await?;
    let image = images.oci.reference.clone();
    cri::pull_image(&mut img, &image).await?;
    let name = target.name();
    let runtime = if args.handler.is_empty() {
        "default handler"
    } else {
        args.handler.as_str()
    };
    let before = helpers(target.dir().path());

    let pod = cri::pod_config(target.dir(), "bench-containers");
    let pod_id = cri::run_pod(&mut rt, &pod, &args.handler).await?;
    let (mut create, mut start, mut both) = (Vec::new(), Vec::new(), Vec::new());
    let mut ids = Vec::new();
    let mut first_helper = None;
    for i in 0..args.count {
        let config = cri::container_config(&format!("c{i}"), &image, &["sleep", "100000"]);
        let t = Instant::now();
        let id = cri::create_container(&mut rt, &pod_id, &pod, &config).await?;
        create.push(t.elapsed());
        let t2 = Instant::now();
        cri::start_container(&mut rt, &id).await?;
        start.push(t2.elapsed());
        both.push(t.elapsed());
        ids.push(id);
        if i == 0 {
            // One helper alone (containerd also has the pod's own shim):
            // just after the start, and idle (crius's monitor gives back
            // memory after 5 s without activity).
            for (settle, when) in [(500, "just started"), (6000, "idle")] {
                tokio::time::sleep(Duration::from_millis(settle)).await;
                let pids = new_helpers(&target, &before);
                first_helper = pids.last().copied();
                for pid in &pids {
                    let (rss, pss) = memory(*pid);
                    println!(
                        "{name} ({runtime}): helper pid {pid} with 1 container running ({when}): RSS {rss} KiB  PSS {pss} KiB"
                    );
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids = new_helpers(&target, &before);
    let mems: Vec<(u64, u64)> = pids.iter().map(|p| memory(*p)).collect();
    let total_pss: u64 = mems.iter().map(|m| m.1).sum();
    let max_rss = mems.iter().map(|m| m.0).max().unwrap_or(0);
    println!(
        "{name} ({runtime}): {} helpers with {} containers running: PSS {} KiB each on average, largest RSS {max_rss} KiB",
        pids.len(),
        args.count,
        total_pss / pids.len().max(1) as u64,
    );
    if let Some(pid) = first_helper {
        let (rss, pss) = memory(pid);
        println!("{name} ({runtime}): the first helper now: RSS {rss} KiB  PSS {pss} KiB");
    }
    println!(
        "{name} ({runtime}): CreateContainer                {}",
        summary(&mut create)
    );
    println!(
        "{name} ({runtime}): StartContainer                 {}",
        summary(&mut start)
    );
    println!(
        "{name} ({runtime}): CreateContainer+StartContainer {}",
        summary(&mut both)
    );

    for id in &ids {
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
    }
    cri::stop_and_remove_pod(&mut rt, &pod_id).await?;
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}
