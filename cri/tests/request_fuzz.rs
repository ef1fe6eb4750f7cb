//! The fuzz target `cri/fuzz/fuzz_targets/create_container.rs` as an
//! ordinary test, so that every `cargo test` exercises the request → OCI
//! spec path with hostile input even where no nightly toolchain runs
//! cargo-fuzz: thousands of pseudo-random CreateContainerRequests built
//! from nasty values (paths with `..`, NUL, huge strings, extreme numbers,
//! unknown enum values), each also sent as mutated and truncated bytes.
//! None may panic.

use std::collections::HashMap;

use crius_cri::fuzzing::{create_container, create_container_request};
use k8s_cri::v1 as cri;
use prost::Message;

/// Requests built per run (each also mutated a few times).
const REQUESTS: usize = 3000;
/// Byte-level mutations of each encoded request.
const MUTATIONS: usize = 4;

/// xorshift64*: a deterministic stream, so a failure reproduces. The
/// second field: one value in this many is nasty, the others sane (so
/// that many requests get past validation to the spec builder).
struct Rng(u64, usize);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    /// `sane`, or now and then a nasty string.
    fn s(&mut self, sane: &str) -> String {
        if self.chance(self.1) {
            self.string()
        } else {
            sane.to_string()
        }
    }
    fn string(&mut self) -> String {
        const NASTY: &[&str] = &[
            "",
            "a",
            "/",
            "..",
            "../..",
            "/a/../../etc",
            "/data",
            "relative/path",
            "a\0b",
            "\n",
            "x=y",
            "=",
            "ALL",
            "CAP_SYS_ADMIN",
            "NET_RAW",
            "runtime/default",
            "localhost/profile.json",
            "unconfined",
            "0-3",
            "1,2,a",
            "memory.max",
            "SIGTERM",
            "日本語",
            "\u{202e}",
            "nofile=1:2",
            "/proc/self/fd/0",
            "//double//slash",
            "/dev/null",
        ];
        match self.below(10) {
            0 => "z".repeat(self.below(70_000)),
            1 => (0..self.below(40))
                .map(|_| char::from(self.below(128) as u8))
                .collect(),
            _ => self.pick(NASTY).to_string(),
        }
    }
    fn strings(&mut self, sane: &str) -> Vec<String> {
        (0..self.below(5)).map(|_| self.s(sane)).collect()
    }
    fn map(&mut self) -> HashMap<String, String> {
        (0..self.below(4))
            .map(|_| (self.s("key"), self.s("value")))
            .collect()
    }
    fn int(&mut self) -> i64 {
        if !self.chance(self.1) {
            return self.below(100_000) as i64;
        }
        match self.below(6) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            3 => 0,
            _ => self.next() as i64 >> self.below(64),
        }
    }
    fn enum_value(&mut self) -> i32 {
        if !self.chance(self.1) {
            return self.below(3) as i32;
        }
        match self.below(4) {
            0 => i32::MAX,
            1 => -1,
            _ => self.below(5) as i32,
        }
    }
}

fn profile(r: &mut Rng) -> Option<cri::SecurityProfile> {
    r.chance(2).then(|| cri::SecurityProfile {
        profile_type: r.enum_value(),
        localhost_ref: r.s(""),
    })
}

fn request(r: &mut Rng) -> cri::CreateContainerRequest {
    let security = cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: r.strings("NET_ADMIN"),
            drop_capabilities: r.strings("ALL"),
            add_ambient_capabilities: if r.chance(10) {
                r.strings("NET_RAW")
            } else {
                vec![]
            },
        }),
        privileged: r.chance(4),
        namespace_options: Some(cri::NamespaceOption {
            network: r.enum_value(),
            pid: r.enum_value(),
            ipc: r.enum_value(),
            target_id: r.s(""),
            userns_options: None,
        }),
        run_as_user: r.chance(2).then(|| cri::Int64Value { value: r.int() }),
        run_as_group: r.chance(3).then(|| cri::Int64Value { value: r.int() }),
        run_as_username: r.s(""),
        readonly_rootfs: r.chance(2),
        supplemental_groups: (0..r.below(3)).map(|_| r.int()).collect(),
        no_new_privs: r.chance(2),
        masked_paths: r.strings("/proc/kcore"),
        readonly_paths: r.strings("/proc/sys"),
        seccomp: profile(r),
        apparmor: profile(r),
        supplemental_groups_policy: r.enum_value(),
        ..Default::default()
    };
    let resources = cri::LinuxContainerResources {
        cpu_period: r.int(),
        cpu_quota: r.int(),
        cpu_shares: r.int(),
        memory_limit_in_bytes: r.int(),
        oom_score_adj: r.int(),
        cpuset_cpus: r.s("0-1"),
        cpuset_mems: r.s(""),
        hugepage_limits: (0..r.below(3))
            .map(|_| cri::HugepageLimit {
                page_size: r.s("2MB"),
                limit: r.next(),
            })
            .collect(),
        unified: r.map(),
        memory_swap_limit_in_bytes: r.int(),
    };
    let config = cri::ContainerConfig {
        metadata: r.chance(8).then_some(()).map_or(
            Some(cri::ContainerMetadata {
                name: r.s("ctr"),
                attempt: r.next() as u32,
            }),
            |_| None,
        ),
        image: Some(cri::ImageSpec {
            image: r.s("busybox"),
            ..Default::default()
        }),
        command: r.strings("/bin/sh"),
        args: r.strings("-c"),
        working_dir: r.s("/srv"),
        envs: (0..r.below(4))
            .map(|_| cri::KeyValue {
                key: r.s("KEY"),
                value: r.s("v=1"),
            })
            .collect(),
        mounts: (0..r.below(3))
            .map(|_| cri::Mount {
                container_path: r.s("/data"),
                host_path: r.s("/tmp"),
                readonly: r.chance(2),
                selinux_relabel: false,
                propagation: r.enum_value(),
                recursive_read_only: r.chance(3),
                ..Default::default()
            })
            .collect(),
        devices: (0..r.below(2))
            .map(|_| cri::Device {
                container_path: r.s("/dev/fuse"),
                host_path: r.s("/dev/fuse"),
                permissions: r.s("rwm"),
            })
            .collect(),
        labels: r.map(),
        annotations: r.map(),
        log_path: r.s("ctr/0.log"),
        stdin: r.chance(2),
        stdin_once: r.chance(2),
        tty: r.chance(2),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security),
        }),
        ..Default::default()
    };
    let pod = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: r.s("pod"),
            uid: r.s("uid"),
            namespace: r.s("ns"),
            attempt: 0,
        }),
        hostname: r.s("pod"),
        log_directory: r.s("/var/log/pods/x"),
        labels: r.map(),
        annotations: r.map(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: r.s("/kubepods"),
            sysctls: r.map(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cri::CreateContainerRequest {
        pod_sandbox_id: r.s("p"),
        config: Some(config),
        sandbox_config: Some(pod),
    }
}

fn mutate(r: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match r.below(4) {
        0 => bytes.truncate(r.below(bytes.len())),
        1 => {
            let i = r.below(bytes.len());
            bytes[i] ^= 1 << r.below(8);
        }
        2 => {
            let i = r.below(bytes.len());
            bytes[i] = r.next() as u8;
        }
        _ => {
            let i = r.below(bytes.len());
            let extra: Vec<u8> = (0..r.below(16)).map(|_| r.next() as u8).collect();
            bytes.splice(i..i, extra);
        }
    }
}

#[test]
fn hostile_create_container_requests_never_panic() {
    let mut r = Rng(0x5eed_c0de_1234_5678, 2);
    let mut built = 0;
    let mut executions = 0;
    for _ in 0..REQUESTS {
        r.1 = 2 + r.below(80);
        let req = request(&mut r);
        let bytes = req.encode_to_vec();
        if create_container(req) {
            built += 1;
        }
        executions += 1;
        for _ in 0..MUTATIONS {
            let mut m = bytes.clone();
            for _ in 0..=r.below(3) {
                mutate(&mut r, &mut m);
            }
            create_container_request(&m);
            executions += 1;
        }
    }
    // Some inputs must get through validation to the spec builder, or the
    // run proves little about it.
    assert!(built > 0, "no request reached the spec builder");
    eprintln!("request fuzz: {executions} inputs, {built} built a spec");
}

#[test]
fn a_plain_request_builds_a_spec() {
    let req = cri::CreateContainerRequest {
        pod_sandbox_id: "p".into(),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: None,
    };
    assert!(create_container_request(&req.encode_to_vec()));
}
