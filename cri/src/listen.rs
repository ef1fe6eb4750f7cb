//! Binding the daemon's TCP ports (metrics, streaming) when it starts.
//!
//! A daemon restarted right after it was killed (kill -9, an OOM kill,
//! systemd's `Restart=`) can find its port still held for a moment: a
//! helper it was starting when it died (a CNI plugin, the OCI runtime, a
//! monitor) holds a copy of every fd between its fork and its exec, and
//! on a loaded node that can last well past the restart. So a port in
//! use is tried again for a while before start-up fails; one held longer
//! than that is someone else's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

/// How long a port in use is tried again.
const PATIENCE: Duration = Duration::from_secs(10);
/// Between tries.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// Binds `addr`, trying again for a while if it is in use; `what` names
/// the port in the log.
pub async fn bind_tcp(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    bind_within(addr, what, PATIENCE).await
}

async fn bind_within(
    addr: SocketAddr,
    what: &str,
    patience: Duration,
) -> std::io::Result<TcpListener> {
    let began = Instant::now();
    let mut logged = false;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && began.elapsed() < patience => {
                if !logged {
                    tracing::info!(%addr, port = what, "address in use; trying again for {patience:?}");
                    logged = true;
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_freed_meanwhile_is_bound() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let freeing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
        });
        let began = Instant::now();
        let l = bind_tcp(addr, "test").await.unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        assert!(began.elapsed() >= Duration::from_millis(250));
        freeing.await.unwrap();
    }

    #[tokio::test]
    async fn a_port_held_for_good_fails_after_the_patience() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let began = Instant::now();
        let e = bind_within(addr, "test", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(began.elapsed() >= Duration::from_millis(300));
    }
}
