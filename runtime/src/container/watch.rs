//! Following a container until its monitor reports its exit, then
//! recording how it ended.

use std::sync::Arc;

use super::events::ContainerEventKind;
use super::{CANNOT_RUN, Container, ContainerState, Containers, exit_file, is_done, termination};
use crate::monitor;
use crate::state::{Entry, now_nanos};

impl Containers {
    /// Follows a container until its monitor reports its exit, then
    /// records it.
    pub(crate) fn watch_exit(self: &Arc<Self>, entry: Arc<Entry<Container>>) {
        let c = entry.get();
        if is_done(&c) {
            return;
        }
        let rt = Arc::clone(self);
        tokio::spawn(async move {
            let exit = exit_file(&rt.dirs.container_state(&c.id));
            let status = monitor::wait_exit(c.monitor_pid, &exit).await;
            let mut exited_before_start = false;
            let saved = entry.update(|r| {
                exited_before_start = r.state == ContainerState::Created;
                match &status {
                    // A start that failed has said why; the kill that
                    // followed is no news.
                    _ if r.reason == CANNOT_RUN => {}
                    Ok(st) => {
                        r.state = ContainerState::Exited;
                        r.exit_code = st.exit_code;
                        r.finished_at = st.finished_at;
                        r.oom_killed = st.oom_killed;
                        r.reason = if st.oom_killed {
                            "OOMKilled"
                        } else if st.exit_code == 0 {
                            "Completed"
                        } else {
                            "Error"
                        }
                        .into();
                        r.message =
                            termination::message(&r.config, r.log_path.as_deref(), st.exit_code);
                    }
                    Err(e) => {
                        r.state = ContainerState::Unknown;
                        r.finished_at = now_nanos();
                        r.reason = "Unknown".into();
                        r.message = format!("lost track of the container: {e}");
                    }
                }
                rt.save_container_state(r)
            });
            let ended = entry.get();
            if ended.reason != CANNOT_RUN {
                rt.metrics
                    .container_exits
                    .with_label_values(&[ended.reason.as_str()])
                    .inc();
            }
            if ended.oom_killed {
                rt.metrics.oom_kills.inc();
            }
            // Stopped never goes out before Started: when the exit came
            // first, or a StartContainer has yet to announce, wait until
            // the start (or a Stop) lets go of the container. A Remove can
            // only queue behind this wait.
            let sent = !exited_before_start
                && rt
                    .events
                    .stopped_unless_starting(rt.pods.as_ref(), &rt.objects, &ended);
            if !sent {
                drop(entry.op_shared().await);
                rt.events.emit(
                    rt.pods.as_ref(),
                    &rt.objects,
                    &ended,
                    ContainerEventKind::Stopped,
                );
            }
            if status.is_ok()
                && let Ok(oci) = rt.handlers.get(&ended.runtime_handler)
            {
                // Under the op lock, shared: a Stop or Remove under way
                // (exclusive) does the same and goes first; one that
                // comes meanwhile waits, and finds the runtime done.
                let _op = entry.op_shared().await;
                if !entry.get().removed {
                    match rt.kill_leftovers(&ended, oci).await {
                        Ok(()) => rt.release_runtime(&ended, oci).await,
                        Err(e) => {
                            tracing::warn!(container = %c.id, error = %e, "killing what the container's init left")
                        }
                    }
                }
            }
            match (status, saved) {
                (Ok(st), Ok(())) => {
                    tracing::info!(container = %c.id, exit_code = st.exit_code, "container exited")
                }
                (Err(e), _) => {
                    tracing::error!(container = %c.id, error = %e, "waiting for container exit")
                }
                (_, Err(e)) => {
                    tracing::error!(container = %c.id, error = %e, "saving container exit")
                }
            }
        });
    }
}
