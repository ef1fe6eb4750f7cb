//! The daemon itself: a stop signal lets in-flight calls finish and leaves
//! containers running; a restarted daemon finds them again, with exits that
//! happened while it was down; metrics and JSON logs.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails, never
//! skips, without it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crius_e2e::cri;
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks, http_get, sample};
use k8s_cri::v1::{
    CgroupDriver, ContainerState, ContainerStatusRequest, RemoveContainerRequest,
    RuntimeConfigRequest, StopContainerRequest, VersionRequest,
};
use tonic::Code;

/// What `runc state` says of a container: its status.
fn runc_status(crius: &Crius, id: &str) -> String {
    let root = crius.dir().state().join("runtime").join("runc");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["state", id])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    state["status"].as_str().unwrap_or("unknown").to_string()
}

#[tokio::test]
async fn containers_outlive_a_daemon_restart() {
    let registry = Registry::start().unwrap();
    let images = TestImages::push(registry.addr()).await.unwrap();
    let mut crius = Crius::start(CriusOptions::default()).await.unwrap();
    let mut rt = crius.runtime_client();
    let mut img = crius.image_client();
    let image = &images.oci.reference;
    cri::pull_image(&mut img, image).await.unwrap();
    let pod = cri::pod_config(crius.dir(), "restart");
    let pod_id = cri::run_pod(&mut rt, &pod, "").await.unwrap();

    // One that keeps writing, one that exits while the daemon is down, one
    // that ignores SIGTERM and is being stopped when the daemon is told to
    // stop.
    let ticker = [
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ];
    let late = ["sh", "-c", "sleep 2; exit 7"];
    let stubborn = ["sleep", "1000"];
    let mut ids = Vec::new();
    for (name, args) in [
        ("ticker", &ticker[..]),
        ("late", &late[..]),
        ("stubborn", &stubborn[..]),
    ] {
        let config = cri::container_config(name, image, args);
        let id = cri::create_container(&mut rt, &pod_id, &pod, &config)
            .await
            .unwrap();
        cri::start_container(&mut rt, &id).await.unwrap();
        cri::wait_container_state(&mut rt, &id, ContainerState::ContainerRunning)
            .await
            .unwrap();
        ids.push(id);
    }
    let (ticker_id, late_id, stubborn_id) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

    // SIGTERM while a StopContainer call is under way: the call finishes
    // (SIGTERM ignored, SIGKILL after 2 s), then the daemon exits 0.
    let mut rt2 = crius.runtime_client();
    let stop_call = tokio::spawn(async move {
        rt2.stop_container(StopContainerRequest {
            container_id: stubborn_id,
            timeout: 2,
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    crius.stop().await.unwrap();
    let stopped = stop_call.await.unwrap();
    assert!(stopped.is_ok(), "in-flight StopContainer: {stopped:?}");

    // The daemon is gone; its containers are not.
    assert_eq!(runc_status(&crius, &ticker_id), "running");
    let log = crius.dir().pod_log_dir("restart").join("ticker.log");
    let before = cri::read_cri_log(&log).unwrap().len();
    tokio::time::sleep(Duration::from_millis(2500)).await; // `late` exits meanwhile
    let during = cri::read_cri_log(&log).unwrap().len();
    assert!(
        during > before,
        "the log stopped flowing: {before} → {during}"
    );

    crius.restart().await.unwrap();
    let mut rt = crius.runtime_client();
    let status = cri::container_status(&mut rt, &ticker_id).await.unwrap();
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    let status = cri::wait_container_state(&mut rt, &late_id, ContainerState::ContainerExited)
        .await
        .unwrap();
    assert_eq!(status.exit_code, 7, "{status:?}");
    assert!(status.started_at < status.finished_at, "{status:?}");
    let status = cri::container_status(&mut rt, &ids[2]).await.unwrap();
    assert_eq!(status.exit_code, 137, "{status:?}");
    assert_eq!(cri::pod_status(&mut rt, &pod_id).await.unwrap().state, 0);

    // And it can still stop what it found.
    rt.stop_container(StopContainerRequest {
        container_id: ticker_id.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    let status = cri::container_status(&mut rt, &ticker_id).await.unwrap();
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    for id in &ids {
        rt.remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    }
    cri::stop_and_remove_pod(&mut rt, &pod_id).await.unwrap();
    crius.stop().await.unwrap();
    assert_no_leaks(&crius);
    // Its log went to a file: plain text, not a terminal's colour codes.
    let log = std::fs::read(crius.dir().daemon_log()).unwrap();
    assert!(
        log.windows(5).any(|w| w == b"INFO "),
        "no INFO line in the daemon's log"
    );
    assert!(!log.contains(&0x1b), "ESC in the daemon's log file");
}

#[tokio::test]
async fn metrics_count_calls_and_logs_are_json_when_asked() {
    let mut crius = Crius::start(CriusOptions {
        config: Some("log_format = \"json\"\n".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut rt = crius.runtime_client();
    let addr = crius.metrics_addr().unwrap();

    // The socket kubelet connects to: owner and group only, owned by
    // root (the daemon's user).
    let meta = std::fs::metadata(crius.dir().socket()).unwrap();
    let mode = meta.permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "socket owner {}:{}",
        meta.uid(),
        meta.gid()
    );
    let config = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );
    // `crictl info`: the configuration in effect, the handlers with their
    // binaries and versions, the network.
    let info = rt
        .status(k8s_cri::v1::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    let json = |key: &str| -> serde_json::Value {
        serde_json::from_str(
            info.get(key)
                .unwrap_or_else(|| panic!("no {key}: {info:?}")),
        )
        .unwrap()
    };
    let effective = json("config");
    assert_eq!(
        effective["root"],
        crius.dir().root().to_string_lossy().as_ref()
    );
    assert_eq!(effective["log_format"], "json");
    assert!(effective["runtime"]["handlers"].is_object(), "{effective}");
    assert!(
        effective["registry"]["auth_file"].is_string(),
        "{effective}"
    );
    let handlers = json("runtimeHandlers");
    for (name, says) in [("runc", "runc version"), ("crun", "crun version")] {
        let h = handlers
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {handlers}"));
        assert!(h["binary"].as_str().unwrap().ends_with(name), "{h}");
        assert!(h["version"].as_str().unwrap().starts_with(says), "{h}");
    }
    assert!(json("network")["ready"].is_boolean());
    let series_ok = "crius_grpc_requests_total{code=\"OK\",method=\"Version\"}";
    let series_nf = "crius_grpc_requests_total{code=\"NotFound\",method=\"ContainerStatus\"}";
    let first = http_get(addr, "/metrics").unwrap();
    let ok_before = sample(&first, series_ok).unwrap_or(0.0);

    for _ in 0..3 {
        rt.version(VersionRequest::default()).await.unwrap();
    }
    let missing = rt
        .container_status(ContainerStatusRequest {
            container_id: "0000000000000000".into(),
            verbose: false,
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);

    let response = http_get(addr, "/metrics").unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{response}"
    );
    assert!(response.contains("text/plain; version=0.0.4"), "{response}");
    // What was built, from what, serving what; `crius --version` says the same.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
    let version = env!("CARGO_PKG_VERSION");
    let info = format!(
        "crius_build_info{{commit=\"{commit}\",cri_api_version=\"v1\",version=\"{version}\"}}"
    );
    assert_eq!(sample(&response, &info), Some(1.0), "{response}");
    let out = std::process::Command::new(crius_e2e::crius_binary().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("crius {version} ({commit})")
    );
    assert_eq!(
        sample(&response, series_ok),
        Some(ok_before + 3.0),
        "{response}"
    );
    assert_eq!(sample(&response, series_nf), Some(1.0), "{response}");
    let histogram = "crius_grpc_request_duration_seconds_count{method=\"Version\"}";
    assert!(
        sample(&response, histogram).is_some_and(|n| n >= 3.0),
        "{response}"
    );
    assert!(http_get(addr, "/nothing").unwrap().contains(" 404 "));
    // A failed pull, which an operator looks for in the log.
    let pull = cri::pull_image(&mut crius.image_client(), "127.0.0.1:1/crius-e2e/none:x").await;
    assert!(pull.is_err(), "{pull:?}");

    crius.stop().await.unwrap();
    let log = std::fs::read_to_string(crius.dir().daemon_log()).unwrap();
    assert!(!log.is_empty());
    let mut warned = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
        if v["level"] == "WARN" {
            warned.push(v["fields"].clone());
        }
    }
    // At WARN, naming the method and the object; a NotFound is no news.
    assert!(
        warned.iter().any(|f| f["method"] == "PullImage"
            && f["error"]
                .as_str()
                .is_some_and(|e| e.contains("127.0.0.1:1"))),
        "{warned:?}"
    );
    assert!(
        !warned.iter().any(|f| f["method"] == "ContainerStatus"),
        "{warned:?}"
    );
    assert_no_leaks(&crius);
}

#[tokio::test]
async fn a_client_that_stalls_does_not_hold_up_a_stop() {
    let mut crius = Crius::start(CriusOptions::without_cni()).await.unwrap();
    // A client whose runtime nobody drives after its call, on a thread of
    // its own: its connection stays open and never answers the server's
    // GOAWAY and ping, as a frozen or stopped process would.
    let socket = crius.dir().socket();
    let (called_tx, called_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let stalled = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = runtime.block_on(async {
            let channel = crius_e2e::connect_unix(&socket)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let mut rt =
                k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel.clone());
            rt.version(VersionRequest::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(channel)
        });
        let ok = channel.is_ok();
        let _ = called_tx.send(channel.as_ref().map(|_| ()).map_err(Clone::clone));
        if ok {
            // Stalled: nothing polls the connection until released.
            let _ = release_rx.recv();
        }
    });
    called_rx.recv().unwrap().unwrap();
    // A well-behaved idle client alongside.
    let mut rt = crius.runtime_client();
    rt.version(VersionRequest::default()).await.unwrap();

    let began = std::time::Instant::now();
    crius.stop().await.unwrap();
    let took = began.elapsed();
    let log = crius.log_tail(40);
    assert!(
        !log.contains("calls still in flight"),
        "the stop waited out its grace for idle connections ({took:?}):\n{log}"
    );
    let _ = release_tx.send(());
    stalled.join().unwrap();
}
