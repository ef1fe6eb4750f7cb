//! The facade against fake plugins: one shell script, linked under several
//! plugin names, that logs each call and records its stdin and environment.
//! No root needed.

use std::time::Duration;

mod common;

use common::*;
use crius_cni::{Cni, CniOptions, Error, GcReport, ValidAttachment};
use serde_json::json;

#[tokio::test]
async fn add_chains_prev_result_and_del_reverses_with_cached_result() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let att = attachment("ctr1");

    let result = env.cni.setup(&att).await.unwrap();
    assert_eq!(result.first_ipv4(), Some("10.9.2.2".parse().unwrap()));
    assert_eq!(
        result.sandbox_ips("eth0").collect::<Vec<_>>(),
        ["10.9.2.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        env.calls(),
        ["ADD loopback lo", "ADD first eth0", "ADD second eth0"]
    );

    let first = env.stdin("first", "ADD");
    assert_eq!(first["name"], "pods");
    assert_eq!(first["cniVersion"], "1.0.0", "the list's version wins");
    assert_eq!(first["custom"], 1);
    assert!(first.get("prevResult").is_none());
    assert!(
        first.get("runtimeConfig").is_none(),
        "first declares no capabilities"
    );

    let second = env.stdin("second", "ADD");
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.9.1.2/24");
    assert_eq!(
        second["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    let e = env.env("second", "ADD");
    for line in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=ctr1",
        "CNI_IFNAME=eth0",
        "CNI_NETNS=/run/netns/fake-does-not-exist",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web",
    ] {
        assert!(e.lines().any(|l| l == line), "{line} missing in {e}");
    }
    assert!(
        e.lines()
            .any(|l| l.starts_with("CNI_PATH=") && l.ends_with("/bin")),
        "{e}"
    );
    assert_eq!(
        env.cache_files(),
        ["ctr1:cni-loopback:lo.json", "ctr1:pods:eth0.json"]
    );

    // The config dir changes and the daemon forgets the capability args:
    // DEL still undoes what ADD did, from the cache.
    std::fs::remove_file(env.conf.join("10-pods.conflist")).unwrap();
    env.write_conf(
        "10-other.conflist",
        json!({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"first"}]}),
    );
    env.clear_calls();
    let mut bare = att.clone();
    bare.args.clear();
    bare.capability_args.clear();
    env.cni.teardown(&bare).await.unwrap();
    assert_eq!(
        env.calls(),
        ["DEL second eth0", "DEL first eth0", "DEL loopback lo"]
    );
    let del = env.stdin("second", "DEL");
    assert_eq!(del["name"], "pods");
    assert_eq!(del["prevResult"], *result.raw());
    assert_eq!(
        del["runtimeConfig"]["portMappings"][0]["hostPort"], 8080,
        "cached capability args"
    );
    assert!(
        env.env("second", "DEL")
            .contains("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web")
    );
    assert_eq!(
        env.stdin("loopback", "DEL")["prevResult"]["ips"][0]["address"],
        "127.0.0.1/8"
    );
    assert!(env.cache_files().is_empty());

    // Again: nothing cached, so the current config is used, without
    // prevResult; still fine.
    env.clear_calls();
    env.cni.teardown(&bare).await.unwrap();
    assert_eq!(env.calls(), ["DEL first eth0", "DEL loopback lo"]);
    let del = env.stdin("first", "DEL");
    assert_eq!(del["name"], "other");
    assert!(del.get("prevResult").is_none());
}

#[tokio::test]
async fn failed_add_deletes_the_whole_chain() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf(
        "10-pods.conflist",
        json!({"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"first"},{"type":"fail"}]}),
    );
    let err = env.cni.setup(&attachment("ctr2")).await.unwrap_err();
    match &err {
        Error::Plugin {
            network,
            plugin,
            command,
            code,
            msg,
            details,
        } => {
            assert_eq!(
                (network.as_str(), plugin.as_str(), *command),
                ("pods", "fail", "ADD")
            );
            assert_eq!(*code, Some(11));
            assert_eq!(msg, "no more addresses");
            assert_eq!(details, "range full");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(
        env.calls(),
        [
            "ADD loopback lo",
            "ADD first eth0",
            "ADD fail eth0",
            "DEL fail eth0",
            "DEL first eth0",
            "DEL loopback lo",
        ]
    );
    // The cleanup DEL carries what was added so far.
    assert_eq!(
        env.stdin("fail", "DEL")["prevResult"]["ips"][0]["address"],
        "10.9.1.2/24"
    );
    assert!(env.cache_files().is_empty(), "{:?}", env.cache_files());
}

#[tokio::test]
async fn crash_without_error_json_reports_stderr() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf(
        "10-pods.conf",
        json!({"cniVersion":"0.4.0","name":"pods","type":"crash"}),
    );
    let err = env.cni.setup(&attachment("ctr3")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Plugin { code: None, ref msg, .. } if msg == "panic: crashed"),
        "{text}"
    );
    assert!(text.contains("exit status: 2"), "{text}");
}

#[tokio::test]
async fn garbage_result_is_a_bad_result_and_rolled_back() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf(
        "10-pods.conf",
        json!({"cniVersion":"1.0.0","name":"pods","type":"garbage"}),
    );
    let err = env.cni.setup(&attachment("ctr4")).await.unwrap_err();
    assert!(matches!(err, Error::BadResult { .. }), "{err}");
    assert!(env.calls().contains(&"DEL garbage eth0".to_string()));
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn endless_plugin_output_is_cut_off_and_rolled_back() {
    let env = Env::new(Duration::from_secs(60));
    env.write_conf(
        "10-pods.conf",
        json!({"cniVersion":"1.0.0","name":"pods","type":"chatty"}),
    );
    let err = env.cni.setup(&attachment("ctr-chatty")).await.unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    assert!(env.calls().contains(&"DEL chatty eth0".to_string()));
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn timeout_kills_the_plugin_and_its_children() {
    let env = Env::new(Duration::from_secs(3));
    env.write_conf(
        "10-pods.conflist",
        json!({"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"sleepy"}]}),
    );
    let err = env.cni.setup(&attachment("ctr5")).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { ref plugin, command: "ADD", .. } if plugin == "sleepy"),
        "{err}"
    );
    assert!(env.calls().contains(&"DEL sleepy eth0".to_string()));
    for file in ["sleepy.pid", "sleepy.child.pid"] {
        let pid = std::fs::read_to_string(env.bin.join(file)).unwrap();
        wait_gone(pid.trim());
    }
}

/// Waits until a killed process is gone or a zombie (its parent may not
/// have reaped it yet). The kill was sent before; this only waits for the
/// kernel to finish it.
fn wait_gone(pid: &str) {
    for _ in 0..3000 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('Z') || state.starts_with('X') {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} still alive after the timeout");
}

#[tokio::test]
async fn check_uses_cached_result_and_honours_disable_check() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let att = attachment("ctr6");
    let err = env.cni.check(&att).await.unwrap_err();
    assert!(matches!(err, Error::NotCached { .. }), "{err}");

    let result = env.cni.setup(&att).await.unwrap();
    env.clear_calls();
    env.cni.check(&att).await.unwrap();
    assert_eq!(
        env.calls(),
        ["CHECK first eth0", "CHECK second eth0", "CHECK loopback lo"]
    );
    assert_eq!(env.stdin("first", "CHECK")["prevResult"], *result.raw());
    env.cni.teardown(&att).await.unwrap();

    for conf in [
        {
            let mut c = two_plugins("pods", "1.0.0");
            c["disableCheck"] = true.into();
            c
        },
        two_plugins("pods", "0.3.1"),
    ] {
        env.write_conf("10-pods.conflist", conf);
        env.cni.setup(&att).await.unwrap();
        env.clear_calls();
        env.cni.check(&att).await.unwrap();
        assert_eq!(env.calls(), ["CHECK loopback lo"]);
        env.cni.teardown(&att).await.unwrap();
    }
}

#[tokio::test]
async fn del_before_0_4_0_gets_no_prev_result() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "0.3.1"));
    let att = attachment("ctr7");
    env.cni.setup(&att).await.unwrap();
    env.cni.teardown(&att).await.unwrap();
    assert!(env.stdin("second", "DEL").get("prevResult").is_none());
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn no_config_means_not_ready_and_nothing_to_tear_down() {
    let env = Env::new(Duration::from_secs(30));
    let status = env.cni.status().await;
    assert!(!status.ready);
    assert_eq!(status.reason, "NetworkPluginNotReady");
    assert!(
        status.message.contains(&env.conf.display().to_string()),
        "{}",
        status.message
    );

    let err = env.cni.setup(&attachment("ctr8")).await.unwrap_err();
    assert!(matches!(err, Error::NoConfig { .. }), "{err}");
    assert!(env.calls().is_empty(), "nothing runs without a config");

    env.cni.teardown(&attachment("ctr8")).await.unwrap();
    assert_eq!(env.calls(), ["DEL loopback lo"]);

    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let status = env.cni.status().await;
    assert!(status.ready, "{status:?}");
}

#[tokio::test]
async fn network_ready_follows_the_config_dir() {
    let env = Env::new(Duration::from_secs(30));
    assert!(!env.cni.status().await.ready);
    env.write_conf("20-pods.conflist", two_plugins("pods", "1.0.0"));
    assert!(env.cni.status().await.ready);
    assert_eq!(
        env.cni.default_network().await.unwrap().unwrap().name,
        "pods"
    );
    // A lexically earlier, valid file takes over.
    env.write_conf("10-early.conflist", two_plugins("early", "1.0.0"));
    assert_eq!(
        env.cni.default_network().await.unwrap().unwrap().name,
        "early"
    );
    // Broken now: skipped, the next one used.
    std::fs::write(env.conf.join("10-early.conflist"), "{ broken").unwrap();
    assert_eq!(
        env.cni.default_network().await.unwrap().unwrap().name,
        "pods"
    );
    // None valid left: not ready, and the message names the broken file.
    std::fs::remove_file(env.conf.join("20-pods.conflist")).unwrap();
    let status = env.cni.status().await;
    assert!(!status.ready);
    assert!(
        status.message.contains("10-early.conflist") && status.message.contains("invalid JSON"),
        "{}",
        status.message
    );
    assert!(env.cni.default_network().await.unwrap().is_none());
    // The directory itself goes and comes back.
    std::fs::remove_dir_all(&env.conf).unwrap();
    assert!(!env.cni.status().await.ready);
    std::fs::create_dir(&env.conf).unwrap();
    env.write_conf("30-back.conflist", two_plugins("back", "1.0.0"));
    assert!(env.cni.status().await.ready);
    // Nothing was ever run for any of this.
    assert!(env.calls().is_empty(), "{:?}", env.calls());
}

#[tokio::test]
async fn status_asks_the_plugins_of_a_1_1_network() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.1.0"));
    let status = env.cni.status().await;
    assert!(status.ready, "{status:?}");
    assert_eq!(env.calls(), ["STATUS first ", "STATUS second "]);
    let stdin = env.stdin("second", "STATUS");
    assert_eq!(stdin["name"], "pods");
    assert_eq!(stdin["cniVersion"], "1.1.0");
    let e = env.env("second", "STATUS");
    let names: Vec<&str> = e.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(names, ["CNI_COMMAND", "CNI_PATH"], "{e}");

    // The second plugin cannot serve ADD: the network is not ready, and
    // the message is the plugin's.
    std::fs::write(env.bin.join("second.unavailable"), "").unwrap();
    env.clear_calls();
    let status = env.cni.status().await;
    assert!(!status.ready);
    assert_eq!(status.reason, "NetworkPluginNotReady");
    assert!(
        status
            .message
            .contains("\"second\" STATUS failed (code 50): plugin not available: no uplink"),
        "{}",
        status.message
    );
    std::fs::remove_file(env.bin.join("second.unavailable")).unwrap();
    assert!(env.cni.status().await.ready);

    // Before 1.1 there is no STATUS to ask.
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    std::fs::write(env.bin.join("second.unavailable"), "").unwrap();
    env.clear_calls();
    assert!(env.cni.status().await.ready);
    assert!(env.calls().is_empty(), "{:?}", env.calls());
}

#[tokio::test]
async fn gc_deletes_stale_attachments_and_tells_plugins_the_valid_ones() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.1.0"));
    env.cni.setup(&attachment("keep")).await.unwrap();
    env.cni.setup(&attachment("stale")).await.unwrap();
    env.clear_calls();
    let valid = [ValidAttachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    let report = env.cni.gc(&valid).await.unwrap();
    assert_eq!(report.errors, [] as [String; 0]);
    assert_eq!(
        report.deleted,
        [
            ("stale".into(), "cni-loopback".into(), "lo".into()),
            ("stale".into(), "pods".into(), "eth0".into())
        ]
    );
    assert_eq!(
        env.calls(),
        [
            "DEL loopback lo",
            "DEL second eth0",
            "DEL first eth0",
            "GC first ",
            "GC second "
        ]
    );
    // The stale DEL is the cached one: its args and result.
    let del = env.stdin("second", "DEL");
    assert_eq!(del["prevResult"]["ips"][0]["address"], "10.9.2.2/24");
    assert!(env.env("second", "DEL").contains("CNI_CONTAINERID=stale"));
    let gc = env.stdin("first", "GC");
    assert_eq!(
        gc["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert_eq!(
        env.cache_files(),
        ["keep:cni-loopback:lo.json", "keep:pods:eth0.json"]
    );

    // Nothing stale now, and a 1.0 network gets no GC call.
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    env.clear_calls();
    let report = env.cni.gc(&valid).await.unwrap();
    assert_eq!(report, GcReport::default());
    assert!(env.calls().is_empty(), "{:?}", env.calls());
}

#[tokio::test]
async fn missing_plugin_names_it_and_the_dirs() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf(
        "10-pods.conflist",
        json!({"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"first"},{"type":"absent"}]}),
    );
    let err = env.cni.setup(&attachment("ctr9")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::PluginNotFound { .. }), "{text}");
    assert!(
        text.contains("\"absent\"") && text.contains("nothing-here"),
        "{text}"
    );
    // The rollback's DEL failed too (its first plugin is the missing
    // one), so the ADD of "first" is not undone: its entry, without a
    // result, stays for a later DEL or GC to retry.
    assert_eq!(env.cache_files(), ["ctr9:pods:eth0.json"]);
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.cache.join("ctr9:pods:eth0.json")).unwrap())
            .unwrap();
    assert!(entry["result"].is_null(), "{entry}");
}

#[tokio::test]
async fn invalid_attachments_are_refused_before_any_plugin_runs() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    for (id, ifname) in [
        ("", "eth0"),
        ("../x", "eth0"),
        ("ok", ""),
        ("ok", "a-very-long-ifname"),
        ("ok", "eth 0"),
        ("ok", "lo"),
    ] {
        let mut att = attachment(id);
        att.ifname = ifname.into();
        let err = env.cni.setup(&att).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidAttachment(_)),
            "{id}/{ifname}: {err}"
        );
    }
    assert!(env.calls().is_empty());
}

#[tokio::test]
async fn corrupt_cache_entry_falls_back_to_current_config_and_is_dropped() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let att = attachment("ctr10");
    env.cni.setup(&att).await.unwrap();
    std::fs::write(env.cache.join("ctr10:pods:eth0.json"), "{").unwrap();

    let err = env.cni.check(&att).await.unwrap_err();
    assert!(err.to_string().contains("ctr10:pods:eth0.json"), "{err}");

    env.clear_calls();
    env.cni.teardown(&att).await.unwrap();
    assert_eq!(
        env.calls(),
        ["DEL second eth0", "DEL first eth0", "DEL loopback lo"]
    );
    assert!(env.stdin("second", "DEL").get("prevResult").is_none());
    assert!(env.cache_files().is_empty(), "{:?}", env.cache_files());
}

#[tokio::test]
async fn without_the_loopback_plugin_only_a_cached_loopback_is_deleted() {
    let env = Env::new(Duration::from_secs(30));
    env.write_conf("10-pods.conflist", two_plugins("pods", "1.0.0"));
    let cni = Cni::new(CniOptions {
        loopback_plugin: false,
        ..env.opts.clone()
    });
    let att = attachment("nolo");
    cni.setup(&att).await.unwrap();
    assert_eq!(env.calls(), ["ADD first eth0", "ADD second eth0"]);
    assert_eq!(env.cache_files(), ["nolo:pods:eth0.json"]);
    env.clear_calls();
    cni.check(&att).await.unwrap();
    assert_eq!(env.calls(), ["CHECK first eth0", "CHECK second eth0"]);
    env.clear_calls();
    cni.teardown(&att).await.unwrap();
    assert_eq!(env.calls(), ["DEL second eth0", "DEL first eth0"]);

    // Set up while the plugin was in use: its loopback attachment is
    // still deleted.
    env.cni.setup(&att).await.unwrap();
    env.clear_calls();
    cni.teardown(&att).await.unwrap();
    assert_eq!(
        env.calls(),
        ["DEL second eth0", "DEL first eth0", "DEL loopback lo"]
    );
    assert!(env.cache_files().is_empty());
}
