//! Traffic counters of the interfaces in a network namespace.
//!
//! Read from `/proc/thread-self/net/dev` on a thread that has entered the
//! namespace: unlike `/sys/class/net` (whose view is fixed by the netns
//! that mounted sysfs) and `/proc/self/net` (the thread-group leader's
//! netns), it shows the calling thread's namespace.

use std::path::Path;

use crate::error::Error;
use crate::netns;

/// Counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
}

/// The counters of every interface in the namespace pinned at `pin`,
/// loopback included, in the kernel's order.
pub fn interface_stats(pin: &Path) -> Result<Vec<InterfaceStats>, Error> {
    let text = netns::run_in(pin, || std::fs::read_to_string("/proc/thread-self/net/dev"))?;
    let text = text.map_err(|source| Error::Netns {
        path: pin.to_path_buf(),
        context: "read /proc/thread-self/net/dev".into(),
        source,
    })?;
    Ok(parse_net_dev(&text))
}

/// Parses /proc/net/dev: two header lines, then
/// `name: rx_bytes packets errs drop fifo frame compressed multicast
/// tx_bytes packets errs …`.
fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if f.len() < 11 {
                return None;
            }
            Some(InterfaceStats {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f.get(11).copied().unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    4374      39    1    5    0     0          0         0     1022      11    3    6    0     0       0          0
";
        let s = parse_net_dev(text);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 4374,
                rx_packets: 39,
                rx_errors: 1,
                rx_dropped: 5,
                tx_bytes: 1022,
                tx_packets: 11,
                tx_errors: 3,
                tx_dropped: 6,
            }
        );
    }

    #[test]
    fn reads_a_real_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("ns");
        netns::create(&pin).unwrap();
        let stats = interface_stats(&pin);
        netns::remove(&pin).unwrap();
        let stats = stats.unwrap();
        // A new namespace has loopback only.
        assert_eq!(stats.len(), 1, "{stats:?}");
        assert_eq!(stats[0].name, "lo");
    }
}
