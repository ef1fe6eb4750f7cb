//! The CRI container log format, as kubelet reads it.
//!
//! Each line is `<RFC 3339 nano UTC timestamp> <stdout|stderr> <F|P> <content>\n`:
//! `F` ends a line of the container's output, `P` is a piece of a line that
//! goes on in the next record. A line longer than [`MAX_LINE`] bytes becomes
//! `P` records of exactly [`MAX_LINE`] bytes and a final `F`; output left
//! without a newline when the stream ends is written as `F`.
//!
//! Splitting is lazy — a `P` is written only once a byte beyond the limit
//! arrives — so the records do not depend on how the output was chunked by
//! the pipe.

/// The most content bytes in one record.
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    /// The name written in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns one stream's bytes into log records, keeping an unfinished line
/// (at most [`MAX_LINE`] bytes) until its end arrives.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for `stream` with nothing pending.
    pub fn new(stream: Stream) -> Self {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Appends to `out` the records that `data` completes, stamped with
    /// `timestamp`; keeps any unfinished line.
    pub fn push(&mut self, data: &[u8], timestamp: &str, out: &mut Vec<u8>) {
        let mut rest = data;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.append(&rest[..newline], timestamp, out);
            self.emit(b'F', timestamp, out);
            rest = &rest[newline + 1..];
        }
        self.append(rest, timestamp, out);
    }

    /// Appends to `out` the unfinished line, if any, as a final `F` record;
    /// call it when the stream has ended.
    pub fn finish(&mut self, timestamp: &str, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            self.emit(b'F', timestamp, out);
        }
        // A finished stream keeps no memory.
        self.pending = Vec::new();
    }

    /// Adds bytes of the current line, writing a `P` record each time the
    /// line would grow past the limit.
    fn append(&mut self, mut bytes: &[u8], timestamp: &str, out: &mut Vec<u8>) {
        while self.pending.len() + bytes.len() > MAX_LINE {
            let take = MAX_LINE - self.pending.len();
            self.pending.extend_from_slice(&bytes[..take]);
            self.emit(b'P', timestamp, out);
            bytes = &bytes[take..];
        }
        self.pending.extend_from_slice(bytes);
    }

    fn emit(&mut self, tag: u8, timestamp: &str, out: &mut Vec<u8>) {
        out.reserve(timestamp.len() + self.pending.len() + 12);
        out.extend_from_slice(timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.as_str().as_bytes());
        out.push(b' ');
        out.push(tag);
        out.push(b' ');
        out.extend_from_slice(&self.pending);
        out.push(b'\n');
        self.pending.clear();
    }
}

/// The record timestamp for now: RFC 3339 UTC with nanoseconds, as kubelet
/// writes and parses it (`2016-10-06T00:17:09.669794202Z`).
pub fn timestamp_now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2016-10-06T00:17:09.669794202Z";

    fn records(stream: Stream, chunks: &[&[u8]], finish: bool) -> String {
        let mut s = LineSplitter::new(stream);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, TS, &mut out);
        }
        if finish {
            s.finish(TS, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn whole_lines_become_f_records() {
        assert_eq!(
            records(Stream::Stdout, &[b"hello\nworld\n"], true),
            format!("{TS} stdout F hello\n{TS} stdout F world\n")
        );
    }

    #[test]
    fn stderr_records_name_their_stream() {
        assert_eq!(
            records(Stream::Stderr, &[b"oops\n"], false),
            format!("{TS} stderr F oops\n")
        );
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(
            records(Stream::Stdout, &[b"\n\n"], true),
            format!("{TS} stdout F \n{TS} stdout F \n")
        );
    }

    #[test]
    fn a_line_split_across_reads_is_one_record() {
        assert_eq!(
            records(Stream::Stdout, &[b"hel", b"lo", b"\n"], false),
            format!("{TS} stdout F hello\n")
        );
    }

    #[test]
    fn a_partial_line_waits_and_is_written_as_f_at_the_end() {
        assert_eq!(
            records(Stream::Stdout, &[b"a\ntail"], false),
            format!("{TS} stdout F a\n")
        );
        assert_eq!(
            records(Stream::Stdout, &[b"a\ntail"], true),
            format!("{TS} stdout F a\n{TS} stdout F tail\n")
        );
    }

    #[test]
    fn finishing_an_empty_stream_writes_nothing() {
        assert_eq!(records(Stream::Stdout, &[], true), "");
        assert_eq!(
            records(Stream::Stdout, &[b"x\n"], true),
            format!("{TS} stdout F x\n")
        );
    }

    #[test]
    fn long_lines_are_cut_into_p_records_and_a_final_f() {
        let line = vec![b'a'; 2 * MAX_LINE + 5];
        let mut input = line.clone();
        input.push(b'\n');
        let got = records(Stream::Stdout, &[&input], true);
        let chunk = "a".repeat(MAX_LINE);
        assert_eq!(
            got,
            format!("{TS} stdout P {chunk}\n{TS} stdout P {chunk}\n{TS} stdout F aaaaa\n")
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_f_record() {
        let mut input = vec![b'b'; MAX_LINE];
        input.push(b'\n');
        let got = records(Stream::Stdout, &[&input], true);
        assert_eq!(got, format!("{TS} stdout F {}\n", "b".repeat(MAX_LINE)));
        // Also when the stream ends right at the limit, without a newline.
        let got = records(Stream::Stdout, &[&input[..MAX_LINE]], true);
        assert_eq!(got, format!("{TS} stdout F {}\n", "b".repeat(MAX_LINE)));
    }

    #[test]
    fn a_long_line_ending_at_a_chunk_boundary_has_no_empty_f() {
        let mut input = vec![b'c'; 2 * MAX_LINE];
        input.push(b'\n');
        let got = records(Stream::Stdout, &[&input], true);
        let chunk = "c".repeat(MAX_LINE);
        assert_eq!(
            got,
            format!("{TS} stdout P {chunk}\n{TS} stdout F {chunk}\n")
        );
    }

    #[test]
    fn records_do_not_depend_on_how_the_pipe_chunked_the_output() {
        let mut input = Vec::new();
        input.extend_from_slice(b"short\n\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 3));
        input.extend_from_slice(b"\nmid\n");
        input.extend(std::iter::repeat_n(b'y', MAX_LINE));
        input.extend_from_slice(b"\nend");
        let whole = records(Stream::Stderr, &[&input], true);
        for size in [1, 2, 7, 4096, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 65536] {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(
                records(Stream::Stderr, &chunks, true),
                whole,
                "chunk size {size}"
            );
        }
        for split in 0..input.len() {
            let (a, b) = input.split_at(split);
            if split % 97 == 0 || split.abs_diff(MAX_LINE) < 3 {
                assert_eq!(
                    records(Stream::Stderr, &[a, b], true),
                    whole,
                    "split {split}"
                );
            }
        }
    }

    #[test]
    fn timestamps_have_the_kubelet_shape() {
        let ts = timestamp_now();
        // e.g. 2016-10-06T00:17:09.669794202Z
        assert_eq!(ts.len(), TS.len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
        assert!(humantime::parse_rfc3339(&ts).is_ok());
    }
}
