//! The files a pod's containers see as /etc/hostname, /etc/hosts and
//! /etc/resolv.conf.

use std::path::Path;

use super::DnsConfig;
use crate::error::{IoContext, Result};
use crate::fsutil::atomic_write;

/// Where the node's resolver configuration is copied from when the pod
/// brings none.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Writes `hostname`, `hosts` and `resolv.conf` into `dir`.
pub fn write(dir: &Path, hostname: &str, ips: &[String], dns: Option<&DnsConfig>) -> Result<()> {
    atomic_write(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
    atomic_write(&dir.join("hosts"), hosts(hostname, ips).as_bytes())?;
    let resolv = match dns {
        Some(dns) => resolv_conf(dns),
        None => std::fs::read_to_string(HOST_RESOLV_CONF)
            .context(|| format!("read {HOST_RESOLV_CONF}"))?,
    };
    atomic_write(&dir.join("resolv.conf"), resolv.as_bytes())
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
        write(dir.path(), "pod-a", &[], Some(&DnsConfig::default())).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "pod-a\n"
        );
        assert!(dir.path().join("hosts").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            ""
        );
    }
}
