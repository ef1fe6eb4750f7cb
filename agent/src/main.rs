//! `crius`: the daemon. Reads its config, sets up logging, opens the
//! runtime, and serves CRI on a unix socket and metrics over HTTP.

mod authority;
mod budget;
mod config;
mod deadline;
mod metrics;
mod places;
mod server;

use std::process::ExitCode;

use clap::Parser;
use crius_runtime::Runtime;
use tracing_subscriber::EnvFilter;

use config::{Cli, Config, LogFormat};

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| format!("log_level {:?}: {e}", config.log_level))?;
    // Colours only for a person at a terminal: a log file or the journal
    // gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn run(config: Config) -> Result<(), String> {
    let metrics = metrics::Metrics::new().map_err(|e| format!("metrics: {e}"))?;
    let runtime = Runtime::open(config.runtime_config(), metrics.registry())
        .await
        .map_err(|e| format!("open runtime: {e}"))?;
    let streaming = crius_cri::streaming::StreamingServer::start(
        config.streaming_config().map_err(|e| e.to_string())?,
        crius_cri::streaming_backends(runtime.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    let metrics_task = match config.metrics_addr().map_err(|e| e.to_string())? {
        Some(addr) => {
            let listener = metrics::bind(addr)
                .await
                .map_err(|e| format!("metrics listen {addr}: {e}"))?;
            Some(tokio::spawn(metrics::serve(listener, metrics.clone())))
        }
        None => None,
    };
    let limits = config.grpc_limits().map_err(|e| e.to_string())?;
    // What `crictl info` shows as `config`: every option with the value in
    // effect (file, flags and defaults together). It holds no secret: the
    // registry credentials stay in the auth file it names.
    let effective = serde_json::to_value(&config).map_err(|e| format!("config: {e}"))?;
    let result = server::serve(
        &config.socket(),
        limits,
        runtime,
        metrics,
        streaming.clone(),
        effective,
    )
    .await
    .map_err(|e| e.to_string());
    streaming.stop();
    if let Some(t) = metrics_task {
        t.abort();
    }
    result
}

/// `crius config [--check FILE]`.
fn config_command(cli: &Cli, check: Option<&std::path::Path>) -> ExitCode {
    let result = match check {
        Some(file) => {
            let cli = Cli {
                config: Some(file.to_path_buf()),
                command: None,
                ..Cli::parse_from(["crius"])
            };
            Config::load(&cli).map(|_| format!("{}: ok\n", file.display()))
        }
        None => Config::explain(cli),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crius: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(config::Command::Config { check }) = &cli.command {
        return config_command(&cli, check.as_deref());
    }
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crius: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("crius: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("crius")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crius: start async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = crius_runtime::RUNTIME_VERSION,
        root = %config.root.display(),
        state = %config.state.display(),
        "crius starting"
    );
    match rt.block_on(run(config)) {
        Ok(()) => {
            tracing::info!("crius stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "crius failed");
            ExitCode::FAILURE
        }
    }
}
