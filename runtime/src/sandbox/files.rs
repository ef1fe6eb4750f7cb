//! The files a pod's containers see as /etc/hostname, /etc/hosts and
//! /etc/resolv.conf.
//!
//! They are written plainly, without fsync: they are made before the
//! pod's record exists and are worth nothing once the node restarts (the
//! pod is then dead and kubelet makes a new one), so durability would only
//! slow RunPodSandbox down.

use std::path::Path;

use super::DnsConfig;
use crate::error::{IoContext, Result};

/// Where the node's resolver configuration is copied from when the pod
/// brings none.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The node's hosts file, which a pod on the node's network gets.
const HOST_HOSTS: &str = "/etc/hosts";

/// What goes into a pod's files.
#[derive(Debug, Clone, Copy)]
pub struct PodFiles<'a> {
    /// The pod's hostname.
    pub hostname: &'a str,
    /// Its IPs, named in /etc/hosts.
    pub ips: &'a [String],
    /// Its DNS settings; `None` copies the node's resolv.conf.
    pub dns: Option<&'a DnsConfig>,
    /// On the node's network: /etc/hosts is the node's.
    pub host_network: bool,
}

/// Writes `hostname`, `hosts` and `resolv.conf` into `dir`.
pub fn write(dir: &Path, f: &PodFiles<'_>) -> Result<()> {
    let put = |name: &str, data: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, data).context(|| format!("write {}", path.display()))
    };
    put("hostname", format!("{}\n", f.hostname).as_bytes())?;
    let hosts = if f.host_network {
        std::fs::read(HOST_HOSTS).context(|| format!("read {HOST_HOSTS}"))?
    } else {
        hosts(f.hostname, f.ips).into_bytes()
    };
    put("hosts", &hosts)?;
    let resolv = match f.dns {
        Some(dns) => resolv_conf(dns).into_bytes(),
        None => std::fs::read(HOST_RESOLV_CONF).context(|| format!("read {HOST_RESOLV_CONF}"))?,
    };
    put("resolv.conf", &resolv)
}

fn hosts(hostname: &str, ips: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for ip in ips {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

fn resolv_conf(dns: &DnsConfig) -> String {
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_pod_dns() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "8.8.8.8".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns),
            "search ns.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\nnameserver 8.8.8.8\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_names_the_pod_ip() {
        let h = hosts("web-0", &["10.88.0.5".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.5\tweb-0\n"));
    }

    #[test]
    fn writes_all_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let dns = DnsConfig::default();
        let files = PodFiles {
            hostname: "pod-a",
            ips: &[],
            dns: Some(&dns),
            host_network: false,
        };
        write(dir.path(), &files).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "pod-a\n"
        );
        assert!(dir.path().join("hosts").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            ""
        );
        // On the node's network the hosts file is the node's.
        write(
            dir.path(),
            &PodFiles {
                host_network: true,
                ..files
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("hosts")).unwrap(),
            std::fs::read(HOST_HOSTS).unwrap()
        );
    }
}
