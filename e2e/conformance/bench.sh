#!/usr/bin/env bash
# bench.sh: crius's own benchmarks (crius-bench), crius and containerd side
# by side. For each round, each bench runs first on a crius that crius-bench
# starts in fresh temp directories, then on the containerd that
# containerd.sh started (its socket and pid):
#   idle --seconds 10                 idle memory under kubelet-like polling
#   sandboxes --count 50              RunPodSandbox, Stop+Remove; both on the
#                                     harness's CNI conflist
#   containers --count 20             CreateContainer+StartContainer, helper
#                                     memory; images from the harness's registry
#   pull --runs 3                     image pulls from a loopback registry
# Output goes to $CONF_WORK/results/bench/BENCH-RUNTIME-ROUND.txt and is
# printed as it comes.
#
# Environment: CONF_WORK (from setup.sh, with containerd.sh start done);
# CRIUS_BENCH and CRIUS (default target/release/ of this repository);
# ROUNDS (2), BENCHES (the four above, space-separated).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

BENCH=$(crius_bench_bin)
export CRIUS_BIN
CRIUS_BIN=$(crius_bin)
crius_monitor_bin >/dev/null # crius-bench's crius finds it beside crius
CTRD_SOCK=$CONF_WORK/containerd/containerd.sock
CTRD_PIDF=$CONF_WORK/pids/containerd
alive "$CTRD_PIDF" || die "containerd does not run: containerd.sh start first"
CONFLIST=$CONF_NET_DIR/10-crius-conformance.conflist
OUT=$CONF_WORK/results/bench
mkdir -p "$OUT"

args_for() { # args_for BENCH -> the bench's arguments
    case $1 in
    idle) echo "--seconds 10" ;;
    sandboxes) echo "--count 50" ;;
    containers) echo "--count 20 --registry $REGISTRY" ;;
    pull) echo "--runs 3" ;;
    *) die "unknown bench $1" ;;
    esac
}

for round in $(seq 1 "${ROUNDS:-2}"); do
    for bench in ${BENCHES:-idle sandboxes containers pull}; do
        # shellcheck disable=SC2046 # the arguments are words
        set -- $(args_for "$bench")
        extra=()
        [ "$bench" != sandboxes ] || extra=(--conflist "$CONFLIST")
        step "round $round: crius-bench $bench $* on crius (load $(cut -d' ' -f1 /proc/loadavg))"
        "$BENCH" "$bench" "$@" "${extra[@]}" 2>&1 | tee "$OUT/$bench-crius-$round.txt" ||
            step "crius-bench $bench on crius failed (above)"
        step "round $round: crius-bench $bench $* on containerd (load $(cut -d' ' -f1 /proc/loadavg))"
        "$BENCH" "$bench" "$@" --endpoint "$CTRD_SOCK" --pid "$(cat "$CTRD_PIDF")" 2>&1 |
            tee "$OUT/$bench-containerd-$round.txt" || step "crius-bench $bench on containerd failed (above)"
    done
done
step "results in $OUT"
