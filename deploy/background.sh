# Sourced by install.sh and uninstall.sh: crius run in the background
# where there is no systemd (or CRIUS_SERVICE=background asks for it).
# Only the crius these scripts started is ever stopped: the one whose pid
# is in the pid file and that still runs the installed binary. Other
# crius processes on the node (side-by-side instances, tests) are left be.

CRIUS_PIDFILE=/run/crius.pid
CRIUS_BIN=/usr/local/bin/crius

# Whether to run crius in the background rather than as crius.service.
crius_background() {
    [ "${CRIUS_SERVICE:-}" = background ] || [ ! -d /run/systemd/system ]
}

# Waits up to $2 tenths of a second for process $1 to be gone.
crius_wait_gone() {
    for _ in $(seq "$2"); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# Stops the crius the pid file names, if it is still ours (containers
# live on either way): SIGTERM, a graceful stop, which lets calls in
# flight finish for up to 30 s; SIGKILL if it is still there after 35 s
# (crius recovers from that as from a crash).
crius_stop_background() {
    local pid exe
    pid=$(cat "$CRIUS_PIDFILE" 2>/dev/null) || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || exe=
    # The binary may have been replaced since: "(deleted)".
    if [[ $pid =~ ^[0-9]+$ ]] && { [ "$exe" = "$CRIUS_BIN" ] || [ "$exe" = "$CRIUS_BIN (deleted)" ]; }; then
        kill "$pid" 2>/dev/null || true
        if ! crius_wait_gone "$pid" 350; then
            echo "crius ($pid) still running 35 s after SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            crius_wait_gone "$pid" 50 || true
        fi
    fi
    rm -f "$CRIUS_PIDFILE"
}

# Starts the installed crius in the background, its log appended to
# /var/log/crius.log, and records its pid.
crius_start_background() {
    nohup "$CRIUS_BIN" --config /etc/crius/crius.toml >>/var/log/crius.log 2>&1 </dev/null &
    echo $! >"$CRIUS_PIDFILE"
}
