# lib.sh: what every script of e2e/conformance/ shares. Sourced, not run.
#
# The work root ($CONF_WORK) holds everything a run makes: the registry's
# storage, the images' build tree, the configs, the daemons' roots, states,
# logs and pid files, and the results. setup.sh makes it (mktemp, mode
# 0711) and writes $CONF_WORK/env, which the other scripts read.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

# A line saying what the script is doing now, on stderr.
step() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run me as root: I start CRI runtimes, mount and configure the network"; }

# Reads $CONF_WORK/env (written by setup.sh): REGISTRY, CONF_BRIDGE, ...
load_work() {
    [ -n "${CONF_WORK:-}" ] || die "set CONF_WORK to the work root setup.sh printed"
    [ -f "$CONF_WORK/env" ] || die "$CONF_WORK/env missing: run setup.sh first"
    # shellcheck source=/dev/null
    . "$CONF_WORK/env"
}

# An executable given by an environment variable, else a default path.
tool() { # tool VAR DEFAULT
    local path=${!1:-$2}
    [ -n "$path" ] || die "set $1 to the path of the binary"
    [ -x "$path" ] || die "$1=$path is not an executable file"
    printf '%s\n' "$path"
}
crius_bin() { tool CRIUS "$REPO/target/release/crius"; }
crius_monitor_bin() { tool CRIUS_MONITOR "$(dirname "$(crius_bin)")/crius-monitor"; }
crius_bench_bin() { tool CRIUS_BENCH "$REPO/target/release/crius-bench"; }
critest_bin() { tool CRITEST ""; }
crictl_bin() { tool CRICTL ""; }

# crictl against ENDPOINT, with an empty config (no /etc/crictl.yaml).
cri() { # cri ENDPOINT ARGS...
    local ep=$1; shift
    "$(crictl_bin)" --config "$CONF_WORK/crictl.yaml" --runtime-endpoint "$ep" \
        --image-endpoint "$ep" --timeout 60s "$@"
}

# Whether the pid in FILE is alive.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Sends SIGTERM to the pid in FILE, waits up to SECONDS for it to go, then
# SIGKILL; removes FILE. Only ever the pid this harness recorded.
stop_pid() { # stop_pid FILE NAME [SECONDS]
    local file=$1 name=$2 secs=${3:-20} pid i
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    step "stopping $name (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < secs * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        step "$name (pid $pid) still running after ${secs}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$file"
}

# Kills the processes named COMM (a regex on /proc/PID/comm) whose command
# line names PATH, a directory or socket of this harness: the monitors or
# shims a stopped daemon left behind.
kill_owned() { # kill_owned COMM PATH
    local comm=$1 path=$2 p pids=()
    for p in /proc/[0-9]*; do
        grep -Eqx -- "$comm" "$p/comm" 2>/dev/null || continue
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qF -- "$path" && pids+=("${p#/proc/}")
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    step "killing ${#pids[@]} leftover $comm process(es): ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
}

# Unmounts every mount point under DIR, deepest first.
umount_under() { # umount_under DIR
    local dir=$1 m
    awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || step "could not unmount $m"
        done
}

# Waits until crictl version answers on ENDPOINT (up to 30 s).
wait_cri() { # wait_cri ENDPOINT LOG
    local i
    for ((i = 0; i < 150; i++)); do
        cri "$1" version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    tail -20 "$2" >&2
    die "no CRI answer on $1 after 30s (log above: $2)"
}
