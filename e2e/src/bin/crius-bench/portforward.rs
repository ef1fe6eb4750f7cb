//! `portforward`: PortForward latency and throughput against a busybox
//! httpd in a pod: the RPC, the upgrade to a SPDY session, a small request
//! round trip over an open session (the stream pair, the connection in the
//! pod's namespace, the HTTP exchange), and a large download, next to the
//! same request made straight to the pod's IP.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crius_e2e::cri;
use crius_e2e::portforward::{self, http_body};
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::PortForwardRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::Args;
use crate::target::Target;
use crate::util::{memory, mib, percentiles};

/// Size of the file downloaded for throughput.
const BIG_MIB: usize = 64;

const WEB: &str = "mkdir -p /www && echo hello > /www/index.html && \
    head -c 67108864 /dev/zero > /www/big && exec httpd -f -p 8080 -h /www";

/// PortForward latency and throughput.
pub async fn run(args: &Args) -> Result<()> {
    let registry = Registry::start()?;
    let images = TestImages::push(registry.addr()).await?;
    let target = Target::new(args).await?;
    let Target::Crius(mut crius) = target else {
        return Err(err("portforward runs against crius only"));
    };
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &images.oci.reference).await?;
    let pod = cri::pod_config(crius.dir(), "bench-pf");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await?;
    let web = cri::container_config("web", &images.oci.reference, &["sh", "-c", WEB]);
    let ctr = cri::create_container(&mut rt, &pod_id, &pod, &web).await?;
    cri::start_container(&mut rt, &ctr).await?;
    let pod_ip = cri::pod_status(&mut rt, &pod_id)
        .await?
        .network
        .map(|n| n.ip)
        .unwrap_or_default();

    let get = |path: &str| format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes();
    let url_of = async |rt: &mut cri::RuntimeClient| -> Result<String> {
        Ok(rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod_id.clone(),
                port: vec![],
            })
            .await
            .map_err(|e| err(e.to_string()))?
            .into_inner()
            .url)
    };
    // Wait for httpd.
    for attempt in 0.. {
        let session = portforward::spdy_session(&url_of(&mut rt).await?).await?;
        let got = portforward::forward(&session, 0, 8080, &get("/")).await?;
        session.close(Duration::from_secs(5)).await;
        if got.error.is_empty() {
            break;
        }
        if attempt > 600 {
            return Err(err(format!("httpd did not come up: {}", got.error)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for _ in 0..args.count {
        let t = Instant::now();
        let url = url_of(&mut rt).await?;
        times
            .entry("1 PortForward RPC")
            .or_default()
            .push(t.elapsed());
        let t = Instant::now();
        let session = portforward::spdy_session(&url).await?;
        times
            .entry("2 upgrade to SPDY")
            .or_default()
            .push(t.elapsed());
        session.close(Duration::from_secs(5)).await;
    }
    let session = portforward::spdy_session(&url_of(&mut rt).await?).await?;
    for i in 0..args.count as u32 * 10 {
        let t = Instant::now();
        let got = portforward::forward(&session, i + 1, 8080, &get("/")).await?;
        times
            .entry("3 GET / over the forward")
            .or_default()
            .push(t.elapsed());
        if http_body(&got.data) != b"hello\n" {
            return Err(err(format!("unexpected answer {got:?}")));
        }
        let t = Instant::now();
        direct_get(&pod_ip, &get("/")).await?;
        times
            .entry("4 GET / straight to the pod IP")
            .or_default()
            .push(t.elapsed());
    }
    for (name, samples) in times.iter_mut() {
        println!("crius: {name:<34} {}", percentiles(samples));
    }

    let t = Instant::now();
    let got = portforward::forward(&session, 1_000_000, 8080, &get("/big")).await?;
    let forwarded = t.elapsed();
    if http_body(&got.data).len() != BIG_MIB << 20 {
        return Err(err(format!("big: got {} bytes", got.data.len())));
    }
    let t = Instant::now();
    let direct = direct_get(&pod_ip, &get("/big")).await?;
    let straight = t.elapsed();
    if http_body(&direct).len() != BIG_MIB << 20 {
        return Err(err(format!("big direct: got {} bytes", direct.len())));
    }
    let rate = |d: Duration| BIG_MIB as f64 / d.as_secs_f64();
    println!(
        "crius: {BIG_MIB} MiB download: over the forward {:.0} MiB/s, straight to the pod IP {:.0} MiB/s",
        rate(forwarded),
        rate(straight)
    );
    let (rss, pss) = memory(crius.pid().unwrap_or(0));
    println!(
        "crius: daemon after the run: RSS {} PSS {}",
        mib(rss),
        mib(pss)
    );
    session.close(Duration::from_secs(5)).await;
    cri::stop_and_remove_pod(&mut rt, &pod_id).await?;
    crius.stop().await?;
    drop(registry);
    Ok(())
}

/// The same request over plain TCP to the pod's IP.
async fn direct_get(ip: &str, request: &[u8]) -> Result<Vec<u8>> {
    let mut tcp = tokio::net::TcpStream::connect((ip, 8080))
        .await
        .map_err(|e| err(format!("connect {ip}:8080: {e}")))?;
    tcp.write_all(request)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(out)
}
