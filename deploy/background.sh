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

# Stops the crius the pid file names, if it is still ours; waits up to
# 10 s for it to go (SIGTERM: a graceful stop; containers live on).
crius_stop_background() {
    local pid exe
    pid=$(cat "$CRIUS_PIDFILE" 2>/dev/null) || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || exe=
    # The binary may have been replaced since: "(deleted)".
    if [[ $pid =~ ^[0-9]+$ ]] && { [ "$exe" = "$CRIUS_BIN" ] || [ "$exe" = "$CRIUS_BIN (deleted)" ]; }; then
        kill "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$CRIUS_PIDFILE"
}

# Starts the installed crius in the background, its log appended to
# /var/log/crius.log, and records its pid.
crius_start_background() {
    nohup "$CRIUS_BIN" --config /etc/crius/crius.toml >>/var/log/crius.log 2>&1 </dev/null &
    echo $! >"$CRIUS_PIDFILE"
}
