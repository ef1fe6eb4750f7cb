//! ExecSync: a command run in a running container, its output returned.

use std::time::Duration;

use crius_runtime::Runtime;
use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};
use tonic::Status;

use crate::error::{missing, to_status};

/// Handles ExecSync; a timeout of 0 or less means none. A command that
/// outlives its timeout is killed and answered with DEADLINE_EXCEEDED.
pub async fn handle(rt: &Runtime, req: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
    if req.container_id.is_empty() {
        return Err(missing("container_id"));
    }
    if req.cmd.is_empty() {
        return Err(missing("cmd"));
    }
    let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
    let out = rt
        .exec_sync(&req.container_id, &req.cmd, timeout)
        .await
        .map_err(to_status)?;
    Ok(ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}
