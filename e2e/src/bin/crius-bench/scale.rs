//! `scale`: a node at kubelet's high-density setting. `--count` pods
//! (default 250), one running container each, started one after another;
//! the daemon's memory with all of them; and the List calls kubelet makes
//! every few seconds (ListPodSandbox, ListContainers, ListContainerStats,
//! ListPodSandboxStats), `--runs` × 20 calls each, timed with the first
//! [`EARLY`] pods running and again with all of them, so a slowdown with
//! the count shows as the difference. Pod start (run + create + start) is
//! reported for the first and the last [`EARLY`] pods.

use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::{
    ListContainerStatsRequest, ListContainersRequest, ListPodSandboxRequest,
    ListPodSandboxStatsRequest,
};

use crate::args::Args;
use crate::target::Target;
use crate::util::{memory, mib, percentiles};

/// How many pods make the "few pods" point, and the windows of pod starts
/// compared.
const EARLY: usize = 10;

/// The four List calls' latencies, in call order.
type ListTimes = [(&'static str, Vec<Duration>); 4];

/// Times each List call `calls` times; also checks each answers with
/// `pods` pods and containers (so an empty answer cannot look fast).
async fn time_lists(rt: &mut RuntimeClient, calls: usize, pods: usize) -> Result<ListTimes> {
    let mut times: ListTimes = [
        ("ListPodSandbox", Vec::new()),
        ("ListContainers", Vec::new()),
        ("ListContainerStats", Vec::new()),
        ("ListPodSandboxStats", Vec::new()),
    ];
    let check = |what: &str, n: usize| match n >= pods {
        true => Ok(()),
        false => Err(err(format!("{what} answered {n} items with {pods} pods"))),
    };
    for _ in 0..calls {
        let t = Instant::now();
        let n = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .map_err(|e| err(format!("ListPodSandbox: {e}")))?
            .into_inner()
            .items
            .len();
        times[0].1.push(t.elapsed());
        check("ListPodSandbox", n)?;
        let t = Instant::now();
        let n = rt
            .list_containers(ListContainersRequest::default())
            .await
            .map_err(|e| err(format!("ListContainers: {e}")))?
            .into_inner()
            .containers
            .len();
        times[1].1.push(t.elapsed());
        check("ListContainers", n)?;
        let t = Instant::now();
        let n = rt
            .list_container_stats(ListContainerStatsRequest::default())
            .await
            .map_err(|e| err(format!("ListContainerStats: {e}")))?
            .into_inner()
            .stats
            .len();
        times[2].1.push(t.elapsed());
        check("ListContainerStats", n)?;
        let t = Instant::now();
        let n = rt
            .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
            .await
            .map_err(|e| err(format!("ListPodSandboxStats: {e}")))?
            .into_inner()
            .stats
            .len();
        times[3].1.push(t.elapsed());
        check("ListPodSandboxStats", n)?;
    }
    Ok(times)
}

/// Runs the scale bench.
pub async fn run(args: &Args) -> Result<()> {
    let count = args.count_or(250);
    if count < 2 * EARLY {
        return Err(err(format!("--count must be at least {}", 2 * EARLY)));
    }
    let registry = Registry::start()?;
    let images = TestImages::push(registry.addr()).await?;
    let target = Target::new(args).await?;
    let (mut rt, mut img) = target.clients().await?;
    let image = images.oci.reference.clone();
    cri::pull_image(&mut img, &image).await?;
    let name = target.name();
    let calls = args.runs * 20;

    let mut starts = Vec::with_capacity(count);
    let mut running = Vec::with_capacity(count);
    let mut early = None;
    let began = Instant::now();
    for i in 0..count {
        let pod = cri::pod_config(target.dir(), &format!("scale-{i}"));
        let t = Instant::now();
        let pod_id = cri::run_pod(&mut rt, &pod, &args.handler).await?;
        let config = cri::container_config("sleeper", &image, &["sleep", "100000"]);
        let ctr_id = cri::create_container(&mut rt, &pod_id, &pod, &config).await?;
        cri::start_container(&mut rt, &ctr_id).await?;
        starts.push(t.elapsed());
        running.push(pod_id);
        if i + 1 == EARLY {
            early = Some(time_lists(&mut rt, calls, EARLY).await?);
        }
    }
    let started_in = began.elapsed();
    let (rss, pss) = memory(target.pid());
    let late = time_lists(&mut rt, calls, count).await?;

    println!(
        "{name}: {count} pods with a running container each, started one after another in {:.1} s; \
         daemon RSS {} PSS {}",
        started_in.as_secs_f64(),
        mib(rss),
        mib(pss)
    );
    println!(
        "{name}: pod start (run+create+start), pods 1-{EARLY}:{:>4} {}",
        "",
        percentiles(&mut starts[..EARLY].to_vec())
    );
    println!(
        "{name}: pod start (run+create+start), pods {}-{count}: {}",
        count - EARLY + 1,
        percentiles(&mut starts[count - EARLY..].to_vec())
    );
    for ((call, mut few), (_, mut all)) in early
        .ok_or_else(|| err("no early figures"))?
        .into_iter()
        .zip(late)
    {
        println!(
            "{name}: {call:<20} with {EARLY:>3} pods {}",
            percentiles(&mut few)
        );
        println!(
            "{name}: {call:<20} with {count:>3} pods {}",
            percentiles(&mut all)
        );
    }
    let t = Instant::now();
    for pod_id in &running {
        cri::stop_and_remove_pod(&mut rt, pod_id).await?;
    }
    println!(
        "{name}: {count} pods stopped and removed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}
