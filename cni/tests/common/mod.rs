//! The fake plugins the facade's tests run against: one shell script,
//! linked under several plugin names, that logs each call and records its
//! stdin and environment; and the test environment around them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crius_cni::{Attachment, Cni, CniOptions};
use serde_json::{Value, json};

pub const FAKE: &str = r#"#!/bin/sh
name=$(basename "$0")
dir=$(dirname "$0")
stdin=$(cat)
echo "$CNI_COMMAND $name $CNI_IFNAME" >> "$dir/calls.log"
printf '%s' "$stdin" > "$dir/$name.$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$dir/$name.$CNI_COMMAND.env"
# The descriptors the call inherited, by what they name.
for fd in /proc/$$/fd/*; do readlink "$fd"; done > "$dir/$name.$CNI_COMMAND.fds" 2>/dev/null
if [ "$CNI_COMMAND" = STATUS ] && [ -e "$dir/$name.unavailable" ]; then
    printf '{"cniVersion":"1.1.0","code":50,"msg":"plugin not available","details":"no uplink"}'
    exit 1
fi
[ "$CNI_COMMAND" = ADD ] || exit 0
case "$name" in
fail)
    printf '{"cniVersion":"1.0.0","code":11,"msg":"no more addresses","details":"range full"}'
    exit 1 ;;
crash)
    echo "panic: crashed" >&2
    exit 2 ;;
sleepy)
    sleep 1000 &
    echo $! > "$dir/sleepy.child.pid"
    echo $$ > "$dir/sleepy.pid"
    wait
    exit 0 ;;
garbage)
    echo "not json" ;;
chatty)
    # Endless output: a plugin gone wrong.
    while :; do echo "$stdin"; done ;;
loopback)
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"%s"}],"ips":[{"address":"127.0.0.1/8","interface":0}]}' "$CNI_NETNS" ;;
first)
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.9.1.2/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" ;;
*)
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.9.2.2/24","gateway":"10.9.2.1","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" ;;
esac
"#;

pub const NAMES: [&str; 8] = [
    "loopback", "first", "second", "fail", "crash", "sleepy", "garbage", "chatty",
];

pub struct Env {
    pub _tmp: tempfile::TempDir,
    pub opts: CniOptions,
    pub bin: PathBuf,
    pub conf: PathBuf,
    pub cache: PathBuf,
    pub cni: Cni,
}

impl Env {
    pub fn new(timeout: Duration) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let conf = tmp.path().join("net.d");
        let cache = tmp.path().join("cache");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        let script = bin.join("fake");
        std::fs::write(&script, FAKE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in NAMES {
            std::os::unix::fs::symlink("fake", bin.join(name)).unwrap();
        }
        wait_until_executable(&script);
        std::fs::remove_file(bin.join("calls.log")).unwrap();
        let opts = CniOptions {
            conf_dir: conf.clone(),
            // A first dir that does not exist: lookup goes on to the next.
            bin_dirs: vec![tmp.path().join("nothing-here"), bin.clone()],
            cache_dir: cache.clone(),
            plugin_timeout: timeout,
            loopback_plugin: true,
        };
        let cni = Cni::new(opts.clone());
        Env {
            opts,
            _tmp: tmp,
            bin,
            conf,
            cache,
            cni,
        }
    }

    pub fn write_conf(&self, file: &str, body: Value) {
        std::fs::write(self.conf.join(file), body.to_string()).unwrap();
    }

    pub fn calls(&self) -> Vec<String> {
        match std::fs::read_to_string(self.bin.join("calls.log")) {
            Ok(s) => s.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.bin.join("calls.log"));
    }

    pub fn stdin(&self, plugin: &str, command: &str) -> Value {
        let path = self.bin.join(format!("{plugin}.{command}.stdin"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    pub fn env(&self, plugin: &str, command: &str) -> String {
        std::fs::read_to_string(self.bin.join(format!("{plugin}.{command}.env"))).unwrap()
    }

    /// The files in the cache directory, its calls lock aside (which the
    /// first plugin call makes, and which stays).
    pub fn cache_files(&self) -> Vec<String> {
        match std::fs::read_dir(&self.cache) {
            Ok(rd) => {
                let mut v: Vec<_> = rd
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n != ".calls.lock")
                    .collect();
                v.sort();
                v
            }
            Err(_) => Vec::new(),
        }
    }
}

/// A freshly written script can fail to exec with ETXTBSY while a process
/// forked by another test thread still holds the write descriptor; run it
/// once successfully before the tests rely on it.
pub fn wait_until_executable(script: &Path) {
    for _ in 0..1000 {
        match std::process::Command::new(script)
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(_) => return,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("run {}: {e}", script.display()),
        }
    }
    panic!("{} stays busy", script.display());
}

pub fn attachment(id: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        netns: "/run/netns/fake-does-not-exist".into(),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        capability_args: json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1000}
        })
        .as_object()
        .unwrap()
        .clone(),
    }
}

pub fn two_plugins(name: &str, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "plugins": [
            {"type": "first", "cniVersion": "0.3.0", "custom": 1},
            {"type": "second", "capabilities": {"portMappings": true}}
        ]
    })
}
