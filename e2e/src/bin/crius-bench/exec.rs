//! `exec`: ExecSync and streaming exec latency, and attach round trips,
//! in a busybox container: ExecSync of `echo`; an Exec session of `echo`
//! from the RPC to the exit status (SPDY, WebSocket v5, and with a
//! terminal); a line echoed by `cat` over an open exec session and over
//! an attach session; the container monitor's memory with attachers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::remotecommand::{RemoteCommand, Stdio, Transport};
use crius_e2e::{Registry, Result, TestImages, err};
use k8s_cri::v1::{AttachRequest, ExecRequest, ExecSyncRequest};

use crate::args::Args;
use crate::target::Target;
use crate::util::{helpers, memory, mib, percentiles};

const SESSION: Duration = Duration::from_secs(30);

async fn exec_url(rt: &mut RuntimeClient, id: &str, cmd: &[&str], s: Stdio) -> Result<String> {
    Ok(rt
        .exec(ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            tty: s.tty,
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .into_inner()
        .url)
}

/// Exec and attach latency.
pub async fn run(args: &Args) -> Result<()> {
    let registry = Registry::start()?;
    let images = TestImages::push(registry.addr()).await?;
    let target = Target::new(args).await?;
    let Target::Crius(mut crius) = target else {
        return Err(err("exec runs against crius only"));
    };
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();
    cri::pull_image(&mut img, &images.oci.reference).await?;
    let pod = cri::pod_config(crius.dir(), "bench-exec");
    let pod_id = cri::run_pod(&mut rt, &pod, &args.handler).await?;
    let mut config = cri::container_config("cat", &images.oci.reference, &["cat"]);
    config.stdin = true;
    let ctr = cri::create_container(&mut rt, &pod_id, &pod, &config).await?;
    cri::start_container(&mut rt, &ctr).await?;
    let runtime = if args.handler.is_empty() {
        "default handler"
    } else {
        args.handler.as_str()
    };

    let out = Stdio {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let tty = Stdio {
        stdout: true,
        tty: true,
        ..Default::default()
    };
    let io = Stdio {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for _ in 0..args.count {
        let t = Instant::now();
        let r = rt
            .exec_sync(ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["echo".into(), "hi".into()],
                timeout: 10,
            })
            .await
            .map_err(|e| err(e.to_string()))?
            .into_inner();
        times
            .entry("1 ExecSync echo")
            .or_default()
            .push(t.elapsed());
        if r.stdout != b"hi\n" {
            return Err(err(format!("ExecSync: {r:?}")));
        }
        for (name, transport, stdio) in [
            ("2 Exec echo, SPDY", Transport::Spdy, out),
            ("3 Exec echo, WebSocket v5", Transport::WebSocketV5, out),
            ("4 Exec echo, SPDY, terminal", Transport::Spdy, tty),
        ] {
            let t = Instant::now();
            let url = exec_url(&mut rt, &ctr, &["echo", "hi"], stdio).await?;
            let got = RemoteCommand::connect(&url, transport, stdio)
                .await?
                .finish(SESSION)
                .await?;
            times.entry(name).or_default().push(t.elapsed());
            if got.exit_code() != Some(0) || !got.stdout.starts_with(b"hi") {
                return Err(err(format!("{name}: {got:?}")));
            }
        }
    }
    // Round trips over open sessions.
    let url = exec_url(&mut rt, &ctr, &["cat"], io).await?;
    let mut exec = RemoteCommand::connect(&url, Transport::Spdy, io).await?;
    let attach_url = rt
        .attach(AttachRequest {
            container_id: ctr.clone(),
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .into_inner()
        .url;
    let mut attach = RemoteCommand::connect(&attach_url, Transport::Spdy, io).await?;
    let watch = Stdio {
        stdout: true,
        ..Default::default()
    };
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let url = rt
            .attach(AttachRequest {
                container_id: ctr.clone(),
                stdout: true,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.to_string()))?
            .into_inner()
            .url;
        watchers.push(RemoteCommand::connect(&url, Transport::Spdy, watch).await?);
    }
    for i in 0..args.count * 10 {
        let line = format!("line-{i}\n");
        let t = Instant::now();
        exec.send_stdin(line.as_bytes()).await?;
        exec.read_stdout_until(&line, SESSION).await?;
        times
            .entry("5 a line through cat, open Exec session")
            .or_default()
            .push(t.elapsed());
        exec.clear_stdout();
        let t = Instant::now();
        attach.send_stdin(line.as_bytes()).await?;
        attach.read_stdout_until(&line, SESSION).await?;
        times
            .entry("6 a line through cat, open Attach session")
            .or_default()
            .push(t.elapsed());
        attach.clear_stdout();
    }
    for (name, samples) in times.iter_mut() {
        println!("crius ({runtime}): {name:<42} {}", percentiles(samples));
    }
    for pid in helpers(crius.dir().path()) {
        let (rss, pss) = memory(pid);
        println!(
            "crius ({runtime}): monitor pid {pid} with 4 attachers: RSS {rss} KiB  PSS {pss} KiB"
        );
    }
    let (rss, pss) = memory(crius.pid().unwrap_or(0));
    println!(
        "crius ({runtime}): daemon after the run: RSS {} PSS {}",
        mib(rss),
        mib(pss)
    );
    exec.close_stdin().await?;
    exec.finish(SESSION).await?;
    attach.abort();
    for w in watchers {
        w.abort();
    }
    cri::stop_and_remove_pod(&mut rt, &pod_id).await?;
    crius.stop().await?;
    drop(registry);
    Ok(())
}
