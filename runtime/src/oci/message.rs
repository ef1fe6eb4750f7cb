//! Turning what an OCI runtime printed on failure into a short message.
//!
//! runc (logrus) prints `time="…" level=error msg="…"` lines on stderr, or
//! `{"level":"error","msg":"…"}` with `--log-format json`; crun prints plain
//! lines. We keep the `msg` text of error lines when there are any, else the
//! whole output trimmed.

/// Longest message kept; runtimes rarely say more, and a runaway one must
/// not bloat an error that ends up in a gRPC status.
const MAX_MESSAGE: usize = 4096;

/// The message to show for a failed runtime call: the `msg` of its error
/// lines, else its stderr (or stdout) trimmed; `None` if it said nothing.
pub(crate) fn runtime_message(stderr: &[u8], stdout: &[u8]) -> Option<String> {
    for output in [stderr, stdout] {
        let text = String::from_utf8_lossy(output);
        let msgs: Vec<String> = text.lines().filter_map(error_msg).collect();
        if !msgs.is_empty() {
            return Some(truncate(msgs.join("; ")));
        }
        let trimmed = text.trim();
        if !trimmed.is_empty() {
            return Some(truncate(trimmed.to_string()));
        }
    }
    None
}

/// The `msg` of the error lines of a runtime's log (`--log`), joined;
/// `None` if it logged no error.
pub(crate) fn logged_errors(log: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(log);
    let msgs: Vec<String> = text.lines().filter_map(error_msg).collect();
    (!msgs.is_empty()).then(|| truncate(msgs.join("; ")))
}

/// The `msg` of one logrus error (or fatal) line, text or JSON form.
fn error_msg(line: &str) -> Option<String> {
    let line = line.trim();
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = value.get("level")?.as_str()?;
        if !is_error_level(level) {
            return None;
        }
        return value.get("msg")?.as_str().map(str::to_string);
    }
    let level = field(line, "level")?;
    if !is_error_level(&level) {
        return None;
    }
    field(line, "msg")
}

fn is_error_level(level: &str) -> bool {
    matches!(level, "error" | "fatal" | "panic")
}

/// The value of `key=value` or `key="quoted value"` in a logrus text line.
fn field(line: &str, key: &str) -> Option<String> {
    for (at, _) in line.match_indices(key) {
        if at > 0 && line.as_bytes()[at - 1] != b' ' {
            continue;
        }
        if let Some(value) = line[at + key.len()..].strip_prefix('=') {
            return Some(match value.strip_prefix('"') {
                Some(quoted) => unquote(quoted),
                None => value.split(' ').next().unwrap_or_default().to_string(),
            });
        }
    }
    None
}

/// Reads a Go-quoted string body (after the opening quote) up to the
/// closing quote, undoing the escapes Go's `strconv.Quote` produces.
fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_text_error_line_gives_its_msg_unescaped() {
        let stderr = br#"time="2024-01-01T00:00:00Z" level=error msg="runc create failed: unable to start container process: exec: \"/bin/nope\": stat /bin/nope: no such file or directory"
"#;
        assert_eq!(
            runtime_message(stderr, b"").unwrap(),
            r#"runc create failed: unable to start container process: exec: "/bin/nope": stat /bin/nope: no such file or directory"#
        );
    }

    #[test]
    fn warnings_are_dropped_and_several_errors_joined() {
        let stderr = b"time=\"t\" level=warning msg=\"cgroup v1 is deprecated\"\n\
            time=\"t\" level=error msg=\"first\"\n\
            time=\"t\" level=fatal msg=second\n";
        assert_eq!(runtime_message(stderr, b"").unwrap(), "first; second");
    }

    #[test]
    fn json_log_lines_are_understood() {
        let stderr = br#"{"level":"info","msg":"hello","time":"t"}
{"level":"error","msg":"container does not exist","time":"t"}"#;
        assert_eq!(
            runtime_message(stderr, b"").unwrap(),
            "container does not exist"
        );
    }

    #[test]
    fn plain_output_is_trimmed_whole() {
        let stderr = b"\nchdir `/tmp/x` failed: No such file or directory\n\n";
        assert_eq!(
            runtime_message(stderr, b"").unwrap(),
            "chdir `/tmp/x` failed: No such file or directory"
        );
    }

    #[test]
    fn key_inside_another_key_is_not_matched() {
        // `errmsg=` must not be taken for `msg=`.
        let line = r#"level=error errmsg="no" msg="yes""#;
        assert_eq!(error_msg(line).as_deref(), Some("yes"));
    }

    #[test]
    fn stdout_is_used_when_stderr_is_empty_and_none_when_both_are() {
        assert_eq!(runtime_message(b"  ", b"oops\n").unwrap(), "oops");
        assert_eq!(runtime_message(b"", b" \n"), None);
    }

    #[test]
    fn long_output_is_cut() {
        let long = "é".repeat(MAX_MESSAGE);
        let msg = runtime_message(long.as_bytes(), b"").unwrap();
        assert!(msg.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(msg.ends_with('…'));
    }
}
