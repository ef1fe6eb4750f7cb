//! Whether a network's pod subnets are routed elsewhere on the node
//! already: a node that ran containerd, podman or CRI-O keeps their
//! bridges and routes (10.88.0.0/16, 10.85.0.0/16 …), and a pod subnet
//! overlapping one leaves pods unreachable. Read from `/proc/net/route`
//! (IPv4); routes on the network's own bridge, and default routes, are
//! no conflict.

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::config::NetworkConfigList;

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net4 {
    /// The network's address.
    pub addr: Ipv4Addr,
    /// Its prefix length (0–32).
    pub prefix: u8,
}

impl Net4 {
    fn mask(prefix: u8) -> u32 {
        match prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p.min(32))),
        }
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Net4) -> bool {
        let m = Self::mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    fn parse(s: &str) -> Option<Net4> {
        let (addr, prefix) = s.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Net4 {
            addr: addr.parse().ok()?,
            prefix,
        })
    }
}

impl std::fmt::Display for Net4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The IPv4 subnets the network's IPAM hands out: host-local's `ranges`
/// (and the older single `subnet`), in every plugin of the list.
pub fn subnets(list: &NetworkConfigList) -> Vec<Net4> {
    let mut out = Vec::new();
    for p in &list.plugins {
        let Some(ipam) = p.raw().get("ipam") else {
            continue;
        };
        let ranges = ipam.get("ranges").and_then(Value::as_array);
        let in_ranges = ranges
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|r| r.get("subnet").and_then(Value::as_str));
        let single = ipam.get("subnet").and_then(Value::as_str);
        out.extend(in_ranges.chain(single).filter_map(Net4::parse));
    }
    out
}

/// The bridges the network's bridge plugins make (`cni0` when unnamed).
fn bridges(list: &NetworkConfigList) -> Vec<String> {
    list.plugins
        .iter()
        .filter(|p| p.raw().get("type").and_then(Value::as_str) == Some("bridge"))
        .map(|p| {
            p.raw()
                .get("bridge")
                .and_then(Value::as_str)
                .unwrap_or("cni0")
                .to_string()
        })
        .collect()
}

/// The routes of a `/proc/net/route` table: (interface, destination).
fn routes(table: &str) -> Vec<(String, Net4)> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, mask) = (f.first()?, f.get(1)?, f.get(7)?);
            // The kernel prints the addresses as they lie in memory.
            let addr = u32::from_str_radix(dest, 16).ok()?.to_ne_bytes();
            let mask = u32::from_str_radix(mask, 16).ok()?.to_ne_bytes();
            Some((
                iface.to_string(),
                Net4 {
                    addr: Ipv4Addr::from(addr),
                    prefix: u32::from_be_bytes(mask).count_ones() as u8,
                },
            ))
        })
        .collect()
}

/// What of the network's pod subnets the node already routes elsewhere,
/// each said as "<subnet> overlaps <route> on <interface>".
pub fn conflicts(list: &NetworkConfigList, route_table: &str) -> Vec<String> {
    let own = bridges(list);
    let routes = routes(route_table);
    let mut out = Vec::new();
    for subnet in subnets(list) {
        for (iface, route) in &routes {
            if route.prefix == 0 || own.contains(iface) || !subnet.overlaps(route) {
                continue;
            }
            out.push(format!("{subnet} overlaps the route {route} on {iface}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: &str) -> NetworkConfigList {
        NetworkConfigList::from_slice(json.as_bytes()).unwrap()
    }

    /// A table as the kernel prints it on a little-endian host.
    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
cni-podman0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
crius0\t0000570A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    const CONFLIST: &str = r#"{"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "bridge": "crius0",
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "SUBNET"}], [{"subnet": "fd00::/64"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;

    #[test]
    fn a_subnet_routed_on_another_bridge_conflicts() {
        if cfg!(target_endian = "big") {
            return;
        }
        let l = list(&CONFLIST.replace("SUBNET", "10.88.0.0/16"));
        assert_eq!(
            subnets(&l),
            [Net4 {
                addr: Ipv4Addr::new(10, 88, 0, 0),
                prefix: 16
            }]
        );
        assert_eq!(
            conflicts(&l, TABLE),
            ["10.88.0.0/16 overlaps the route 10.88.0.0/16 on cni-podman0"]
        );
        // A smaller subnet inside it, too.
        let l = list(&CONFLIST.replace("SUBNET", "10.88.3.0/24"));
        assert_eq!(conflicts(&l, TABLE).len(), 1);
        // Its own bridge's route and the default route are no conflict.
        let l = list(&CONFLIST.replace("SUBNET", "10.87.0.0/16"));
        assert_eq!(conflicts(&l, TABLE), [] as [String; 0]);
        // Nor is a subnet nothing routes.
        let l = list(&CONFLIST.replace("SUBNET", "10.99.0.0/16"));
        assert_eq!(conflicts(&l, TABLE), [] as [String; 0]);
        assert_eq!(conflicts(&l, "garbage\nx y\n"), [] as [String; 0]);
    }

    #[test]
    fn overlap_of_networks() {
        let n = |s: &str| Net4::parse(s).unwrap();
        assert!(n("10.0.0.0/8").overlaps(&n("10.1.2.0/24")));
        assert!(n("10.1.2.0/24").overlaps(&n("10.0.0.0/8")));
        assert!(!n("10.1.2.0/24").overlaps(&n("10.1.3.0/24")));
        assert!(n("0.0.0.0/0").overlaps(&n("1.2.3.4/32")));
        assert_eq!(Net4::parse("10.0.0.0/33"), None);
        assert_eq!(Net4::parse("nonsense"), None);
    }
}
