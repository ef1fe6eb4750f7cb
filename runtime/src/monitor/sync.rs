//! The one message a monitor sends its spawner, on its stdout: either
//! `ok <container pid> <monitor pid>\n` or `error <message>` (the message
//! runs to the end of the stream and may span lines).

/// What the monitor reports once the runtime's `create` has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The container is created; its init and the monitor run.
    Ok {
        /// The container's init.
        container_pid: i32,
        /// The detached monitor.
        monitor_pid: i32,
    },
    /// Nothing runs; why.
    Error(String),
}

impl Report {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Report::Ok {
                container_pid,
                monitor_pid,
            } => format!("ok {container_pid} {monitor_pid}\n").into_bytes(),
            Report::Error(message) => format!("error {message}").into_bytes(),
        }
    }

    /// Parses what the monitor wrote; `None` if it is neither form (the
    /// monitor died before reporting).
    pub(crate) fn decode(data: &[u8]) -> Option<Report> {
        let text = String::from_utf8_lossy(data);
        if let Some(message) = text.strip_prefix("error ") {
            return Some(Report::Error(message.trim().to_string()));
        }
        let mut words = text.strip_prefix("ok ")?.split_whitespace();
        let container_pid = words.next()?.parse().ok().filter(|&p: &i32| p > 0)?;
        let monitor_pid = words.next()?.parse().ok().filter(|&p: &i32| p > 0)?;
        words.next().is_none().then_some(Report::Ok {
            container_pid,
            monitor_pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Ok {
                container_pid: 12,
                monitor_pid: 34,
            },
            Report::Error("runc create failed:\n  exec: no such file".into()),
        ] {
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn garbage_and_truncated_reports_are_refused() {
        for bad in [
            &b""[..],
            b"ok",
            b"ok 12",
            b"ok 12 x",
            b"ok 0 5",
            b"ok 1 2 3",
            b"hello",
        ] {
            assert_eq!(
                Report::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
