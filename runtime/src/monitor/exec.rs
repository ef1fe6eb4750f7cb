//! The parent of a streamed exec: `crius-monitor exec <pid file> <runtime
//! exec argv…>`.
//!
//! A command with a terminal can only be run by the OCI runtime detached
//! (`exec --detach --console-socket`, as containerd's shim and conmon do):
//! the runtime exits once the command runs, and the command is re-parented
//! to the nearest child subreaper. This short-lived helper is that
//! subreaper, so the command's exit status is not lost to the host's
//! init: it runs the runtime's exec with its own stdio (which the runtime
//! hands to the command when there is no terminal), waits for the command
//! whose pid the runtime wrote, and exits with its exit code (128 + signal
//! when a signal ended it). When the runtime itself fails, the helper
//! removes the pid file and exits with the runtime's code: the daemon tells
//! the two apart by the pid file.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// The first argument that selects this mode of `crius-monitor`.
pub const EXEC_ARG: &str = "exec";

/// Whether `crius-monitor` was started as an exec parent.
pub fn is_exec_helper() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == EXEC_ARG)
}

/// The entry point of `crius-monitor exec`. Only ever returns by exiting.
pub fn exec_main() -> ! {
    std::process::exit(run(std::env::args_os().skip(2).collect()))
}

fn run(args: Vec<OsString>) -> i32 {
    let [pid_file, program, rest @ ..] = args.as_slice() else {
        eprintln!("usage: crius-monitor exec <pid file> <runtime> <args…>");
        return 2;
    };
    let pid_file = PathBuf::from(pid_file);
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("crius-monitor exec: become a child subreaper: {e}");
        return 2;
    }
    let status = match Command::new(program).args(rest).status() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("crius-monitor exec: run {}: {e}", program.to_string_lossy());
            let _ = std::fs::remove_file(&pid_file);
            return 2;
        }
    };
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|&p| p > 0);
    let (true, Some(pid)) = (status.success(), pid) else {
        let _ = std::fs::remove_file(&pid_file);
        return status.code().unwrap_or(2);
    };
    let pid = Pid::from_raw(pid);
    // The command is ours now (or already a zombie of ours); reap whatever
    // else lands here until it has ended.
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code,
            Ok(WaitStatus::Signaled(p, signal, _)) if p == pid => return 128 + signal as i32,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("crius-monitor exec: wait for {pid}: {e}");
                return 2;
            }
        }
    }
}
