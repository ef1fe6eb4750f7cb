//! The port forward protocol, over SPDY or WebSocket.
//!
//! SPDY (`portforward.k8s.io`): for every forwarded connection the client
//! opens two streams carrying the same `requestID` and `port` headers,
//! `streamType: error` and `streamType: data`. Once both are there the
//! server connects to the port in the pod and copies bytes both ways;
//! anything that goes wrong is written as text on the error stream. One
//! session carries any number of connections, to any ports, at once.
//!
//! WebSocket: the ports are fixed up front (`?port=` query values, else
//! the PortForward request's); channel `2i` is data and `2i+1` error for
//! the `i`th port, and the server first writes the port (16-bit little
//! endian) on both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backend::PortForwardBackend;
use super::channel::{Reader, Writer};
use super::spdy::{Incoming, Stream};
use super::websocket::{self, ChannelKind};

/// The SPDY port forward protocol.
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// WebSocket port forward protocols.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[websocket::V4_CHANNEL, websocket::V4_BASE64_CHANNEL, ""];

/// One forwarded connection's streams.
struct Pair {
    port: u16,
    data: Option<Stream>,
    error: Option<Stream>,
}

/// Checks a new stream's headers: its port and type.
fn check(stream: &Stream) -> Result<(u16, bool), String> {
    let h = stream.headers();
    let port = h.get("port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("unable to parse {port:?} as a port"))?;
    if port == 0 {
        return Err("port 0 must be > 0".into());
    }
    match h.get("streamtype") {
        Some("data") => Ok((port, true)),
        Some("error") => Ok((port, false)),
        Some(other) => Err(format!("invalid stream type {other:?}")),
        None => Err("\"streamType\" header is required".into()),
    }
}

/// The pair a stream belongs to: its `requestID`, or for old clients
/// without one, derived from the stream id as the kubelet does (error
/// stream n, data stream n + 2).
fn request_id(stream: &Stream, data: bool) -> String {
    match stream.headers().get("requestid") {
        Some(id) => id.to_string(),
        None if data => stream.id().saturating_sub(2).to_string(),
        None => stream.id().to_string(),
    }
}

/// Serves a SPDY port forward session until the client ends it.
pub async fn serve_spdy(
    mut incoming: Incoming,
    backend: Arc<dyn PortForwardBackend>,
    sandbox_id: String,
    creation_timeout: Duration,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let (expired_tx, mut expired_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    loop {
        let stream = tokio::select! {
            s = incoming.accept() => match s {
                Some(s) => s,
                None => break,
            },
            Some(id) = expired_rx.recv() => {
                if let Some(pair) = pairs.remove(&id) {
                    let msg = format!("timed out waiting for the data and error streams of request {id}");
                    tracing::debug!(pod = %sandbox_id, "{msg}");
                    if let Some(e) = pair.error {
                        let (_, mut w) = e.split();
                        let _ = w.send(msg.as_bytes()).await;
                        let _ = w.finish().await;
                    }
                }
                continue;
            }
        };
        let (port, is_data) = match check(&stream) {
            Ok(v) => v,
            Err(why) => {
                tracing::debug!(pod = %sandbox_id, stream = stream.id(), "refusing port forward stream: {why}");
                stream.refuse().await;
                continue;
            }
        };
        if stream.reply().await.is_err() {
            break;
        }
        let id = request_id(&stream, is_data);
        let pair = pairs.entry(id.clone()).or_insert_with(|| {
            let tx = expired_tx.clone();
            let expired_id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(creation_timeout).await;
                let _ = tx.send(expired_id);
            });
            Pair {
                port,
                data: None,
                error: None,
            }
        });
        let slot = if is_data {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let msg = format!(
                "error processing stream for request {id}: {} stream already assigned",
                if is_data { "data" } else { "error" }
            );
            if let Some(e) = pair.error.take() {
                let (_, mut w) = e.split();
                let _ = w.send(msg.as_bytes()).await;
                let _ = w.finish().await;
            }
            pairs.remove(&id);
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_none() || pair.error.is_none() {
            continue;
        }
        let Some(Pair {
            port,
            data: Some(data),
            error: Some(error),
        }) = pairs.remove(&id)
        else {
            continue;
        };
        let (data_r, data_w) = data.split();
        let (_, error_w) = error.split();
        let backend = backend.clone();
        let pod = sandbox_id.clone();
        tokio::spawn(async move {
            let mut error = Writer::Spdy(error_w);
            forward(
                &*backend,
                &pod,
                port,
                Reader::Spdy(data_r),
                Writer::Spdy(data_w),
                &mut error,
                true,
            )
            .await;
            error.finish().await;
        });
    }
}

/// Parses the ports of a WebSocket port forward request: every `port`
/// query value, each possibly comma-separated.
pub fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let Some(value) = pair.strip_prefix("port=") else {
            continue;
        };
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("{p:?} is not a valid port")),
                Ok(port) => ports.push(port),
            }
        }
    }
    Ok(ports)
}

/// The WebSocket channel kinds for `ports`.
pub fn websocket_channels(ports: &[u16]) -> Vec<ChannelKind> {
    ports
        .iter()
        .flat_map(|_| [ChannelKind::ReadWrite, ChannelKind::Write])
        .collect()
}

/// Serves a WebSocket port forward session: one connection per port.
pub async fn serve_websocket(
    mut channels: Vec<websocket::Channel>,
    ports: Vec<u16>,
    backend: Arc<dyn PortForwardBackend>,
    sandbox_id: String,
) {
    let mut tasks = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let (Some(reader), Some(data_w)) = (
            channels.get_mut(2 * i).and_then(|c| c.reader.take()),
            channels.get_mut(2 * i).and_then(|c| c.writer.take()),
        ) else {
            continue;
        };
        let Some(error_w) = channels.get_mut(2 * i + 1).and_then(|c| c.writer.take()) else {
            continue;
        };
        let prefix = port.to_le_bytes();
        if data_w.send(&prefix).await.is_err() || error_w.send(&prefix).await.is_err() {
            return;
        }
        let backend = backend.clone();
        let pod = sandbox_id.clone();
        tasks.push(tokio::spawn(async move {
            forward(
                &*backend,
                &pod,
                port,
                Reader::Ws(reader),
                Writer::Ws(data_w),
                &mut Writer::Ws(error_w),
                false,
            )
            .await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Forwards one connection: connects to `port` in the pod and copies
/// both ways. Failures go on `error`. With `half_close` (SPDY) the
/// client's end of stream half-closes the pod connection and the forward
/// lasts until both directions ended; without (WebSocket, whose channels
/// cannot end alone) it ends with the pod's side.
pub async fn forward(
    backend: &dyn PortForwardBackend,
    sandbox_id: &str,
    port: u16,
    mut from_client: Reader,
    mut to_client: Writer,
    error: &mut Writer,
    half_close: bool,
) {
    let conn = match backend.connect(sandbox_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {sandbox_id}: {e}");
            tracing::debug!("{msg}");
            let _ = error.send(msg.as_bytes()).await;
            to_client.finish().await;
            return;
        }
    };
    let (mut pod_r, mut pod_w) = tokio::io::split(conn);
    let upstream = async {
        while let Some(data) = from_client.recv().await {
            if pod_w.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = pod_w.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pod_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.send(&buf[..n]).await.is_err() {
                        return false;
                    }
                }
            }
        }
        to_client.finish().await;
        true
    };
    tokio::pin!(upstream);
    tokio::pin!(downstream);
    // The pod's end of stream finishes the forward once the client's data
    // has gone up too; a client gone away finishes it at once.
    tokio::select! {
        _ = &mut upstream => {
            downstream.await;
        }
        client_alive = &mut downstream => {
            if client_alive && half_close {
                upstream.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ports_are_parsed() {
        assert_eq!(query_ports(None).unwrap(), Vec::<u16>::new());
        assert_eq!(
            query_ports(Some("port=80&x=1&port=8080,9090")).unwrap(),
            vec![80, 8080, 9090]
        );
        assert!(query_ports(Some("port=")).is_err());
        assert!(query_ports(Some("port=0")).is_err());
        assert!(query_ports(Some("port=70000")).is_err());
        assert!(query_ports(Some("port=http")).is_err());
    }
}
