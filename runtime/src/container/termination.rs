//! The message of a finished container: its termination message file, or
//! with `FallbackToLogsOnError` the tail of its log — what kubelet shows
//! as the container's last state.
//!
//! kubelet names the file in the container with an annotation and bind
//! mounts a host file there; the message is read from that host file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::ContainerConfig;

pub use crate::records::container::TERMINATION_MESSAGE_PATH_ANNOTATION as PATH_ANNOTATION;
/// The annotation carrying the policy: `File` or `FallbackToLogsOnError`.
pub const POLICY_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePolicy";
/// The most of the file kept (kubelet's limit per container).
pub const MAX_MESSAGE: usize = 4096;
/// The most log lines a log-tail message holds (kubelet's).
pub const MAX_LOG_LINES: usize = 80;
/// The most bytes a log-tail message holds (kubelet's).
pub const MAX_LOG_BYTES: usize = 2048;
/// How much of the end of a log file is read for the tail.
const LOG_READ: u64 = 64 * 1024;

/// The message for a container that exited with `exit_code`.
pub fn message(config: &ContainerConfig, log_path: Option<&Path>, exit_code: i32) -> String {
    let from_file = config
        .annotations
        .get(PATH_ANNOTATION)
        .and_then(|path| {
            config
                .mounts
                .iter()
                .find(|m| m.container_path.trim_end_matches('/') == path.trim_end_matches('/'))
        })
        .and_then(|m| read_capped(Path::new(&m.host_path)))
        .unwrap_or_default();
    if !from_file.is_empty() {
        return from_file;
    }
    let fallback = config
        .annotations
        .get(POLICY_ANNOTATION)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    match log_path {
        Some(log) if fallback && exit_code != 0 => log_tail(log),
        _ => String::new(),
    }
}

/// At most [`MAX_MESSAGE`] bytes of a regular file, not following a
/// symlink; `None` if there is no such file.
fn read_capped(path: &Path) -> Option<String> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut data = Vec::with_capacity(MAX_MESSAGE);
    file.take(MAX_MESSAGE as u64).read_to_end(&mut data).ok()?;
    Some(String::from_utf8_lossy(&data).into_owned())
}

/// The container's output at the end of its CRI log: the last
/// [`MAX_LOG_LINES`] lines, at most [`MAX_LOG_BYTES`] bytes.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(LOG_READ);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut data = Vec::new();
    if file.take(LOG_READ).read_to_end(&mut data).is_err() {
        return String::new();
    }
    let mut records: &[u8] = &data;
    if start > 0 {
        // Skip the record cut in half by where we began.
        match records.iter().position(|&b| b == b'\n') {
            Some(i) => records = &records[i + 1..],
            None => return String::new(),
        }
    }
    // Rebuild the output: F ends a line, P continues it.
    let mut out = String::new();
    for record in records.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
        let mut fields = record.splitn(4, |&b| b == b' ');
        let (Some(_ts), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        out.push_str(&String::from_utf8_lossy(fields.next().unwrap_or_default()));
        if tag == b"F" {
            out.push('\n');
        }
    }
    let lines: Vec<&str> = out.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(MAX_LOG_LINES)..].join("\n");
    if tail.len() > MAX_LOG_BYTES {
        let mut cut = tail.len() - MAX_LOG_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::container::Mount;

    fn config(dir: &Path, policy: &str) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        c.annotations
            .insert(PATH_ANNOTATION.into(), "/dev/termination-log".into());
        c.annotations
            .insert(POLICY_ANNOTATION.into(), policy.into());
        c.mounts.push(Mount {
            container_path: "/dev/termination-log".into(),
            host_path: dir.join("msg").to_string_lossy().into_owned(),
            ..Default::default()
        });
        c
    }

    #[test]
    fn the_file_wins_and_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "File");
        assert_eq!(message(&c, None, 1), "");
        std::fs::write(dir.path().join("msg"), "bye\n").unwrap();
        assert_eq!(message(&c, None, 0), "bye\n");
        std::fs::write(dir.path().join("msg"), vec![b'x'; 3 * MAX_MESSAGE]).unwrap();
        assert_eq!(message(&c, None, 0).len(), MAX_MESSAGE);
        // A symlink is not followed.
        std::fs::remove_file(dir.path().join("msg")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("msg")).unwrap();
        assert_eq!(message(&c, None, 0), "");
    }

    #[test]
    fn logs_are_the_fallback_on_error_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        std::fs::write(
            &log,
            "2024-01-01T00:00:00Z stdout F one\n\
             2024-01-01T00:00:00Z stderr P tw\n\
             2024-01-01T00:00:00Z stderr F o\n",
        )
        .unwrap();
        let c = config(dir.path(), "FallbackToLogsOnError");
        assert_eq!(message(&c, Some(&log), 2), "one\ntwo");
        assert_eq!(message(&c, Some(&log), 0), "");
        let c = config(dir.path(), "File");
        assert_eq!(message(&c, Some(&log), 2), "");
    }

    #[test]
    fn a_log_tail_is_bounded_in_lines_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let mut text = String::new();
        for i in 0..500 {
            text.push_str(&format!("2024-01-01T00:00:00Z stdout F line {i}\n"));
        }
        std::fs::write(&log, &text).unwrap();
        let tail = log_tail(&log);
        assert_eq!(tail.lines().count(), MAX_LOG_LINES);
        assert!(tail.ends_with("line 499"), "{tail}");
        let long = format!("2024-01-01T00:00:00Z stdout F {}\n", "y".repeat(5000));
        std::fs::write(&log, long).unwrap();
        assert_eq!(log_tail(&log).len(), MAX_LOG_BYTES);
    }
}
