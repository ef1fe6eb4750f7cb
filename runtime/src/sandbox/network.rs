//! A pod's network: its pinned network namespace and the CNI attachment
//! in it.

use std::path::Path;

use crius_cni::{Attachment, Cni};
use serde_json::{Map, Value, json};

use super::PodConfig;
use crate::error::{Error, Result};

/// The interface CNI creates in the pod.
const POD_IFNAME: &str = "eth0";

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
    Attachment {
        container_id: id.to_string(),
        netns: netns.to_path_buf(),
        ifname: POD_IFNAME.to_string(),
        args,
        capability_args,
    }
}

/// Creates the pod's network namespace at `netns` and attaches it to the
/// default network. Returns the pod IPs. On failure nothing is left.
pub async fn setup(cni: &Cni, id: &str, config: &PodConfig, netns: &Path) -> Result<Vec<String>> {
    let pin = netns.to_path_buf();
    tokio::task::spawn_blocking(move || crius_cni::netns::create(&pin))
        .await
        .map_err(|e| Error::Internal(format!("netns task: {e}")))?
        .map_err(|source| Error::Network {
            context: format!("create network namespace of pod sandbox {id}"),
            source: Box::new(source),
        })?;
    match cni.setup(&attachment(id, config, netns)).await {
        Ok(result) => {
            // IPv4 first: kubelet takes the first IP as the pod's primary.
            let mut ips: Vec<_> = result.sandbox_ips(POD_IFNAME).collect();
            ips.sort_by_key(|ip| !ip.is_ipv4());
            Ok(ips.iter().map(|ip| ip.to_string()).collect())
        }
        Err(source) => {
            let _ = crius_cni::netns::remove(netns);
            Err(Error::Network {
                context: format!("set up network of pod sandbox {id}"),
                source: Box::new(source),
            })
        }
    }
}

/// Detaches the pod from its network and removes its network namespace.
/// Safe to call again after it succeeded.
pub async fn teardown(cni: &Cni, id: &str, config: &PodConfig, netns: &Path) -> Result<()> {
    cni.teardown(&attachment(id, config, netns))
        .await
        .map_err(|source| Error::Network {
            context: format!("tear down network of pod sandbox {id}"),
            source: Box::new(source),
        })?;
    crius_cni::netns::remove(netns).map_err(|source| Error::Network {
        context: format!("remove network namespace of pod sandbox {id}"),
        source: Box::new(source),
    })
}
