//! `sandboxes`: RunPodSandbox latency, network included, and
//! StopPodSandbox + RemovePodSandbox latency, over N pods (default 50) made
//! one after another and kept running, then removed one after another.
//! Pods are what kubelet asks for (PID namespace mode CONTAINER, a cgroup
//! parent, a log directory); `--pid-namespace pod` makes them share one
//! (crius then starts its infra process).
//!
//! With `--conflist FILE`, crius's network is that file (so that another
//! runtime given the same file is measured on the same network); without,
//! the test network (bridge + host-local + portmap, no masquerade).

use std::time::{Duration, Instant};

use crius_e2e::cri;
use crius_e2e::{Result, err};
use k8s_cri::v1::{
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, RunPodSandboxRequest,
};

use crate::args::Args;
use crate::target::Target;

/// RunPodSandbox and StopPodSandbox + RemovePodSandbox latency.
pub async fn run(args: &Args) -> Result<()> {
    let pid_mode = match args.pid_namespace.as_str() {
        "container" => NamespaceMode::Container,
        "pod" => NamespaceMode::Pod,
        other => return Err(err(format!("--pid-namespace {other:?}: pod or container"))),
    };
    let target = Target::new(args).await?;
    if let (Some(conflist), Target::Crius(crius)) = (&args.conflist, &target) {
        let dir = crius.dir().cni_conf_dir();
        let text = std::fs::read(conflist)
            .map_err(|e| err(format!("read {}: {e}", conflist.display())))?;
        // Replaces the test network; the daemon follows the directory.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        std::fs::write(dir.join("10-bench.conflist"), text)
            .map_err(|e| err(format!("{}: {e}", dir.display())))?;
    }
    let (mut rt, _) = target.clients().await?;
    let pod = |name: &str| {
        let mut config = cri::pod_config(target.dir(), name);
        if let Some(linux) = config.linux.as_mut() {
            linux.security_context = Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: pid_mode as i32,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        config
    };

    // Warm-up, not counted: another runtime may pull its pause image here.
    let warm = cri::run_pod(&mut rt, &pod("warm-up"), "").await?;
    cri::stop_and_remove_pod(&mut rt, &warm).await?;

    let mut run = Vec::new();
    let mut ids = Vec::new();
    for i in 0..args.count {
        let config = pod(&format!("sandbox-{i}"));
        if !config.log_directory.is_empty() {
            std::fs::create_dir_all(&config.log_directory)
                .map_err(|e| err(format!("{}: {e}", config.log_directory)))?;
        }
        let t = Instant::now();
        let id = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: args.handler.clone(),
            })
            .await
            .map_err(|e| err(format!("RunPodSandbox: {e}")))?
            .into_inner()
            .pod_sandbox_id;
        run.push(t.elapsed());
        ids.push(id);
    }
    let mut remove = Vec::new();
    for id in &ids {
        let t = Instant::now();
        cri::stop_and_remove_pod(&mut rt, id).await?;
        remove.push(t.elapsed());
    }
    let name = target.name();
    println!(
        "{name}: RunPodSandbox (PID mode {}) {}",
        args.pid_namespace,
        summary(&mut run)
    );
    println!(
        "{name}: StopPodSandbox+RemovePodSandbox {}",
        summary(&mut remove)
    );
    if let Target::Crius(mut crius) = target {
        crius.stop().await?;
    }
    Ok(())
}

/// "n=… min … median … p99 … max … mean …" in ms.
fn summary(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "n=0".into();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = samples.len();
    let at = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let median = if n % 2 == 1 {
        ms(samples[n / 2])
    } else {
        (ms(samples[n / 2 - 1]) + ms(samples[n / 2])) / 2.0
    };
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / n as f64;
    format!(
        "n={n} min {:.1} ms  median {median:.1} ms  p99 {:.1} ms  max {:.1} ms  mean {mean:.1} ms",
        ms(samples[0]),
        ms(at(0.99)),
        ms(samples[n - 1]),
    )
}
