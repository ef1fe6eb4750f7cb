//! Giving back the memory and code pages that past work left resident.
//!
//! A monitor runs its start-up once (read the config, detach, run the
//! runtime's create) and then mostly waits in `poll` for as long as the
//! container lives. The kernel maps code in 64 KiB windows around each
//! page touched (fault-around), so after start-up, or after a burst of
//! output or attach traffic, much of the monitor's and libc's code is in
//! its resident set, counted in its RSS and PSS. Once the monitor has been
//! quiet for a while it frees its scratch buffers, trims the heap and
//! drops its mappings of the code pages right before it waits again
//! ([`drop_then_poll`]): an idle monitor then holds only the window the
//! wait returns into. The pages stay in the page cache (shared with the
//! other monitors); only this process's mapping of them goes.

use nix::errno::Errno;
use nix::poll::{PollFd, PollTimeout};

/// Returns free heap memory to the kernel.
pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it
    // is safe to call at any time in a single-threaded process.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's private read-only mappings of files with no written
/// pages (code, read-only data): their pages are identical to the files
/// and can be dropped and faulted back. Empty if `/proc/self/smaps` cannot
/// be read.
pub(crate) fn code_ranges() -> Vec<(usize, usize)> {
    std::fs::read_to_string("/proc/self/smaps")
        .map(|smaps| clean_read_only_mappings(&smaps))
        .unwrap_or_default()
}

/// Drops this process's pages of `ranges` (from [`code_ranges`]), then
/// waits in `poll(2)`. Only the return from the last `madvise` runs in
/// between, so a monitor that then stays idle has faulted back nothing
/// but the window of this small function.
#[inline(never)]
pub(crate) fn drop_then_poll(
    ranges: &[(usize, usize)],
    fds: &mut [PollFd],
    timeout: PollTimeout,
) -> nix::Result<libc::c_int> {
    for &(start, end) in ranges {
        // SAFETY: the range is one whole private, read-only, file-backed
        // mapping of this process none of whose pages was ever written
        // (no anonymous pages): MADV_DONTNEED only drops its page-table
        // entries, and the next access maps the same bytes from the file
        // again. No Rust object's contents change. A failure only leaves
        // the pages resident.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    // SAFETY: PollFd is a repr(transparent) libc::pollfd, and `fds` is a
    // valid array of `fds.len()` of them for the call's duration.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr().cast(),
            fds.len() as libc::nfds_t,
            i32::from(timeout),
        )
    };
    Errno::result(n)
}

/// The `(start, end)` of each private read-only mapping of a file with no
/// anonymous (written) pages, from `/proc/self/smaps` text.
fn clean_read_only_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
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
            current =
                (matches!(perms, "r-xp" | "r--p") && path.starts_with('/')).then_some((start, end));
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
            chosen.iter().map(|r| r.0).collect::<Vec<_>>(),
            [0x55d0a0000000, 0x55d0a0010000]
        );
    }

    #[test]
    fn dropping_pages_keeps_the_process_working() {
        let ranges = code_ranges();
        assert!(!ranges.is_empty());
        assert_eq!(drop_then_poll(&ranges, &mut [], PollTimeout::ZERO), Ok(0));
        // Code and read-only data come back from the files.
        let v: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
        assert_eq!(v.join(",").len(), 289);
    }
}
