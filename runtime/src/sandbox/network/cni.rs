//! The CNI network backend: a pod is one CNI attachment (of the default
//! network, and loopback) of its pinned network namespace.

use std::path::Path;

use crius_cni::{Attachment, Cni, ValidAttachment};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Attached, Collected, NetworkBackend, NetworkStatus, POD_IFNAME, PodNetwork};
use crate::error::{Error, Result};
use crate::records::pod::PodConfig;
use crate::sandbox::quantity;

/// Pod annotations asking for traffic shaping (Kubernetes'), in bits per
/// second; handed to plugins declaring the `bandwidth` capability.
const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// Pod annotation asking for specific addresses (comma-separated, each
/// with or without a prefix length), handed to plugins declaring the `ips`
/// capability (host-local honours it). The CRI has no field for this.
pub const IPS_ANNOTATION: &str = "crius.io/ips";

/// The `ips` capability arg from the pod's annotation.
pub fn ips(config: &PodConfig) -> Result<Option<Value>> {
    let Some(v) = config.annotations.get(IPS_ANNOTATION) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (addr, prefix) = item.split_once('/').unwrap_or((item, ""));
        let ok = addr.parse::<std::net::IpAddr>().is_ok_and(|ip| {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= max)
        });
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "pod annotation {IPS_ANNOTATION}: {item:?} is not an IP address"
            )));
        }
        out.push(Value::String(item.to_string()));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// The `bandwidth` capability arg from the pod's annotations, as
/// containerd builds it (the burst is left at its largest).
pub fn bandwidth(config: &PodConfig) -> Result<Option<Value>> {
    let mut out = Map::new();
    for (key, rate, burst) in [
        (INGRESS_BANDWIDTH, "ingressRate", "ingressBurst"),
        (EGRESS_BANDWIDTH, "egressRate", "egressBurst"),
    ] {
        if let Some(v) = config.annotations.get(key) {
            let bits = quantity::parse(v).filter(|b| *b > 0).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "pod annotation {key}={v:?} is not a positive quantity (bits per second)"
                ))
            })?;
            out.insert(rate.into(), bits.into());
            out.insert(burst.into(), u64::from(u32::MAX).into());
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// The CNI attachment of the pod `id` whose namespace is pinned at `netns`.
fn attachment(id: &str, config: &PodConfig, netns: &Path) -> Attachment {
    let args = vec![
        ("IgnoreUnknown".to_string(), "1".to_string()),
        ("K8S_POD_NAMESPACE".to_string(), config.namespace.clone()),
        ("K8S_POD_NAME".to_string(), config.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".to_string(), id.to_string()),
        ("K8S_POD_UID".to_string(), config.uid.clone()),
    ];
    let mut capability_args = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol,
                "hostIP": p.host_ip,
            })
        })
        .collect();
    if !ports.is_empty() {
        capability_args.insert("portMappings".into(), Value::Array(ports));
    }
    if let Some(dns) = &config.dns {
        capability_args.insert(
            "dns".into(),
            json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
        );
    }
    // Checked before anything was made (RunPodSandbox validates first).
    if let Ok(Some(b)) = bandwidth(config) {
        capability_args.insert("bandwidth".into(), b);
    }
    if let Ok(Some(ips)) = ips(config) {
        capability_args.insert("ips".into(), ips);
    }
    Attachment {
        container_id: id.to_string(),
        netns: netns.to_path_buf(),
        ifname: POD_IFNAME.to_string(),
        args,
        capability_args,
    }
}

/// The CNI backend over a CNI client.
#[derive(Debug, Clone)]
pub struct CniBackend {
    cni: Cni,
}

impl CniBackend {
    /// The backend over `cni`.
    pub fn new(cni: Cni) -> CniBackend {
        CniBackend { cni }
    }
}

/// A CNI error as the runtime's, saying what was being done to which pod.
fn network_error(context: String) -> impl FnOnce(crius_cni::Error) -> Error {
    move |source| Error::Network {
        context,
        source: Box::new(source),
    }
}

impl NetworkBackend for CniBackend {
    fn attach<'a>(&'a self, pod: PodNetwork<'a>) -> BoxFuture<'a, Result<Attached>> {
        Box::pin(async move {
            let result = self
                .cni
                .setup(&attachment(pod.id, pod.config, pod.netns))
                .await
                .map_err(network_error(format!(
                    "set up network of pod sandbox {}",
                    pod.id
                )))?;
            // IPv4 first: kubelet takes the first IP as the pod's primary.
            let mut ips: Vec<_> = result.sandbox_ips(POD_IFNAME).collect();
            ips.sort_by_key(|ip| !ip.is_ipv4());
            Ok(Attached {
                ips: ips.iter().map(|ip| ip.to_string()).collect(),
                result: result.raw().clone(),
            })
        })
    }

    fn detach<'a>(&'a self, pod: PodNetwork<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.cni
                .teardown(&attachment(pod.id, pod.config, pod.netns))
                .await
                .map_err(network_error(format!(
                    "tear down network of pod sandbox {}",
                    pod.id
                )))
        })
    }

    fn is_attached<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.cni
                .is_attached(id, POD_IFNAME)
                .await
                .map_err(network_error(format!(
                    "look up the network attachment of pod sandbox {id}"
                )))
        })
    }

    fn status(&self) -> BoxFuture<'_, NetworkStatus> {
        Box::pin(async move {
            let s = self.cni.status().await;
            NetworkStatus {
                ready: s.ready,
                reason: s.reason,
                message: s.message,
            }
        })
    }

    fn collect<'a>(&'a self, attached: &'a [String]) -> BoxFuture<'a, Result<Collected>> {
        Box::pin(async move {
            let valid: Vec<ValidAttachment> = attached
                .iter()
                .map(|id| ValidAttachment {
                    container_id: id.clone(),
                    ifname: POD_IFNAME.into(),
                })
                .collect();
            let report = self
                .cni
                .gc(&valid)
                .await
                .map_err(network_error("CNI garbage collection".into()))?;
            Ok(Collected {
                detached: report.deleted,
                errors: report.errors,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn capability_args_from_the_pod() {
        let config = PodConfig {
            name: "web".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            port_mappings: vec![
                crate::records::pod::PortMapping {
                    protocol: "udp".into(),
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                },
                // No host port: nothing to map.
                crate::records::pod::PortMapping {
                    protocol: "tcp".into(),
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            annotations: BTreeMap::from([(INGRESS_BANDWIDTH.to_string(), "10M".to_string())]),
            ..Default::default()
        };
        let att = attachment("p1", &config, Path::new("/run/x"));
        assert_eq!(
            att.capability_args["portMappings"],
            json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(
            att.capability_args["bandwidth"],
            json!({"ingressRate": 10_000_000u64, "ingressBurst": 4294967295u64})
        );
        assert!(att.capability_args.get("dns").is_none());
        assert!(
            att.args
                .contains(&("K8S_POD_INFRA_CONTAINER_ID".into(), "p1".into()))
        );
        assert!(att.args.contains(&("K8S_POD_UID".into(), "u".into())));

        let mut bad = config.clone();
        bad.annotations
            .insert(EGRESS_BANDWIDTH.into(), "lots".into());
        let e = bandwidth(&bad).unwrap_err();
        assert!(e.to_string().contains(EGRESS_BANDWIDTH), "{e}");

        let mut with_ips = config.clone();
        with_ips
            .annotations
            .insert(IPS_ANNOTATION.into(), "10.1.2.3, fd00::3/64".into());
        let att = attachment("p1", &with_ips, Path::new("/run/x"));
        assert_eq!(
            att.capability_args["ips"],
            json!(["10.1.2.3", "fd00::3/64"])
        );
        for bad in ["10.1.2", "10.1.2.3/99", "x"] {
            with_ips
                .annotations
                .insert(IPS_ANNOTATION.into(), bad.into());
            let e = ips(&with_ips).unwrap_err();
            assert!(e.to_string().contains(IPS_ANNOTATION), "{bad}: {e}");
        }
    }
}
