//! A pod's namespaced sysctls, written once into the pod's own namespaces
//! at RunPodSandbox (there is no pause container to carry them): network
//! sysctls into its network namespace, IPC ones into its IPC namespace,
//! UTS ones into its UTS namespace. Each namespace is entered on a thread
//! of its own that exits afterwards.
//!
//! Which sysctls are namespaced follows the kernel (and runc's check):
//! `net.*`; `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`;
//! `kernel.hostname`, `kernel.domainname`. Anything else would change the
//! node and is refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::error::{Error, IoContext, Result};
use crate::records::pod::NamespaceKind;

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Network namespace.
    Net,
    /// IPC namespace.
    Ipc,
    /// UTS namespace.
    Uts,
}

impl Kind {
    /// The kind of the pod's pinned namespace it is set in.
    pub fn pin(self) -> NamespaceKind {
        match self {
            Kind::Net => NamespaceKind::Net,
            Kind::Ipc => NamespaceKind::Ipc,
            Kind::Uts => NamespaceKind::Uts,
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

/// The IPC sysctls of the kernel.
const IPC: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// A checked sysctl: its namespace and its file under /proc/sys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// The name as given.
    pub name: String,
    /// Its namespace.
    pub kind: Kind,
    /// Relative path under /proc/sys.
    pub path: PathBuf,
    /// The value to write.
    pub value: String,
}

/// Checks a sysctl name (`a.b.c`, or `a/b/c` where dots are part of the
/// names, as Kubernetes allows) and value.
pub fn parse(name: &str, value: &str) -> Result<Sysctl> {
    let bad = |why: &str| Error::InvalidArgument(format!("sysctl {name:?}: {why}"));
    let parts: Vec<&str> = if name.contains('/') {
        name.split('/').collect()
    } else {
        name.split('.').collect()
    };
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(bad("not a sysctl name"));
    }
    if value.contains('\n') || value.contains('\0') {
        return Err(bad("the value holds a newline or NUL"));
    }
    let dotted = parts.join(".");
    let kind = if parts[0] == "net" {
        Kind::Net
    } else if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        Kind::Ipc
    } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
        Kind::Uts
    } else {
        return Err(bad(
            "not a namespaced sysctl; setting it would change the whole node",
        ));
    };
    Ok(Sysctl {
        name: name.to_string(),
        kind,
        path: parts.iter().collect(),
        value: value.to_string(),
    })
}

/// Checks every sysctl of a pod, and that the pod has its own namespace
/// for each (`own` says which kinds it has).
pub fn parse_all(
    sysctls: &BTreeMap<String, String>,
    own: impl Fn(Kind) -> bool,
) -> Result<Vec<Sysctl>> {
    let mut out = Vec::new();
    for (name, value) in sysctls {
        let s = parse(name, value)?;
        if !own(s.kind) {
            return Err(Error::InvalidArgument(format!(
                "sysctl {name:?} needs the pod's own {} namespace, but the pod uses the node's",
                s.kind.pin()
            )));
        }
        out.push(s);
    }
    Ok(out)
}

/// Writes `sysctls` (all of one `kind`) inside the namespace pinned at
/// `pin`, on a thread of its own.
pub fn apply(kind: Kind, pin: &Path, sysctls: &[Sysctl]) -> Result<()> {
    let ns = File::open(pin).context(|| format!("open namespace {}", pin.display()))?;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .spawn_scoped(s, || -> Result<()> {
                nix::sched::setns(&ns, kind.flag())
                    .context(|| format!("enter namespace {}", pin.display()))?;
                for sysctl in sysctls {
                    let file = Path::new("/proc/sys").join(&sysctl.path);
                    match std::fs::write(&file, &sysctl.value) {
                        Ok(()) => {}
                        // The request's fault: no such sysctl, or a value the
                        // kernel does not take.
                        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => {
                            return Err(Error::InvalidArgument(format!(
                                "sysctl {}={:?}: {e}",
                                sysctl.name, sysctl.value
                            )));
                        }
                        Err(e) => {
                            return Err(Error::io(
                                format!("set sysctl {}={:?}", sysctl.name, sysctl.value),
                                e,
                            ));
                        }
                    }
                }
                Ok(())
            })
            .context(|| format!("start a thread to enter namespace {}", pin.display()))?
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("sysctl thread panicked".into())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_namespaces_and_files() {
        let s = parse("net.ipv4.ip_unprivileged_port_start", "0").unwrap();
        assert_eq!(s.kind, Kind::Net);
        assert_eq!(s.path, Path::new("net/ipv4/ip_unprivileged_port_start"));
        // Slashes: dots belong to the names (a VLAN interface).
        let s = parse("net/ipv4/conf/eth0.100/rp_filter", "1").unwrap();
        assert_eq!(s.path, Path::new("net/ipv4/conf/eth0.100/rp_filter"));
        assert_eq!(
            parse("kernel.shm_rmid_forced", "1").unwrap().kind,
            Kind::Ipc
        );
        assert_eq!(parse("fs.mqueue.msg_max", "20").unwrap().kind, Kind::Ipc);
        assert_eq!(parse("kernel.domainname", "x").unwrap().kind, Kind::Uts);
    }

    #[test]
    fn node_wide_and_malformed_names_are_refused() {
        for name in [
            "kernel.pid_max",
            "vm.swappiness",
            "fs.file-max",
            "net..ipv4",
            "net.ipv4.",
            "net/../../etc",
            "",
        ] {
            let e = parse(name, "1").unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{name}: {e}");
            assert!(e.to_string().contains("sysctl"), "{e}");
        }
        assert!(parse("net.ipv4.ip_forward", "1\n0").is_err());
    }

    #[test]
    fn a_pod_on_the_nodes_network_may_not_set_net_sysctls() {
        let sysctls = BTreeMap::from([
            ("kernel.shmmni".to_string(), "100".to_string()),
            ("net.core.somaxconn".to_string(), "1024".to_string()),
        ]);
        let e = parse_all(&sysctls, |k| k != Kind::Net).unwrap_err();
        assert!(e.to_string().contains("net.core.somaxconn"), "{e}");
        assert_eq!(parse_all(&sysctls, |_| true).unwrap().len(), 2);
    }
}
