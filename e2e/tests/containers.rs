//! Containers in depth, with real runc and crun: every security setting
//! observed from inside a container, exit codes, OOM kills and termination
//! messages in ContainerStatus, ExecSync, UpdateContainerResources, log
//! rotation and long lines in the CRI log, stop and list.
//!
//! Needs the `crius` binary (`cargo build --workspace --bins`); fails,
//! never skips, without it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crius_e2e::cri::{self, RuntimeClient};
use crius_e2e::wrapped_runtime::{only_handler, wrapped};
use crius_e2e::{Crius, CriusOptions, Registry, TestImages, assert_no_leaks, node_shape};
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerFilter, ContainerState, ContainerStateValue,
    ContainerStatus, Device, ExecSyncRequest, ImageSpec, Int64Value, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, RemoveContainerRequest,
    ReopenContainerLogRequest, SecurityProfile, StopContainerRequest,
    UpdateContainerResourcesRequest, UserNamespace, security_profile::ProfileType,
};
use tonic::Code;

/// A test's daemon, image and one pod.
struct Setup {
    // Dropped last: the registry outlives the daemon.
    crius: Crius,
    rt: RuntimeClient,
    image: String,
    pod: PodSandboxConfig,
    pod_id: String,
    _registry: Registry,
    /// Files the test hands containers (profiles, termination logs).
    files: tempfile::TempDir,
}

impl Setup {
    async fn new(handler: &str, pod_name: &str) -> Setup {
        Setup::with(CriusOptions::default(), handler, pod_name).await
    }

    async fn with(options: CriusOptions, handler: &str, pod_name: &str) -> Setup {
        let registry = Registry::start().unwrap();
        let images = TestImages::push(registry.addr()).await.unwrap();
        let crius = Crius::start(options).await.unwrap();
        let mut rt = crius.runtime_client();
        let mut img = crius.image_client();
        cri::pull_image(&mut img, &images.oci.reference)
            .await
            .unwrap();
        let pod = cri::pod_config(crius.dir(), pod_name);
        let pod_id = cri::run_pod(&mut rt, &pod, handler).await.unwrap();
        Setup {
            crius,
            rt,
            image: images.oci.reference.clone(),
            pod,
            pod_id,
            _registry: registry,
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// A container config running `sh -c script` (through the image's
    /// entrypoint) with a security context.
    fn config(
        &self,
        name: &str,
        script: &str,
        sc: LinuxContainerSecurityContext,
    ) -> ContainerConfig {
        let mut c = cri::container_config(name, &self.image, &["sh", "-c", script]);
        c.linux = Some(LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        c
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.crius
            .dir()
            .pod_log_dir(&self.pod.metadata.as_ref().unwrap().name)
            .join(format!("{name}.log"))
    }

    async fn create_and_start(&mut self, config: &ContainerConfig) -> String {
        let id = cri::create_container(&mut self.rt, &self.pod_id, &self.pod, config)
            .await
            .unwrap();
        cri::start_container(&mut self.rt, &id).await.unwrap();
        id
    }

    /// Runs a container to its end; its status and its stdout lines.
    async fn run(&mut self, config: &ContainerConfig) -> (ContainerStatus, Vec<String>) {
        let id = self.create_and_start(config).await;
        let status = cri::wait_container_state(&mut self.rt, &id, ContainerState::ContainerExited)
            .await
            .unwrap();
        let name = &config.metadata.as_ref().unwrap().name;
        let log = cri::read_cri_log(&self.log_path(name)).unwrap();
        let stdout = log
            .iter()
            .filter(|l| l.stream == "stdout")
            .map(|l| l.content.clone())
            .collect();
        self.rt
            .remove_container(RemoveContainerRequest { container_id: id })
            .await
            .unwrap();
        (status, stdout)
    }

    async fn finish(mut self) {
        cri::stop_and_remove_pod(&mut self.rt, &self.pod_id)
            .await
            .unwrap();
        self.crius.stop().await.unwrap();
        assert_no_leaks(&self.crius);
    }
}

fn caps(add: &[&str], drop: &[&str]) -> Option<Capability> {
    Some(Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn profile(t: ProfileType, localhost: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: t as i32,
        localhost_ref: localhost.to_string(),
    })
}

/// The value of a `Name:\tvalue` line of /proc/self/status as printed.
fn field<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// Docker's and containerd's default capability set as a CapEff mask.
const DEFAULT_CAP_MASK: &str = "00000000a80425fb";
/// What the container prints about itself.
const STATUS_SCRIPT: &str = "grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status | tr '\\t' ' '";

#[tokio::test]
async fn security_settings_are_observed_inside_containers_with_runc() {
    security_settings("", "sec-runc").await;
}

#[tokio::test]
async fn security_settings_are_observed_inside_containers_with_crun() {
    security_settings("crun", "sec-crun").await;
}

async fn security_settings(handler: &str, pod: &str) {
    let mut s = Setup::new(handler, pod).await;

    // Defaults: root, the default capabilities, no seccomp (CRI's absent
    // profile is unconfined), /proc/timer_list masked, /proc/sys read-only.
    let script = format!(
        "{STATUS_SCRIPT}; echo timer_list $(head -c 1 /proc/timer_list | wc -c); \
         (echo 1 > /proc/sys/vm/overcommit_memory) 2>/dev/null || echo procsys-ro; \
         touch /rootfs-rw && echo rootfs-rw; \
         unshare -U true && echo userns-ok"
    );
    let (status, out) = s
        .run(&s.config("defaults", &script, Default::default()))
        .await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    assert_eq!(field(&out, "Uid"), "0 0 0 0");
    assert_eq!(field(&out, "CapEff"), DEFAULT_CAP_MASK);
    assert_eq!(field(&out, "CapBnd"), DEFAULT_CAP_MASK);
    assert_eq!(field(&out, "Seccomp"), "0");
    for line in ["timer_list 0", "procsys-ro", "rootfs-rw", "userns-ok"] {
        assert!(out.iter().any(|l| l == line), "{line}: {out:?}");
    }
    let user = status.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (0, 0));

    // A user and groups, fewer capabilities, no_new_privs, a read-only
    // root, the runtime's seccomp profile.
    let sc = LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 65534 }),
        run_as_group: Some(Int64Value { value: 65534 }),
        supplemental_groups: vec![1234],
        capabilities: caps(&["NET_ADMIN"], &["ALL"]),
        no_new_privs: true,
        readonly_rootfs: true,
        seccomp: profile(ProfileType::RuntimeDefault, ""),
        ..Default::default()
    };
    let script = format!(
        "{STATUS_SCRIPT}; id -un; touch /rootfs-ro 2>/dev/null || echo rootfs-ro; \
         touch /tmp/tmp-rw 2>/dev/null || echo tmp-ro; \
         unshare -U true 2>/dev/null || echo userns-denied"
    );
    let (status, out) = s.run(&s.config("restricted", &script, sc)).await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    assert_eq!(field(&out, "Uid"), "65534 65534 65534 65534");
    assert_eq!(field(&out, "Gid"), "65534 65534 65534 65534");
    assert_eq!(field(&out, "Groups"), "1234 65534");
    assert_eq!(field(&out, "CapBnd"), "0000000000001000"); // NET_ADMIN only
    assert_eq!(field(&out, "CapEff"), "0000000000000000"); // not root
    assert_eq!(field(&out, "NoNewPrivs"), "1");
    assert_eq!(field(&out, "Seccomp"), "2");
    for line in ["nobody", "rootfs-ro", "tmp-ro", "userns-denied"] {
        assert!(out.iter().any(|l| l == line), "{line}: {out:?}");
    }
    let user = status.user.unwrap().linux.unwrap();
    assert_eq!(
        (user.uid, user.gid, user.supplemental_groups),
        (65534, 65534, vec![1234, 65534])
    );

    // run_as_username, looked up in the image's /etc/passwd.
    let sc = LinuxContainerSecurityContext {
        run_as_username: "nobody".into(),
        ..Default::default()
    };
    let (status, out) = s.run(&s.config("by-name", "id -u; id -g", sc)).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(out, ["65534", "65534"]);

    // A Localhost seccomp profile that refuses mkdir to everyone, root
    // with every capability included; masked and read-only paths given.
    let profile_path = s.files.path().join("no-mkdir.json");
    std::fs::write(
        &profile_path,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let sc = LinuxContainerSecurityContext {
        capabilities: caps(&["ALL"], &[]),
        seccomp: profile(ProfileType::Localhost, &profile_path.to_string_lossy()),
        masked_paths: vec!["/data/keep".into()],
        readonly_paths: vec!["/tmp".into()],
        ..Default::default()
    };
    let script = "mkdir /newdir 2>&1 || echo mkdir-denied; echo keep [$(cat /data/keep)]; \
                  touch /tmp/x 2>/dev/null || echo tmp-ro; echo timer_list $(head -c 1 /proc/timer_list | wc -c)";
    let (status, out) = s.run(&s.config("localhost", script, sc)).await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    assert!(
        out.iter().any(|l| l.contains("Operation not permitted")),
        "{out:?}"
    );
    assert!(out.iter().any(|l| l == "mkdir-denied"), "{out:?}");
    assert!(out.iter().any(|l| l == "keep []"), "{out:?}");
    assert!(out.iter().any(|l| l == "tmp-ro"), "{out:?}");
    // Only what was given is masked now.
    assert!(!out.iter().any(|l| l == "timer_list 0"), "{out:?}");

    // A device given by the config.
    let mut config = s.config(
        "device",
        "stat -c '%t:%T' /dev/mynull; echo hi > /dev/mynull && echo wrote",
        Default::default(),
    );
    config.devices = vec![Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let (status, out) = s.run(&config).await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    assert_eq!(out, ["1:3", "wrote"]);

    // Privileged: every capability, writable sysfs, the host's devices, no
    // masked paths, no seccomp even when asked.
    let host_device = ["/dev/kmsg", "/dev/loop-control", "/dev/fuse", "/dev/vda"]
        .into_iter()
        .find(|d| Path::new(d).exists())
        .expect("no host device to look for");
    let sc = LinuxContainerSecurityContext {
        privileged: true,
        seccomp: profile(ProfileType::RuntimeDefault, ""),
        ..Default::default()
    };
    let script = format!(
        "{STATUS_SCRIPT}; grep ' /sys sysfs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
         test -e {host_device} && echo host-device; echo timer_list $(head -c 1 /proc/timer_list | wc -c)"
    );
    let (status, out) = s.run(&s.config("privileged", &script, sc)).await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    // Every capability crius holds itself (root here lacks SYS_RESOURCE).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_bounding = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(field(&out, "CapEff"), own_bounding);
    assert_eq!(field(&out, "Seccomp"), "0");
    for line in ["rw", "host-device", "timer_list 1"] {
        assert!(out.iter().any(|l| l == line), "{line}: {out:?}");
    }

    // Bad input names what is wrong and leaves nothing behind.
    let sc = LinuxContainerSecurityContext {
        seccomp: profile(ProfileType::Localhost, "/nonexistent/profile.json"),
        ..Default::default()
    };
    let config = s.config("bad-profile", "true", sc);
    let err = cri::create_container(&mut s.rt, &s.pod_id, &s.pod, &config)
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("/nonexistent/profile.json"),
        "{err:?}"
    );
    // A named AppArmor profile that is not loaded is refused: by its name
    // where the kernel has AppArmor; where it has none (this host,
    // checked), as one the node cannot give.
    let sc = LinuxContainerSecurityContext {
        apparmor: profile(ProfileType::Localhost, "crius-e2e-never-loaded"),
        ..Default::default()
    };
    let config = s.config("bad-apparmor", "true", sc);
    let err = cri::create_container(&mut s.rt, &s.pod_id, &s.pod, &config)
        .await
        .unwrap_err();
    let apparmor = node_shape::apparmor_enabled();
    if apparmor {
        assert!(
            format!("{err:?}").contains("crius-e2e-never-loaded"),
            "{err:?}"
        );
    } else {
        assert!(!Path::new("/sys/module/apparmor").exists());
        assert!(format!("{err:?}").contains("AppArmor"), "{err:?}");
    }
    // RuntimeDefault confines the container where there is AppArmor (the
    // runtime's own profile, enforced), and runs it unlabelled where there
    // is none; Unconfined is unconfined.
    let label = "cat /proc/self/attr/apparmor/current 2>/dev/null || \
                 cat /proc/self/attr/current 2>/dev/null || echo no-label";
    let sc = LinuxContainerSecurityContext {
        apparmor: profile(ProfileType::RuntimeDefault, ""),
        ..Default::default()
    };
    let (status, out) = s.run(&s.config("apparmor-default", label, sc)).await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    let want = if apparmor {
        "crius-default (enforce)"
    } else {
        "no-label"
    };
    assert_eq!(out, [want]);
    if apparmor {
        let sc = LinuxContainerSecurityContext {
            apparmor: profile(ProfileType::Unconfined, ""),
            ..Default::default()
        };
        let (status, out) = s.run(&s.config("apparmor-unconfined", label, sc)).await;
        assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
        assert_eq!(out, ["unconfined"]);
    }
    // A pod asking for a user namespace gets no container running as the
    // node's root.
    let mut userns_pod = s.pod.clone();
    userns_pod.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            userns_options: Some(UserNamespace {
                mode: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let config = s.config("userns", "true", Default::default());
    let err = cri::create_container(&mut s.rt, &s.pod_id, &userns_pod, &config)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("user namespace"), "{err:?}");
    assert_eq!(
        cri::container_ids(&mut s.rt, None).await.unwrap(),
        [] as [String; 0]
    );
    s.finish().await;
}

#[tokio::test]
async fn exit_codes_oom_kills_and_termination_messages_with_runc() {
    exit_reasons("", "exit-runc").await;
}

#[tokio::test]
async fn exit_codes_oom_kills_and_termination_messages_with_crun() {
    exit_reasons("crun", "exit-crun").await;
}

/// A termination message file mounted where the annotations say.
fn with_termination_file(
    mut c: ContainerConfig,
    host_file: &Path,
    policy: &str,
) -> ContainerConfig {
    std::fs::write(host_file, "").unwrap();
    c.mounts.push(Mount {
        container_path: "/dev/termination-log".into(),
        host_path: host_file.to_string_lossy().into_owned(),
        ..Default::default()
    });
    c.annotations.extend([
        (
            "io.kubernetes.container.terminationMessagePath".to_string(),
            "/dev/termination-log".to_string(),
        ),
        (
            "io.kubernetes.container.terminationMessagePolicy".to_string(),
            policy.to_string(),
        ),
    ]);
    c
}

async fn exit_reasons(handler: &str, pod: &str) {
    let mut s = Setup::new(handler, pod).await;

    let (status, _) = s.run(&s.config("ok", "true", Default::default())).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));

    let (status, _) = s
        .run(&s.config("fails", "exit 3", Default::default()))
        .await;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    assert!(status.finished_at >= status.started_at, "{status:?}");

    // Over its memory limit: the kernel kills it.
    let mut config = s.config(
        "hog",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
        Default::default(),
    );
    config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        memory_swap_limit_in_bytes: 16 << 20,
        ..Default::default()
    });
    let (status, out) = s.run(&config).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?} {out:?}");
    assert_ne!(status.exit_code, 0, "{status:?}");
    let linux = status.resources.unwrap().linux.unwrap();
    assert_eq!(linux.memory_limit_in_bytes, 16 << 20);

    // The termination message file, whatever the exit code.
    let file = s.files.path().join("msg1");
    let config = with_termination_file(
        s.config(
            "message",
            "echo -n 'last words' > /dev/termination-log; exit 1",
            Default::default(),
        ),
        &file,
        "File",
    );
    let (status, _) = s.run(&config).await;
    assert_eq!(
        (status.exit_code, status.message.as_str()),
        (1, "last words")
    );
    assert!(
        status
            .mounts
            .iter()
            .any(|m| m.container_path == "/dev/termination-log"),
        "{status:?}"
    );

    // FallbackToLogsOnError: an empty file and a failure give the log tail;
    // success gives nothing.
    let file = s.files.path().join("msg2");
    let config = with_termination_file(
        s.config(
            "fallback",
            "echo first; echo second >&2; exit 4",
            Default::default(),
        ),
        &file,
        "FallbackToLogsOnError",
    );
    let (status, _) = s.run(&config).await;
    assert_eq!(
        (status.exit_code, status.message.as_str()),
        (4, "first\nsecond")
    );
    let file = s.files.path().join("msg3");
    let config = with_termination_file(
        s.config("fallback-ok", "echo fine", Default::default()),
        &file,
        "FallbackToLogsOnError",
    );
    let (status, _) = s.run(&config).await;
    assert_eq!((status.exit_code, status.message.as_str()), (0, ""));

    // A terminal: the output comes through it (a terminal ends lines with
    // \r\n); stdin kept open is a pipe, not /dev/null.
    let mut config = s.config(
        "tty",
        "tty; echo on-a-terminal; readlink /proc/self/fd/0",
        Default::default(),
    );
    config.tty = true;
    config.stdin = true;
    let (status, out) = s.run(&config).await;
    assert_eq!(status.exit_code, 0, "{status:?} {out:?}");
    let out: Vec<&str> = out.iter().map(|l| l.trim_end_matches('\r')).collect();
    assert!(out[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(out[1], "on-a-terminal");
    let mut config = s.config("stdin", "readlink /proc/self/fd/0", Default::default());
    config.stdin = true;
    let (_, out) = s.run(&config).await;
    assert!(out[0].starts_with("pipe:"), "{out:?}");
    let (_, out) = s
        .run(&s.config("no-stdin", "readlink /proc/self/fd/0", Default::default()))
        .await;
    assert_eq!(out, ["/dev/null"]);

    // A command that does not exist: CreateContainer says so.
    let mut config = s.config("missing", "true", Default::default());
    config.command = vec!["/no/such/binary".into()];
    config.args.clear();
    let err = cri::create_container(&mut s.rt, &s.pod_id, &s.pod, &config)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("/no/such/binary"), "{err:?}");
    s.finish().await;
}

#[tokio::test]
async fn exec_sync_resources_logs_and_stops_with_runc() {
    running_container("", "run-runc").await;
}

#[tokio::test]
async fn exec_sync_resources_logs_and_stops_with_crun() {
    running_container("crun", "run-crun").await;
}

/// runc as a slow node's runtime is: its exec starts the command at once
/// but writes the command's pid to its pid file only 2 s later, or when it
/// ends if that is sooner (seen under qemu's software emulation, where
/// runc takes longer to get there than a one-second ExecSync timeout).
/// Everything else is plain runc.
const LATE_PID_RUNC: &str = r#"
case " $* " in
*" --detach "*) exec "$real" "$@" ;;
*" exec "*) ;;
*) exec "$real" "$@" ;;
esac
pid_file=
prev=
n=$#
for a in "$@"; do
    if [ "$prev" = --pid-file ]; then pid_file=$a; a=$a.late; fi
    set -- "$@" "$a"
    prev=$a
done
shift "$n"
late() { mv "$pid_file.late" "$pid_file" 2>/dev/null; }
(sleep 2; late) </dev/null >/dev/null 2>&1 &
mover=$!
"$real" "$@"
rc=$?
kill "$mover" 2>/dev/null
late
exit "$rc"
"#;

#[tokio::test]
async fn exec_sync_timeout_kills_the_command_when_the_runtime_writes_its_pid_late() {
    let bin = tempfile::tempdir().unwrap();
    let wrapper = wrapped(bin.path(), "runc", LATE_PID_RUNC);
    let options = CriusOptions {
        config: Some(only_handler("runc", &wrapper)),
        ..Default::default()
    };
    let mut s = Setup::with(options, "", "exec-late-pid").await;
    let config = s.config("main", "sleep 1000", Default::default());
    let id = s.create_and_start(&config).await;
    let err = exec(&mut s.rt, &id, &["sleep", "77"], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let r = exec(&mut s.rt, &id, &["ps", "-o", "args"], 10)
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&r.stdout);
    assert!(
        !ps.contains("sleep 77"),
        "the command outlived its timeout:\n{ps}"
    );
    // The slow pid file's mover is done before the daemon goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.finish().await;
}

async fn exec(
    rt: &mut RuntimeClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<k8s_cri::v1::ExecSyncResponse, tonic::Status> {
    rt.exec_sync(ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// Waits until the log file at `path` holds a line with `content`.
async fn wait_for_log(path: &Path, content: &str) -> Vec<cri::LogLine> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(lines) = cri::read_cri_log(path)
            && lines.iter().any(|l| l.content == content)
        {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{content:?} never reached {}: {:?}",
            path.display(),
            std::fs::read_to_string(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn running_container(handler: &str, pod: &str) {
    let mut s = Setup::new(handler, pod).await;
    // Prints whatever lands in /tmp/say; first a line longer than the
    // log's 16 KiB record limit.
    let script = "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after-long; \
                  while :; do if [ -e /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 1; done";
    let mut config = s.config("server", script, Default::default());
    config.labels.insert("tier".into(), "backend".into());
    let id = s.create_and_start(&config).await;
    let log_path = s.log_path("server");

    // The long line: P, P, F records that join up to it.
    let lines = wait_for_log(&log_path, "after-long").await;
    let tags: Vec<&str> = lines.iter().map(|l| l.tag.as_str()).collect();
    assert_eq!(tags[..4], ["P", "P", "F", "F"], "{tags:?}");
    assert!(lines[0].content.len() == 16384 && lines[1].content.len() == 16384);
    let joined: String = lines[..3].iter().map(|l| l.content.as_str()).collect();
    assert_eq!(joined, "x".repeat(40000));

    // Verbose ContainerStatus: what `crictl inspect` shows, under
    // containerd's keys, checked against the real process.
    let verbose =
        s.rt.container_status(k8s_cri::v1::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["sandboxID"], s.pod_id.as_str());
    let pid = info["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(argv, ["sh", "-c", script], "pid {pid}");
    // The spec's args: the image's entrypoint (an env that execs the
    // command), then the command the process runs now.
    let spec_args: Vec<String> =
        serde_json::from_value(info["runtimeSpec"]["process"]["args"].clone()).unwrap();
    assert!(spec_args.ends_with(&argv), "{spec_args:?}");
    assert_eq!(info["privileged"], false);
    assert_eq!(info["config"]["labels"]["tier"], "backend");
    let binary = info["runtimeType"].as_str().unwrap();
    let want = if handler.is_empty() { "runc" } else { handler };
    assert!(binary.ends_with(&format!("/{want}")), "{binary}");
    assert!(
        Path::new(info["bundle"].as_str().unwrap())
            .join("config.json")
            .is_file()
    );
    // Without verbose, no info.
    let plain =
        s.rt.container_status(k8s_cri::v1::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(plain.info.is_empty(), "{:?}", plain.info);

    // ExecSync: output, exit code, and the container's settings.
    let r = exec(
        &mut s.rt,
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 7)
    );
    let r = exec(&mut s.rt, &id, &["hostname"], 0).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), pod);
    let r = exec(&mut s.rt, &id, &["head", "-c", "300000", "/dev/zero"], 10)
        .await
        .unwrap();
    assert_eq!((r.stdout.len(), r.exit_code), (300000, 0));
    let err = exec(&mut s.rt, &id, &["/no/such/command"], 10)
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    // A timeout kills the command: nothing of it is left in the container.
    let started = Instant::now();
    let err = exec(&mut s.rt, &id, &["sleep", "77"], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let r = exec(&mut s.rt, &id, &["ps", "-o", "args"], 10)
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&r.stdout);
    assert!(!ps.contains("sleep 77"), "{ps}");

    // UpdateContainerResources reaches the cgroup and the status.
    s.rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            cpu_shares: 256,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    // Containers go under their pod's own cgroup. cgroup v2 has no
    // shares: runc and crun set cpu.weight = 1 + ((shares - 2) * 9999) /
    // 262142, 10 for 256.
    let cgroup = format!("{}/{}/{id}", s.crius.dir().cgroup_parent(), s.pod_id);
    let v2_node = node_shape::cgroup_v2();
    let read = |controller: &str, v1: &str, v2: &str| {
        let file = node_shape::cgroup_file(controller, &cgroup, if v2_node { v2 } else { v1 });
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
            .trim()
            .to_string()
    };
    let limit = read("memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(limit, (96u64 << 20).to_string());
    let cpu = read("cpu", "cpu.shares", "cpu.weight");
    assert_eq!(cpu, if v2_node { "10" } else { "256" });
    let status = cri::container_status(&mut s.rt, &id).await.unwrap();
    let res = status.resources.unwrap().linux.unwrap();
    assert_eq!((res.memory_limit_in_bytes, res.cpu_shares), (96 << 20, 256));

    // Log rotation as kubelet does it: rename, then ReopenContainerLog.
    let rotated = log_path.with_extension("log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    s.rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(log_path.exists());
    exec(
        &mut s.rt,
        &id,
        &["sh", "-c", "echo after-rotation > /tmp/say"],
        10,
    )
    .await
    .unwrap();
    let lines = wait_for_log(&log_path, "after-rotation").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let old = cri::read_cri_log(&rotated).unwrap();
    assert!(!old.iter().any(|l| l.content == "after-rotation"));

    // ListContainers filters.
    let filter = |f: ContainerFilter| Some(f);
    let list = async |rt: &mut RuntimeClient, f| cri::container_ids(rt, f).await.unwrap();
    let by_label = ContainerFilter {
        label_selector: HashMap::from([("tier".to_string(), "backend".to_string())]),
        ..Default::default()
    };
    assert_eq!(list(&mut s.rt, filter(by_label)).await, [id.as_str()]);
    let by_other_label = ContainerFilter {
        label_selector: HashMap::from([("tier".to_string(), "frontend".to_string())]),
        ..Default::default()
    };
    assert!(list(&mut s.rt, filter(by_other_label)).await.is_empty());
    let by_prefix = ContainerFilter {
        id: id[..12].to_string(),
        pod_sandbox_id: s.pod_id.clone(),
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    assert_eq!(list(&mut s.rt, filter(by_prefix)).await, [id.as_str()]);

    // Stop with timeout 0, again, and the exited container stays stopped.
    for _ in 0..3 {
        s.rt.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    }
    let status = cri::container_status(&mut s.rt, &id).await.unwrap();
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
    // Nothing runs in it any more.
    let err = exec(&mut s.rt, &id, &["true"], 10).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err =
        s.rt.reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    s.rt.remove_container(RemoveContainerRequest { container_id: id })
        .await
        .unwrap();
    s.finish().await;
}

/// A container keeps running through a daemon crash; the restarted daemon
/// execs in it, has its monitor reopen the log, and sees it end.
#[tokio::test]
async fn a_container_outlives_a_daemon_crash() {
    let mut s = Setup::new("", "crash").await;
    let script =
        "while :; do if [ -e /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 1; done";
    let config = s.config("survivor", script, Default::default());
    let id = s.create_and_start(&config).await;
    s.crius.kill().unwrap();
    s.crius.restart().await.unwrap();
    s.rt = s.crius.runtime_client();

    let status = cri::container_status(&mut s.rt, &id).await.unwrap();
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    let r = exec(&mut s.rt, &id, &["sh", "-c", "echo still-here"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"still-here\n");
    let log_path = s.log_path("survivor");
    std::fs::rename(&log_path, log_path.with_extension("log.1")).unwrap();
    s.rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    exec(
        &mut s.rt,
        &id,
        &["sh", "-c", "echo after-crash > /tmp/say"],
        10,
    )
    .await
    .unwrap();
    wait_for_log(&log_path, "after-crash").await;

    s.rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let status = cri::container_status(&mut s.rt, &id).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::ContainerExited as i32, 137)
    );
    s.rt.remove_container(RemoveContainerRequest { container_id: id })
        .await
        .unwrap();
    s.finish().await;
}

/// An image volume (a Mount naming an image) shows the image's merged
/// layers read-only, executable, and goes with the container.
#[tokio::test]
async fn image_volumes_are_read_only_image_trees() {
    let mut s = Setup::new("", "image-volume").await;
    let image = s.image.clone();
    let volume = move |readonly: bool| Mount {
        container_path: "/mnt/vol".into(),
        readonly,
        image: Some(ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let script = "ls /mnt/vol/data; /mnt/vol/bin/busybox echo exec-ok; \
                  touch /mnt/vol/x 2>/dev/null || echo read-only";
    let mut config = s.config("vol", script, Default::default());
    config.mounts = vec![volume(true)];
    let id = s.create_and_start(&config).await;
    let status = cri::wait_container_state(&mut s.rt, &id, ContainerState::ContainerExited)
        .await
        .unwrap();
    assert_eq!(status.exit_code, 0, "{status:?}");
    let mount = &status.mounts[0];
    assert_eq!(mount.container_path, "/mnt/vol");
    assert_eq!(mount.image.as_ref().unwrap().image, s.image);
    let out: Vec<String> = cri::read_cri_log(&s.log_path("vol"))
        .unwrap()
        .into_iter()
        .map(|l| l.content)
        .collect();
    // The second layer's whiteout hides data/gone, as in a rootfs.
    for line in ["keep", "layer2", "opaque", "exec-ok", "read-only"] {
        assert!(out.iter().any(|l| l == line), "{line}: {out:?}");
    }
    assert!(!out.iter().any(|l| l == "gone"), "{out:?}");
    s.rt.remove_container(RemoveContainerRequest { container_id: id })
        .await
        .unwrap();

    // Writable, both a host path and an image, or an unknown image:
    // refused, naming the mount.
    let mut bad = s.config("bad", "true", Default::default());
    bad.mounts = vec![volume(false)];
    let err = cri::create_container(&mut s.rt, &s.pod_id, &s.pod, &bad)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("/mnt/vol") && format!("{err:?}").contains("read-only"));
    let mut both = volume(true);
    both.host_path = "/tmp".into();
    bad.mounts = vec![both];
    let err = cri::create_container(&mut s.rt, &s.pod_id, &s.pod, &bad)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("both host_path"), "{err:?}");
    let mut unknown = volume(true);
    unknown.image.as_mut().unwrap().image = "example.invalid/none:1".into();
    bad.mounts = vec![unknown];
    let err = cri::create_container(&mut s.rt, &s.pod_id, &s.pod, &bad)
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("image volume at /mnt/vol"),
        "{err:?}"
    );
    s.finish().await;
}
