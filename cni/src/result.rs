//! CNI results: what ADD returns. Parsed tolerantly across 0.3.x, 0.4.0 and
//! 1.x (0.3/0.4 carry a `version` per IP), with the raw JSON kept: that is
//! what is cached and handed to the next plugin as `prevResult`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An address with a prefix length, as CNI writes it: `10.88.0.5/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no prefix length"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|e| format!("{s:?}: prefix length: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{s:?}: prefix length over {max}"));
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An optional IP where some plugins write `""` for none.
fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))),
    }
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Interface {
    /// The interface name.
    pub name: String,
    /// Its hardware address, if any.
    #[serde(default)]
    pub mac: Option<String>,
    /// Its MTU, if reported.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The namespace path it lives in; `None` or empty for host interfaces.
    #[serde(default)]
    pub sandbox: Option<String>,
}

impl Interface {
    /// Whether the interface is inside the container (has a sandbox).
    pub fn in_sandbox(&self) -> bool {
        self.sandbox.as_deref().is_some_and(|s| !s.is_empty())
    }
}

/// An IP configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpConfig {
    /// The address and prefix.
    pub address: Cidr,
    /// The gateway, if any.
    #[serde(default, deserialize_with = "opt_ip")]
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`] of the interface holding it.
    #[serde(default)]
    pub interface: Option<usize>,
    /// `"4"` or `"6"` in 0.3.x/0.4.0 results; absent from 1.0.0.
    #[serde(default)]
    pub version: Option<String>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    /// The destination.
    pub dst: Cidr,
    /// The next hop, if any (none means the interface's default gateway).
    #[serde(default, deserialize_with = "opt_ip")]
    pub gw: Option<IpAddr>,
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// Name servers, in priority order.
    pub nameservers: Vec<String>,
    /// The local domain.
    pub domain: Option<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    cni_version: String,
    #[serde(default)]
    interfaces: Option<Vec<Interface>>,
    #[serde(default)]
    ips: Option<Vec<IpConfig>>,
    #[serde(default)]
    routes: Option<Vec<Route>>,
    #[serde(default)]
    dns: Option<Dns>,
}

/// A CNI result, typed, with the JSON it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The spec version the result is written in.
    pub cni_version: String,
    /// Interfaces created or configured.
    pub interfaces: Vec<Interface>,
    /// IP configurations.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
    raw: Value,
}

impl CniResult {
    /// Parses a plugin's output.
    pub fn from_slice(data: &[u8]) -> Result<Self, String> {
        let raw: Value = serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
        Self::from_value(raw)
    }

    /// Parses a result already read as JSON.
    pub fn from_value(raw: Value) -> Result<Self, String> {
        let wire = Wire::deserialize(&raw).map_err(|e| e.to_string())?;
        if let Some(bad) = wire
            .ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.interface)
            .find(|&i| i >= wire.interfaces.as_ref().map_or(0, Vec::len))
        {
            return Err(format!("ip refers to interface index {bad}, out of range"));
        }
        Ok(CniResult {
            cni_version: wire.cni_version,
            interfaces: wire.interfaces.unwrap_or_default(),
            ips: wire.ips.unwrap_or_default(),
            routes: wire.routes.unwrap_or_default(),
            dns: wire.dns.unwrap_or_default(),
            raw,
        })
    }

    /// The JSON as the plugin printed it.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Every address of the result, in order.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ips.iter().map(|c| c.address.addr)
    }

    /// The addresses of the sandbox interface `ifname`, in order. IPs that
    /// name no interface count as the sandbox's (as containerd counts them
    /// to its default interface).
    pub fn sandbox_ips<'a>(&'a self, ifname: &'a str) -> impl Iterator<Item = IpAddr> + 'a {
        self.ips
            .iter()
            .filter(
                move |c| match c.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(iface) => iface.name == ifname && iface.in_sandbox(),
                    None => true,
                },
            )
            .map(|c| c.address.addr)
    }

    /// The first IPv4 address, if any.
    pub fn first_ipv4(&self) -> Option<IpAddr> {
        self.ips().find(IpAddr::is_ipv4)
    }

    /// The first IPv6 address, if any.
    pub fn first_ipv6(&self) -> Option<IpAddr> {
        self.ips().find(IpAddr::is_ipv6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What the bridge plugin prints for cniVersion 1.0.0.
    const BRIDGE_1_0_0: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x"}
        ],
        "ips": [
            {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
            {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.local"]}
    }"#;

    // 0.4.0 results carry "version" per IP.
    const PTP_0_4_0: &str = r#"{
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
        "ips": [{"version": "4", "address": "192.168.1.9/24", "gateway": "", "interface": 0}],
        "dns": {}
    }"#;

    #[test]
    fn parses_1_0_0_result() {
        let r = CniResult::from_slice(BRIDGE_1_0_0.as_bytes()).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces.len(), 3);
        assert!(r.interfaces[2].in_sandbox());
        assert!(!r.interfaces[0].in_sandbox());
        assert_eq!(r.ips[0].address.to_string(), "10.88.0.5/16");
        assert_eq!(r.ips[0].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(r.first_ipv4(), Some("10.88.0.5".parse().unwrap()));
        assert_eq!(r.first_ipv6(), Some("fd00::5".parse().unwrap()));
        assert_eq!(r.sandbox_ips("eth0").count(), 2);
        assert_eq!(r.sandbox_ips("cni0").count(), 0);
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.routes[1].gw, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(r.raw()["ips"][0]["interface"], 2);
    }

    #[test]
    fn parses_0_4_0_result_with_ip_versions_and_empty_gateway() {
        let r = CniResult::from_slice(PTP_0_4_0.as_bytes()).unwrap();
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.ips[0].version.as_deref(), Some("4"));
        assert_eq!(r.ips[0].gateway, None);
        assert_eq!(r.first_ipv4(), Some("192.168.1.9".parse().unwrap()));
        assert_eq!(r.first_ipv6(), None);
        assert!(r.routes.is_empty());
    }

    #[test]
    fn minimal_result_has_empty_lists() {
        let r = CniResult::from_slice(br#"{"cniVersion":"1.0.0"}"#).unwrap();
        assert!(r.interfaces.is_empty() && r.ips.is_empty() && r.routes.is_empty());
        assert_eq!(r.ips().count(), 0);
    }

    #[test]
    fn rejects_bad_results() {
        for bad in [
            "",
            "[]",
            r#"{"ips":[]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":0}]}"#,
        ] {
            assert!(CniResult::from_slice(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_contains() {
        let net: Cidr = "10.200.7.0/24".parse().unwrap();
        assert!(net.contains("10.200.7.200".parse().unwrap()));
        assert!(!net.contains("10.200.8.1".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::/64".parse().unwrap();
        assert!(v6.contains("fd00::9".parse().unwrap()));
    }
}
