//! A throwaway Prometheus server (Debian's `prometheus` package) scraping
//! a crius daemon: started on a free loopback port with a scrape config
//! derived from the shipped `deploy/prometheus.yml` (target and interval
//! replaced), storing into a temp dir, killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Context, Result, err, free_port, http_get, log_tail, terminate};

/// The target the shipped scrape config points at.
const SHIPPED_TARGET: &str = "127.0.0.1:9191";
/// The interval the shipped scrape config uses.
const SHIPPED_INTERVAL: &str = "scrape_interval: 15s";

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, with the rest of
    /// the shipped `deploy/prometheus.yml`; waits until it is ready.
    pub fn start(target: SocketAddr) -> Result<Prometheus> {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus.yml");
        let text =
            std::fs::read_to_string(&shipped).context(|| format!("read {}", shipped.display()))?;
        if !text.contains(SHIPPED_TARGET) || !text.contains(SHIPPED_INTERVAL) {
            return Err(err(format!(
                "{} no longer names {SHIPPED_TARGET:?} and {SHIPPED_INTERVAL:?}; update the harness",
                shipped.display()
            )));
        }
        let config = text
            .replace(SHIPPED_TARGET, &target.to_string())
            .replace(SHIPPED_INTERVAL, "scrape_interval: 1s");
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-prometheus-")
            .tempdir()
            .context(|| "temp dir for prometheus")?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).context(|| "write prometheus.yml")?;
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).context(|| "create prometheus.log")?;
        let log_err = log_file.try_clone().context(|| "clone log file")?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .context(|| "run prometheus (apt-get install prometheus)")?;
        let mut p = Prometheus { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http_get(addr, "/-/ready")
                && r.starts_with("HTTP/1.0 200")
            {
                return Ok(p);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(err(format!(
                    "prometheus exited ({status}):\n{}",
                    log_tail(&log, 30)
                )));
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "prometheus not ready:\n{}",
                    log_tail(&log, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// Runs an instant PromQL query; returns each series' labels and value.
    pub fn query(&self, promql: &str) -> Result<Vec<(serde_json::Value, f64)>> {
        let response = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or_else(|| err(format!("no body in {response:?}")))?;
        let v: serde_json::Value =
            serde_json::from_str(body).context(|| format!("query {promql}: {body}"))?;
        if v["status"] != "success" {
            return Err(err(format!("query {promql}: {body}")));
        }
        let results = v["data"]["result"].as_array().cloned().unwrap_or_default();
        Ok(results
            .into_iter()
            .filter_map(|r| {
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), value))
            })
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
