#!/usr/bin/env bash
# containerd.sh start|stop: runs Debian's containerd (its CRI plugin) as
# the reference, with the config setup.sh wrote: root, state and socket
# under the work root, the same CNI network and registry mirrors as crius.
#
# start: starts it and prints the endpoint unix://$CONF_WORK/containerd/containerd.sock
#   (its pid is in $CONF_WORK/pids/containerd).
# stop: removes every pod left through the socket (so that the shims exit),
#   stops containerd (SIGTERM, the recorded pid), kills the shims a failure
#   left (only those whose command line names this work root's socket) and
#   unmounts what is left under its directory.
#
# Environment: CONF_WORK (from setup.sh), CRICTL.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

D=$CONF_WORK/containerd
EP=unix://$D/containerd.sock
PIDF=$CONF_WORK/pids/containerd

case "${1:-}" in
start)
    alive "$PIDF" && die "containerd already runs (pid $(cat "$PIDF"))"
    [ -f "$D/config.toml" ] || die "no $D/config.toml: run setup.sh"
    mkdir -p "$D/root" "$D/state"
    step "starting containerd $(containerd --version | awk '{ print $3 }')"
    rm -f "$D/containerd.sock"
    setsid /usr/bin/containerd --config "$D/config.toml" \
        > "$CONF_WORK/logs/containerd.log" 2>&1 < /dev/null &
    echo $! > "$PIDF"
    wait_cri "$EP" "$CONF_WORK/logs/containerd.log"
    step "containerd runs, pid $(cat "$PIDF")"
    echo "$EP"
    ;;
stop)
    if alive "$PIDF"; then
        step "removing the pods left in containerd"
        cri "$EP" rmp --all --force >/dev/null 2>&1 || step "rmp failed (see what is left below)"
        stop_pid "$PIDF" containerd
    fi
    kill_owned 'containerd-shim.*' "$D/containerd.sock"
    umount_under "$D"
    ;;
*)
    echo "usage: containerd.sh start|stop" >&2
    exit 2
    ;;
esac
