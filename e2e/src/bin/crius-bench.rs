//! `crius-bench`: figures for BENCHMARKS.md — memory of an idle runtime
//! and pod start/stop latency — against crius (started here, in its own
//! temp directories) or any other CRI runtime's socket, side by side.
//!
//! ```text
//! crius-bench idle [--seconds S] [--endpoint SOCKET --pid PID]
//! crius-bench pods [--count N] [--handler H] [--endpoint SOCKET --pid PID]
//! crius-bench push --registry HOST:PORT   # the test images, for trying things by hand
//! ```
//!
//! Build it and crius in release mode first (`cargo build --release
//! --bins`), as root. With `--endpoint`, the runtime there must reach the
//! loopback registry this starts (containerd does: loopback is plain HTTP).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::{Crius, CriusOptions, NodeDir, Registry, Result, TestImages, connect_unix, err};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, RemoveContainerRequest,
    StatusRequest, StopContainerRequest, VersionRequest,
};

/// The runtime under test: crius started here, or another one's socket.
enum Target {
    Crius(Box<Crius>),
    External {
        socket: PathBuf,
        pid: u32,
        dir: NodeDir,
    },
}

impl Target {
    async fn new(args: &Args) -> Result<Target> {
        match &args.endpoint {
            Some(socket) => Ok(Target::External {
                socket: socket.clone(),
                pid: args.pid.ok_or_else(|| err("--endpoint needs --pid"))?,
                dir: NodeDir::create(false)?,
            }),
            None => {
                let crius = Crius::start(CriusOptions {
                    metrics: false,
                    log_level: "warn".into(),
                    ..Default::default()
                })
                .await?;
                Ok(Target::Crius(Box::new(crius)))
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Target::Crius(_) => "crius".into(),
            Target::External { pid, .. } => comm(*pid),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Target::Crius(c) => c.pid().unwrap_or(0),
            Target::External { pid, .. } => *pid,
        }
    }

    fn dir(&self) -> &NodeDir {
        match self {
            Target::Crius(c) => c.dir(),
            Target::External { dir, .. } => dir,
        }
    }

    async fn clients(
        &self,
    ) -> Result<(RuntimeClient, ImageServiceClient<tonic::transport::Channel>)> {
        let channel = match self {
            Target::Crius(c) => return Ok((c.runtime_client(), c.image_client())),
            Target::External { socket, .. } => connect_unix(socket).await?,
        };
        Ok((
            RuntimeServiceClient::new(channel.clone()),
            ImageServiceClient::new(channel),
        ))
    }
}

struct Args {
    command: String,
    seconds: u64,
    count: usize,
    handler: String,
    endpoint: Option<PathBuf>,
    pid: Option<u32>,
    registry: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut argv = std::env::args().skip(1);
    let mut args = Args {
        command: argv.next().unwrap_or_default(),
        seconds: 10,
        count: 20,
        handler: String::new(),
        endpoint: None,
        pid: None,
        registry: None,
    };
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .ok_or_else(|| err(format!("{flag} needs a value")))?;
        let bad = |_| err(format!("{flag}: bad value {value:?}"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().map_err(bad)?,
            "--count" => args.count = value.parse().map_err(bad)?,
            "--handler" => args.handler = value,
            "--endpoint" => args.endpoint = Some(value.trim_start_matches("unix://").into()),
            "--pid" => args.pid = Some(value.parse().map_err(bad)?),
            "--registry" => args.registry = Some(value),
            _ => return Err(err(format!("unknown flag {flag}"))),
        }
    }
    Ok(args)
}

/// A process's command name.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("pid {pid}"))
}

/// (VmRSS, Pss) of a process, KiB.
fn memory(pid: u32) -> (u64, u64) {
    let field = |file: &str, name: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (field("status", "VmRSS:"), field("smaps_rollup", "Pss:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The per-container helper processes (monitors, shims) of a runtime: the
/// children of init whose command line mentions `marker`, or named like a
/// shim.
fn helpers(marker: &Path) -> Vec<u32> {
    let marker = marker.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let name = comm(pid);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if (name == "crius-monitor" && cmdline.contains(&marker))
            || name.starts_with("containerd-shim")
            || name == "conmon"
        {
            out.push(pid);
        }
    }
    out
}

/// Percentiles of samples, as "p50 p90 p99 max" in ms.
fn percentiles(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |p: f64| {
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    format!(
        "n={:<3} p50 {:>7.1} ms   p90 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

/// The daemon at rest, polled the way kubelet polls it.
async fn idle(args: &Args) -> Result<()> {
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

/// Pod start and stop latency, and memory with the pods running.
async fn pods(args: &Args) -> Result<()> {
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

/// Pushes the test images to a registry that is already running.
async fn push(args: &Args) -> Result<()> {
    let registry = args
        .registry
        .as_deref()
        .ok_or_else(|| err("push needs --registry HOST:PORT"))?;
    let images = TestImages::push(registry).await?;
    for image in images.all() {
        println!("{}  (image id {})", image.reference, image.image_id);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(args) if args.command == "idle" => idle(&args).await,
        Ok(args) if args.command == "pods" => pods(&args).await,
        Ok(args) if args.command == "push" => push(&args).await,
        Ok(_) => Err(err(
            "usage: crius-bench idle|pods|push [--seconds S] [--count N] [--handler H] \
             [--endpoint SOCKET --pid PID] [--registry HOST:PORT]",
        )),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
