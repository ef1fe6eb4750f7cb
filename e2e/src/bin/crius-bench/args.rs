//! The command line.

use std::path::PathBuf;

use crius_e2e::{Result, err};

pub struct Args {
    pub command: String,
    pub seconds: u64,
    pub count: usize,
    /// Whether `--count` was given (commands with another default).
    pub count_given: bool,
    pub handler: String,
    pub endpoint: Option<PathBuf>,
    pub pid: Option<u32>,
    pub registry: Option<String>,
    /// `sandboxes`: a CNI conflist for crius's network (else the test one).
    pub conflist: Option<PathBuf>,
    /// `sandboxes`: the pods' PID namespace mode, "container" or "pod".
    pub pid_namespace: String,
    pub runs: usize,
    pub single_mib: usize,
    pub five_mib: usize,
    /// `soak`: how long to churn.
    pub minutes: f64,
    /// The cgroup driver of the crius started here: cgroupfs, systemd or
    /// auto.
    pub cgroup_driver: &'static str,
}

impl Args {
    /// `--count`, or `default` when it was not given.
    pub fn count_or(&self, default: usize) -> usize {
        if self.count_given {
            self.count
        } else {
            default
        }
    }
}

/// Parses `crius-bench COMMAND [--flag value]…`.
pub fn parse() -> Result<Args> {
    let mut argv = std::env::args().skip(1);
    let mut args = Args {
        command: argv.next().unwrap_or_default(),
        seconds: 10,
        count: 20,
        count_given: false,
        handler: String::new(),
        endpoint: None,
        pid: None,
        registry: None,
        conflist: None,
        pid_namespace: "container".into(),
        runs: 5,
        single_mib: 41,
        five_mib: 200,
        minutes: 1.0,
        cgroup_driver: "cgroupfs",
    };
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .ok_or_else(|| err(format!("{flag} needs a value")))?;
        let bad = |_| err(format!("{flag}: bad value {value:?}"));
        match flag.as_str() {
            "--seconds" => args.seconds = value.parse().map_err(bad)?,
            "--count" => {
                args.count = value.parse().map_err(bad)?;
                args.count_given = true;
            }
            "--handler" => args.handler = value,
            "--endpoint" => args.endpoint = Some(value.trim_start_matches("unix://").into()),
            "--pid" => args.pid = Some(value.parse().map_err(bad)?),
            "--registry" => args.registry = Some(value),
            "--conflist" => args.conflist = Some(value.into()),
            "--pid-namespace" => args.pid_namespace = value,
            "--runs" => args.runs = value.parse().map_err(bad)?,
            "--cgroup-driver" => {
                args.cgroup_driver = match value.as_str() {
                    "cgroupfs" => "cgroupfs",
                    "systemd" => "systemd",
                    "auto" => "auto",
                    _ => return Err(err(format!("{flag}: bad value {value:?}"))),
                }
            }
            "--single-mib" => args.single_mib = value.parse().map_err(bad)?,
            "--five-mib" => args.five_mib = value.parse().map_err(bad)?,
            "--minutes" => {
                args.minutes = value
                    .parse()
                    .map_err(|_| err(format!("{flag}: bad value {value:?}")))?
            }
            _ => return Err(err(format!("unknown flag {flag}"))),
        }
    }
    Ok(args)
}
