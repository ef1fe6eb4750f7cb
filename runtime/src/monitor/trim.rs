//! Giving back the code pages only start-up needed.
//!
//! A monitor runs its start-up once (read the config, detach, run the
//! runtime's create) and then loops on a handful of calls for as long as
//! the container lives. The kernel maps code in 64 KiB windows around each
//! page touched (fault-around), so after start-up nearly all of the
//! monitor's and libc's code is in its resident set, counted in its RSS
//! and PSS. Unmapping the code pages then lets the loop fault back in only
//! the windows it uses. The pages stay in the page cache (shared with the
//! other monitors); only this process's mapping of them goes.

/// Gives back what start-up left: the heap's free memory (the config, the
/// runtime's captured output) and the start-up code's pages.
pub(crate) fn after_start_up() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it
    // is safe to call at any time in a single-threaded process.
    unsafe {
        libc::malloc_trim(0);
    }
    drop_code_pages();
}

/// Drops this process's resident pages of read-only file mappings that
/// were never written (code, read-only data): they are identical to the
/// file and refaulted from it on use. Writable mappings, and read-only ones
/// holding written pages (relocated data made read-only afterwards), are
/// left alone.
pub(crate) fn drop_code_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (range, path) in clean_read_only_mappings(&smaps) {
        // SAFETY: the range is one whole private, read-only, file-backed
        // mapping of this process none of whose pages was ever written
        // (no anonymous pages): MADV_DONTNEED only drops its page-table
        // entries, and the next access maps the same bytes from the file
        // again. No Rust object's contents change.
        let r = unsafe {
            libc::madvise(
                range.0 as *mut libc::c_void,
                range.1 - range.0,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            eprintln!(
                "crius-monitor: madvise {path}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The `(start, end)` and path of each private read-only mapping of a file
/// with no anonymous (written) pages, from `/proc/self/smaps` text.
fn clean_read_only_mappings(smaps: &str) -> Vec<((usize, usize), String)> {
    let mut out = Vec::new();
    let mut current: Option<((usize, usize), String)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = fields.next().unwrap_or_default();
            let path = line.split_whitespace().nth(5).unwrap_or_default();
            current = (matches!(perms, "r-xp" | "r--p") && path.starts_with('/'))
                .then(|| ((start, end), path.to_string()));
            continue;
        }
        if first == "Anonymous:"
            && let Some(mapping) = current.take()
            && fields.next() == Some("0")
        {
            out.push(mapping);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_chosen() {
        let smaps = "\
55d0a0000000-55d0a0010000 r--p 00000000 fe:00 1 /usr/bin/crius-monitor
Rss:                  64 kB
Anonymous:             0 kB
55d0a0010000-55d0a0020000 r-xp 00010000 fe:00 1 /usr/bin/crius-monitor
Anonymous:             0 kB
55d0a0020000-55d0a0021000 r--p 00020000 fe:00 1 /usr/bin/crius-monitor
Anonymous:             4 kB
55d0a0021000-55d0a0022000 rw-p 00021000 fe:00 1 /usr/bin/crius-monitor
Anonymous:             0 kB
7ffc00000000-7ffc00001000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        let chosen = clean_read_only_mappings(smaps);
        assert_eq!(
            chosen.iter().map(|(r, _)| r.0).collect::<Vec<_>>(),
            [0x55d0a0000000, 0x55d0a0010000]
        );
    }

    #[test]
    fn dropping_pages_keeps_the_process_working() {
        drop_code_pages();
        // Code and read-only data come back from the files.
        let v: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
        assert_eq!(v.join(",").len(), 289);
    }
}
