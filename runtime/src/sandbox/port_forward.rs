//! The pod side of PortForward: a TCP connection to a port on the
//! loopback of the pod's network namespace, made from a thread that enters
//! the namespace (the socket keeps it; the daemon's threads never change
//! namespace).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::{Pods, SandboxState};
use crate::error::{Error, Result};
use crate::records::pod::NamespaceKind;

/// How long connecting to the port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Pods {
    /// Connects to `port` on the loopback of pod `sandbox_id` (127.0.0.1,
    /// then ::1 if nothing listens there), in the pod's network namespace
    /// or, for a pod on the node's network, the node's.
    pub(crate) async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        let sb = self.get(sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        if port == 0 {
            return Err(Error::InvalidArgument("port 0 cannot be forwarded".into()));
        }
        let netns: Option<PathBuf> = sb.namespace(NamespaceKind::Net).cloned();
        let id = sb.id.clone();
        let connected =
            tokio::task::spawn_blocking(move || -> Result<std::io::Result<TcpStream>> {
                match &netns {
                    Some(pin) => {
                        crius_cni::netns::run_in(pin, || connect_loopback(port)).map_err(|e| {
                            Error::Network {
                                context: format!("enter the network namespace of pod sandbox {id}"),
                                source: Box::new(e),
                            }
                        })
                    }
                    None => Ok(connect_loopback(port)),
                }
            })
            .await
            .map_err(|e| Error::Internal(format!("port forward task: {e}")))??;
        let stream = connected.map_err(|source| Error::Io {
            context: format!("connect to port {port} in pod sandbox {}", sb.id),
            source,
        })?;
        stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
            .map_err(|source| Error::Io {
                context: format!(
                    "register the connection to port {port} of pod sandbox {}",
                    sb.id
                ),
                source,
            })
    }
}

/// Connects to `port` on 127.0.0.1, or on ::1 when refused there.
fn connect_loopback(port: u16) -> std::io::Result<TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            // Report the IPv4 refusal if IPv6 has nothing either.
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e)
        }
        r => r,
    }
}
