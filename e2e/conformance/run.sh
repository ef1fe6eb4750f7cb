#!/usr/bin/env bash
# run.sh: the whole conformance and benchmark run, from a bare Debian 12
# machine to the figures, and back:
#   setup.sh                       packages, registry, images, configs
#   crius.sh start                 crius from $CRIUS / target/release
#   critest.sh                     once per handler in CRIUS_HANDLERS
#   critest-benchmark.sh           against crius
#   crius.sh stop
#   containerd.sh start            the reference
#   critest.sh                     once per handler in CONTAINERD_HANDLERS
#   critest-benchmark.sh           against containerd
#   containerd.sh stop, start      (a fresh daemon for idle memory)
#   bench.sh                       crius-bench, crius and containerd side by side
#   teardown.sh                    always, also after a failure or ^C
# and prints every run's summary at the end. critest's runs are never run
# at the same time as each other (their specs use fixed host ports).
#
# Environment: CRITEST and CRICTL (required: build them from
# kubernetes-sigs/cri-tools yourself); CRIUS, CRIUS_MONITOR, CRIUS_BENCH
# (default target/release/ here); CRIUS_HANDLERS ("default crun"),
# CONTAINERD_HANDLERS ("default"); SKIP_CONTAINERD=1, SKIP_BENCH=1; and
# what setup.sh takes (REGISTRY_PORT, CONF_SUBNET, SKIP_APT ...).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
critest_bin >/dev/null
crictl_bin >/dev/null
crius_bin >/dev/null
crius_monitor_bin >/dev/null
[ "${SKIP_BENCH:-0}" = 1 ] || crius_bench_bin >/dev/null

T0=$(date +%s)
elapsed() { echo "$(($(date +%s) - T0)) s"; }

# setup.sh prints the work root last.
CONF_WORK=$("$HERE/setup.sh" | tail -1 | sed -n 's/^CONF_WORK=//p')
[ -n "$CONF_WORK" ] || die "setup.sh gave no work root"
export CONF_WORK
trap '"$HERE/teardown.sh" || step "teardown.sh reported leftovers (above)"' EXIT
step "setup done at $(elapsed)"

# critest.sh exits 1 when a spec fails: that is a result, not an error here.
suite() { # suite ENDPOINT NAME HANDLER
    local handler=$3
    [ "$handler" != default ] || handler=
    RUNTIME_HANDLER=$handler "$HERE/critest.sh" "$1" "$2" >/dev/null || [ $? = 1 ]
    step "critest $2 done at $(elapsed): $(tail -1 "$CONF_WORK/results/critest-$2/summary.txt")"
}
benchmark() { # benchmark ENDPOINT NAME
    "$HERE/critest-benchmark.sh" "$1" "$2" >/dev/null || step "critest -benchmark on $2 exited $?"
    step "critest -benchmark $2 done at $(elapsed)"
}

ep=$("$HERE/crius.sh" start)
for h in ${CRIUS_HANDLERS:-default crun}; do suite "$ep" "crius-$h" "$h"; done
benchmark "$ep" crius
"$HERE/crius.sh" stop

if [ "${SKIP_CONTAINERD:-0}" != 1 ]; then
    ep=$("$HERE/containerd.sh" start)
    for h in ${CONTAINERD_HANDLERS:-default}; do suite "$ep" "containerd-$h" "$h"; done
    benchmark "$ep" containerd
    if [ "${SKIP_BENCH:-0}" != 1 ]; then
        "$HERE/containerd.sh" stop
        "$HERE/containerd.sh" start >/dev/null
        "$HERE/bench.sh"
        step "crius-bench done at $(elapsed)"
    fi
fi

step "summaries ($CONF_WORK/results):"
for f in "$CONF_WORK"/results/critest-*/summary.txt; do
    echo "== $(basename "$(dirname "$f")")"
    cat "$f"
done
