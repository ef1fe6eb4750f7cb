//! Prometheus metrics: a tower layer that counts and times every gRPC
//! call, and the HTTP endpoint that serves `GET /metrics`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

/// The CRI methods crius serves; anything else is counted as "unknown" so
/// that a client cannot grow the label set without bound.
const CRI_METHODS: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "RuntimeConfig",
    "ListImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];

/// The commit crius was built from ("unknown" outside a git checkout).
pub const COMMIT: &str = env!("CRIUS_COMMIT");
/// What `crius --version` prints after the name: version and commit.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CRIUS_COMMIT"), ")");

/// The metrics crius exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> prometheus::Result<Arc<Metrics>> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "crius_grpc_requests_total",
                "CRI gRPC requests handled, by method and status code.",
            ),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "crius_grpc_request_duration_seconds",
                "Time to handle a CRI gRPC request, by method.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let build = prometheus::IntGaugeVec::new(
            Opts::new(
                "crius_build_info",
                "Always 1: the crius version, the commit it was built from and the CRI API it serves.",
            ),
            &["version", "commit", "cri_api_version"],
        )?;
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                COMMIT,
                crius_cri::CRI_API_VERSION,
            ])
            .set(1);
        registry.register(Box::new(build))?;
        // The daemon's own CPU, memory and file descriptors:
        // crius_process_cpu_seconds_total, crius_process_resident_memory_bytes,
        // crius_process_open_fds …
        registry.register(Box::new(ProcessMetrics(
            prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                "crius",
            ),
        )))?;
        Ok(Arc::new(Metrics {
            registry,
            requests,
            latency,
        }))
    }

    fn observe(&self, path: &str, code: tonic::Code, seconds: f64) {
        let method = method_label(path);
        self.requests
            .with_label_values(&[method, code_label(code)])
            .inc();
        self.latency.with_label_values(&[method]).observe(seconds);
    }

    /// The registry, for the runtime's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec fails only for metric families that were
        // registered broken, which `new` does not do.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// "/runtime.v1.RuntimeService/Version" → "Version".
fn method_label(path: &str) -> &'static str {
    let known = path
        .strip_prefix("/runtime.v1.RuntimeService/")
        .or_else(|| path.strip_prefix("/runtime.v1.ImageService/"))
        .and_then(|m| CRI_METHODS.iter().find(|k| **k == m));
    known.copied().unwrap_or("unknown")
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The status code of a gRPC response, read from its headers: tonic puts
/// it there for errors of unary calls ("trailers-only" responses); a
/// response without one succeeded.
fn response_code<B>(res: &http::Response<B>) -> tonic::Code {
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok)
}

/// Logs a failed call with its method and the status's message (which
/// names the object): at WARN when the fault is on crius's side or the
/// node's (internal, unknown, unavailable, out of resources) and for every
/// failed pull, which an operator looks for; else at DEBUG, since kubelet
/// asks after objects it removed itself all day long.
fn log_failure<B>(method: &'static str, res: &http::Response<B>) {
    use tonic::Code;
    let Some(status) = tonic::Status::from_header_map(res.headers()) else {
        return;
    };
    let code = status.code();
    if code == Code::Ok {
        return;
    }
    let serious = matches!(
        code,
        Code::Internal
            | Code::Unknown
            | Code::Unavailable
            | Code::DataLoss
            | Code::ResourceExhausted
    ) || method == "PullImage";
    let code = code_label(code);
    if serious {
        tracing::warn!(method, code, error = status.message(), "CRI call failed");
    } else {
        tracing::debug!(method, code, error = status.message(), "CRI call failed");
    }
}

/// A tower layer counting and timing gRPC calls.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    /// The layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let path = req.uri().path().to_string();
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => response_code(r),
                Err(_) => tonic::Code::Unknown,
            };
            metrics.observe(&path, code, start.elapsed().as_secs_f64());
            if let Ok(r) = &res {
                log_failure(method_label(&path), r);
            }
            res
        })
    }
}

/// Binds the metrics endpoint, so that a port in use fails start-up.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crius_cri::listen::bind_tcp(addr, "metrics").await
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics");
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn respond<B>(req: &http::Request<B>, metrics: &Metrics) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = if req.uri().path() != "/metrics" {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            b"not found\n".to_vec(),
        )
    } else if req.method() != http::Method::GET {
        (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"GET only\n".to_vec(),
        )
    } else {
        (
            http::StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        )
    };
    let mut res = http::Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    res
}

/// The daemon's process metrics (the prometheus crate's collector), with
/// its CPU time to the clock tick: the crate counts whole seconds.
struct ProcessMetrics(prometheus::process_collector::ProcessCollector);

/// The CPU time series [`ProcessMetrics`] corrects.
const CPU_SECONDS: &str = "crius_process_cpu_seconds_total";

impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.0.collect();
        if let Some(seconds) = own_cpu_seconds() {
            for family in families.iter_mut().filter(|f| f.name() == CPU_SECONDS) {
                for metric in family.mut_metric() {
                    let mut counter = prometheus::proto::Counter::default();
                    counter.set_value(seconds);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

/// This process's user + system CPU time in seconds, from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds(
        &stat,
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??,
    )
}

/// User + system CPU seconds from the text of a `/proc/PID/stat` file, at
/// `ticks` per second. The command name may hold spaces and parentheses:
/// the fields are counted from its last `)`.
fn cpu_seconds(stat: &str, ticks: i64) -> Option<f64> {
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label("/runtime.v1.RuntimeService/Version"),
            "Version"
        );
        assert_eq!(
            method_label("/runtime.v1.ImageService/PullImage"),
            "PullImage"
        );
        assert_eq!(method_label("/runtime.v1.RuntimeService/Bogus"), "unknown");
        assert_eq!(method_label("/x.y/Version"), "unknown");
    }

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new().unwrap();
        m.observe("/runtime.v1.RuntimeService/Version", tonic::Code::Ok, 0.001);
        m.observe("/runtime.v1.RuntimeService/Version", tonic::Code::Ok, 0.002);
        m.observe(
            "/runtime.v1.RuntimeService/Exec",
            tonic::Code::Unimplemented,
            0.0001,
        );
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("crius_grpc_requests_total{code=\"OK\",method=\"Version\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("crius_grpc_requests_total{code=\"Unimplemented\",method=\"Exec\"} 1"),
            "{text}"
        );
        assert!(text.contains("crius_grpc_request_duration_seconds_count{method=\"Version\"} 2"));
        assert!(
            text.contains("crius_process_resident_memory_bytes "),
            "{text}"
        );
        assert!(text.contains("crius_process_open_fds "), "{text}");
        // CPU time to the tick, not in whole seconds: after a twentieth of
        // a second of work it is not 0.
        while own_cpu_seconds().unwrap() < 0.05 {
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        let text = String::from_utf8(m.render()).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("crius_process_cpu_seconds_total "))
            .unwrap();
        let value: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let own = own_cpu_seconds().unwrap();
        assert!(value > 0.0 && value <= own, "{value} vs {own}");
    }

    #[test]
    fn cpu_seconds_are_read_past_the_command_name() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 \
                    250 125 0 0 20 0 1 0 100 1000 10";
        assert_eq!(cpu_seconds(stat, 100), Some(3.75));
        assert_eq!(cpu_seconds(stat, 0), None);
        assert_eq!(cpu_seconds("garbage", 100), None);
    }

    #[test]
    fn reads_status_from_headers() {
        let mut r = http::Response::new(());
        assert_eq!(response_code(&r), tonic::Code::Ok);
        r.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(response_code(&r), tonic::Code::NotFound);
    }
}
