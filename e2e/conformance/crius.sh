#!/usr/bin/env bash
# crius.sh start|stop: runs crius for the conformance harness.
#
# start: writes $CONF_WORK/crius/crius.toml (root, state and socket under
#   the work root, the harness's CNI network, registry mirrors sending
#   registry.k8s.io, k8s.gcr.io, gcr.io and docker.io to the harness's
#   registry, its own cgroup parent, room for the connections critest
#   leaves open) and starts crius with it. Prints the
#   endpoint: unix://$CONF_WORK/crius/state/crius.sock.
# stop: removes every pod left through the socket, stops crius (SIGTERM,
#   the pid recorded at start), kills the monitors a failure may have left
#   (only those whose command line names this work root's crius directory),
#   and unmounts what is left under it.
#
# Environment: CONF_WORK (from setup.sh); CRIUS and CRIUS_MONITOR (default
# target/release/ of this repository); CRICTL; CGROUP_DRIVER (systemd or
# cgroupfs; default: crius's auto, systemd where systemd is PID 1 on
# cgroup v2). With the systemd driver crius's pods go below the slice
# crius_conformance.slice, else below the cgroup /crius-conformance.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

D=$CONF_WORK/crius
EP=unix://$D/state/crius.sock
PIDF=$CONF_WORK/pids/crius
DRIVER=${CGROUP_DRIVER:-auto}
if [ "$DRIVER" = auto ]; then
    DRIVER=cgroupfs
    if [ -d /run/systemd/system ] && [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
        DRIVER=systemd
    fi
fi
case $DRIVER in
systemd) CGROUP_PARENT=crius_conformance.slice ;;
cgroupfs) CGROUP_PARENT=/crius-conformance ;;
*) die "CGROUP_DRIVER=$DRIVER: want systemd or cgroupfs" ;;
esac

case "${1:-}" in
start)
    alive "$PIDF" && die "crius already runs (pid $(cat "$PIDF"))"
    bin=$(crius_bin)
    monitor=$(crius_monitor_bin)
    mkdir -p "$D/root" "$D/state"
    chmod 0711 "$D"
    step "writing $D/crius.toml"
    cat > "$D/crius.toml" <<EOF
# crius for the conformance harness (written by crius.sh; every option not
# here is crius's default, see deploy/crius.toml).
root = "$D/root"
state = "$D/state"
metrics_listen = "none"

[runtime]
monitor_path = "$monitor"
cgroup_driver = "$DRIVER"
default_cgroup_parent = "$CGROUP_PARENT"

[cni]
conf_dir = "$CONF_NET_DIR"
bin_dirs = ["/usr/lib/cni"]

# critest pulls by upstream names; the harness's registry serves them all.
[registry.mirrors]
"registry.k8s.io" = ["http://$REGISTRY"]
"k8s.gcr.io" = ["http://$REGISTRY"]
"gcr.io" = ["http://$REGISTRY"]
"docker.io" = ["http://$REGISTRY"]
EOF
    step "starting $bin"
    setsid "$bin" --config "$D/crius.toml" > "$CONF_WORK/logs/crius.log" 2>&1 < /dev/null &
    echo $! > "$PIDF"
    wait_cri "$EP" "$CONF_WORK/logs/crius.log"
    step "crius $(cri "$EP" version | awk '/RuntimeVersion/ { print $2 }') runs, pid $(cat "$PIDF"), $DRIVER cgroup driver"
    echo "$EP"
    ;;
stop)
    if alive "$PIDF"; then
        step "removing the pods left in crius"
        cri "$EP" rmp --all --force >/dev/null 2>&1 || step "rmp failed (see what is left below)"
        stop_pid "$PIDF" crius
    fi
    kill_owned 'crius-monitor' "$D/"
    umount_under "$D"
    # The cgroups of the pods crius ran, if any are left empty.
    if [ "$DRIVER" = systemd ]; then
        # The parent slices systemd made for them: crius's default, and
        # test.slice, which critest names as its pods' parent (as kubelet
        # its kubepods slices, and nobody removes it either).
        for slice in "$CGROUP_PARENT" test.slice; do
            c=/sys/fs/cgroup/$slice
            [ -d "$c" ] || continue
            if [ -n "$(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]; then
                step "slice $slice still has processes: left alone"
            else
                systemctl stop "$slice" || step "could not stop $slice"
            fi
        done
    else
        for c in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup"$CGROUP_PARENT"; do
            [ -d "$c" ] || continue
            find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || step "cgroup $c is not empty"
        done
    fi
    ;;
*)
    echo "usage: crius.sh start|stop" >&2
    exit 2
    ;;
esac
