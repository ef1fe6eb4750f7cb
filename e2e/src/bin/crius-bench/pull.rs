//! `pull`: image pull time and throughput from a loopback registry into an
//! empty store.
//!
//! Builds and pushes three gzip images (deterministic content that
//! compresses like a typical image's): a single-layer one of
//! `--single-mib` MiB, a 5-layer one of `--five-mib` MiB, and a second
//! 5-layer one sharing the first 4 layers. Then, against crius (fresh) or
//! the runtime at `--endpoint`:
//! - `--runs` times: pull the single-layer image, RemoveImage it;
//! - pull the 5-layer image, then the one sharing 4 of its layers.
//!
//! Times are PullImage calls as a CRI client sees them.

use std::time::{Duration, Instant};

use crius_e2e::synth::{self, Flavour, LayerBlob};
use crius_e2e::{PushedImage, Registry, Result, cri, err};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, RemoveImageRequest};
use oci_client::secrets::RegistryAuth;
use tonic::transport::Channel;

use crate::args::Args;
use crate::target::Target;

const MIB: f64 = 1048576.0;

/// Pull time and throughput, side by side with `--endpoint`.
pub async fn run(args: &Args) -> Result<()> {
    let registry = Registry::start()?;
    let reg = registry.addr();
    let anonymous = RegistryAuth::Anonymous;

    let t = Instant::now();
    let single = [synth::bulk_layer(100, "single", args.single_mib << 20)?];
    let per_layer = (args.five_mib << 20) / 5;
    let mut five: Vec<LayerBlob> = Vec::new();
    for seed in 1..=5 {
        five.push(synth::bulk_layer(seed, &format!("layer{seed}"), per_layer)?);
    }
    let mut shared = five[..4].to_vec();
    shared.push(synth::bulk_layer(6, "layer6", per_layer)?);
    let single_img = synth::push(
        reg,
        "bench/single",
        "1",
        &single,
        Flavour::Oci,
        "single",
        &anonymous,
    )
    .await?;
    let five_img = synth::push(
        reg,
        "bench/five",
        "a",
        &five,
        Flavour::Oci,
        "five-a",
        &anonymous,
    )
    .await?;
    let shared_img = synth::push(
        reg,
        "bench/five",
        "b",
        &shared,
        Flavour::Oci,
        "five-b",
        &anonymous,
    )
    .await?;
    println!(
        "images built and pushed in {:.1} s: single {:.1} MiB; five {:.1} MiB ({} layers); \
         second five shares 4 layers, {:.1} MiB new",
        t.elapsed().as_secs_f64(),
        synth::total_size(&single) as f64 / MIB,
        synth::total_size(&five) as f64 / MIB,
        five.len(),
        shared[4].data.len() as f64 / MIB,
    );

    let target = Target::new(args).await?;
    let (_, mut img) = target.clients().await?;
    let name = target.name();

    let pid = target.pid();
    let mut times = Vec::new();
    for run in 1..=args.runs {
        let cpu = cpu_time(pid);
        let took = timed_pull(&mut img, &single_img).await?;
        let cpu = cpu_time(pid) - cpu;
        times.push(took);
        println!(
            "{name}: pull single-layer {:.1} MiB, run {run}: {:.0} ms ({:.0} MiB/s), daemon CPU {:.0} ms",
            synth::total_size(&single) as f64 / MIB,
            ms(took),
            synth::total_size(&single) as f64 / MIB / took.as_secs_f64(),
            ms(cpu)
        );
        remove(&mut img, &single_img).await?;
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{name}: pull single-layer {:.1} MiB: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} runs",
        synth::total_size(&single) as f64 / MIB,
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );

    let took = timed_pull(&mut img, &five_img).await?;
    let size = synth::total_size(&five) as f64 / MIB;
    println!(
        "{name}: pull 5-layer {size:.1} MiB into an empty store: {:.2} s ({:.0} MiB/s)",
        took.as_secs_f64(),
        size / took.as_secs_f64()
    );
    let took = timed_pull(&mut img, &shared_img).await?;
    let new = shared[4].data.len() as f64 / MIB;
    println!(
        "{name}: pull 5-layer {:.1} MiB sharing 4 layers ({new:.1} MiB new): {:.2} s ({:.0} MiB/s of new data)",
        synth::total_size(&shared) as f64 / MIB,
        took.as_secs_f64(),
        new / took.as_secs_f64()
    );
    remove(&mut img, &five_img).await?;
    remove(&mut img, &shared_img).await?;
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}

async fn timed_pull(
    img: &mut ImageServiceClient<Channel>,
    image: &PushedImage,
) -> Result<Duration> {
    let t = Instant::now();
    let id = cri::pull_image(img, &image.reference).await?;
    let took = t.elapsed();
    if id != image.image_id {
        return Err(err(format!(
            "PullImage {} answered {id}, expected {}",
            image.reference, image.image_id
        )));
    }
    Ok(took)
}

async fn remove(img: &mut ImageServiceClient<Channel>, image: &PushedImage) -> Result<()> {
    img.remove_image(RemoveImageRequest {
        image: Some(ImageSpec {
            image: image.image_id.clone(),
            ..Default::default()
        }),
    })
    .await
    .map_err(|e| err(format!("RemoveImage {}: {e}", image.reference)))?;
    Ok(())
}

/// User + system CPU time of a process and its reaped children (the
/// per-image work a runtime may hand to helpers, e.g. unpigz).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is 3rd.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks: u64 = fields.iter().sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
