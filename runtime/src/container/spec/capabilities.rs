//! The capability set of a container's process.

use oci_spec::runtime::{Capabilities, Capability};

use crate::error::{Error, Result};

/// Capabilities a container gets by default (containerd's and Docker's
/// set).
pub(super) const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability the kernel knows, in number order (for "ALL").
pub(super) const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities whose bits are set in a `CapBnd`-style mask.
pub fn capabilities_in_mask(mask: u64) -> Capabilities {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .filter_map(|(_, name)| capability(name).ok())
        .collect()
}

/// Parses a capability name as CRI gives it ("NET_ADMIN", "CAP_NET_ADMIN").
pub(super) fn capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| Error::InvalidArgument(format!("unknown capability {name:?}")))
}

/// The capability set: the defaults, plus adds, minus drops ("ALL" on
/// either side as the CRI defines it).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Capabilities> {
    let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: Capabilities = if is_all(add) {
        ALL_CAPABILITIES
            .iter()
            .map(|c| capability(c))
            .collect::<Result<_>>()?
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| capability(c))
            .collect::<Result<_>>()?
    };
    if is_all(drop) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        caps.insert(capability(c)?);
    }
    for c in drop.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        caps.remove(&capability(c)?);
    }
    Ok(caps)
}
