//! The runtime under test: crius started here, or another runtime's socket.

use std::path::PathBuf;

use crius_e2e::cri::RuntimeClient;
use crius_e2e::{Crius, CriusOptions, NodeDir, Result, connect_unix, err};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;

use crate::args::Args;
use crate::util::comm;

/// The runtime under test: crius started here, or another one's socket.
pub enum Target {
    Crius(Box<Crius>),
    External {
        socket: PathBuf,
        pid: u32,
        dir: NodeDir,
    },
}

impl Target {
    pub async fn new(args: &Args) -> Result<Target> {
        match &args.endpoint {
            Some(socket) => Ok(Target::External {
                socket: socket.clone(),
                pid: args.pid.ok_or_else(|| err("--endpoint needs --pid"))?,
                dir: NodeDir::create(false)?,
            }),
            None => {
                let crius = Crius::start(CriusOptions {
                    metrics: false,
                    log_level: "warn".into(),
                    cgroup_driver: args.cgroup_driver,
                    ..Default::default()
                })
                .await?;
                Ok(Target::Crius(Box::new(crius)))
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Target::Crius(_) => "crius".into(),
            Target::External { pid, .. } => comm(*pid),
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Target::Crius(c) => c.pid().unwrap_or(0),
            Target::External { pid, .. } => *pid,
        }
    }

    pub fn dir(&self) -> &NodeDir {
        match self {
            Target::Crius(c) => c.dir(),
            Target::External { dir, .. } => dir,
        }
    }

    pub async fn clients(
        &self,
    ) -> Result<(RuntimeClient, ImageServiceClient<tonic::transport::Channel>)> {
        let channel = match self {
            Target::Crius(c) => return Ok((c.runtime_client(), c.image_client())),
            Target::External { socket, .. } => connect_unix(socket).await?,
        };
        Ok((
            RuntimeServiceClient::new(channel.clone()),
            ImageServiceClient::new(channel),
        ))
    }
}
