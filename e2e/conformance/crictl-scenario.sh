#!/usr/bin/env bash
# crictl-scenario.sh ENDPOINT: what a node operator does with crictl, on a
# cgroup v2 node, each figure checked against the kernel's files:
#   pull; runp (a pod below a kubelet-style parent); create and start a
#   container with a memory limit, a CPU quota and CPU shares; the limits
#   in its cgroup (and in systemd's unit properties with the systemd
#   driver) and inside the container; `crictl stats` and `statsp` against
#   cpu.stat, memory.current and memory.stat, read just before and just
#   after; exec (output, exit code); stop (the exit code of a SIGTERM the
#   container handles); stopp, rmp; then nothing of the pod left in the
#   cgroup tree or, with the systemd driver, in systemd.
# Prints each check as it goes and "scenario: N checks passed" at the end;
# exits 1 at the first that fails. The same lines go to
# $CONF_WORK/results/crictl-scenario/summary.txt.
#
# Environment: CONF_WORK (from setup.sh), CRICTL, RUNTIME_HANDLER
# (default: the runtime's default, runc). The cgroup driver is the one
# `crictl runtime-config` reports.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

EP=${1:?usage: crictl-scenario.sh ENDPOINT}
OUT=$CONF_WORK/results/crictl-scenario
rm -rf "$OUT"
mkdir -p "$OUT/logs"
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] ||
    die "this scenario reads cgroup v2 files: /sys/fs/cgroup is not the unified hierarchy here"
# The driver the runtime says it uses (RuntimeConfig), as kubelet asks it.
DRIVER=$(cri "$EP" runtime-config | awk '/cgroup driver:/ { print tolower($3) }')
case $DRIVER in
systemd | cgroupfs) ;;
*) die "crictl runtime-config gave no cgroup driver (got '$DRIVER')" ;;
esac
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
UID_=$(cat /proc/sys/kernel/random/uuid)
SLICE_UID=${UID_//-/_}
MIB=$((1024 * 1024))

checks=0
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
ok() { checks=$((checks + 1)); say "ok    $*"; }
fail() { say "FAIL  $*"; exit 1; }
# check WHAT GOT WANT
check() { [ "$2" = "$3" ] && ok "$1: $2" || fail "$1: got '$2', want '$3'"; }
# within WHAT VALUE LOW HIGH
within() {
    if [ "$2" -ge "$3" ] && [ "$2" -le "$4" ]; then
        ok "$1: $2 (kernel $3 .. $4)"
    else
        fail "$1: $2 is outside the kernel's $3 .. $4"
    fi
}

pod=
ctr=
cleanup() {
    [ -z "$pod" ] || cri "$EP" rmp --force "$pod" >/dev/null 2>&1 || true
    if [ "$DRIVER" = systemd ]; then
        systemctl stop crius_scenario.slice 2>/dev/null || true
    else
        find /sys/fs/cgroup/crius-scenario -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
}
trap cleanup EXIT

say "crictl scenario against $EP: $DRIVER cgroup driver, handler ${RUNTIME_HANDLER:-default}"

# ------------------------------------------------------------------- the pod
cri "$EP" pull "$IMAGE" >/dev/null
check "image pulled" "$(cri "$EP" images -q "$IMAGE" | wc -l)" 1
if [ "$DRIVER" = systemd ]; then
    # kubelet's systemd form: kubepods-burstable-pod<uid>.slice.
    parent=crius_scenario-pod$SLICE_UID.slice
    parent_dir=/sys/fs/cgroup/crius_scenario.slice/$parent
else
    parent=/crius-scenario/pod$UID_
    parent_dir=/sys/fs/cgroup$parent
fi
cat >"$OUT/pod.json" <<EOF
{
  "metadata": { "name": "scenario", "namespace": "crius-scenario", "uid": "$UID_", "attempt": 0 },
  "hostname": "scenario",
  "log_directory": "$OUT/logs",
  "linux": { "cgroup_parent": "$parent" }
}
EOF
pod=$(cri "$EP" runp ${RUNTIME_HANDLER:+--runtime "$RUNTIME_HANDLER"} "$OUT/pod.json")
check "pod state" "$(cri "$EP" inspectp -o json "$pod" | jq -r .status.state)" SANDBOX_READY
ip=$(cri "$EP" inspectp -o json "$pod" | jq -r .status.network.ip)
case $ip in
*.*.*.*) ok "pod IP $ip" ;;
*) fail "pod IP: got '$ip'" ;;
esac

# ------------------------------------------------------------- the container
# 16 MiB in the pod's /dev/shm (shmem, charged to the container's cgroup
# and part of its working set); exits 0 on SIGTERM.
cat >"$OUT/container.json" <<EOF
{
  "metadata": { "name": "worker" },
  "image": { "image": "$IMAGE" },
  "command": ["sh", "-c", "trap 'exit 0' TERM; head -c 16777216 /dev/zero > /dev/shm/fill; sleep 3600 & wait"],
  "log_path": "worker.log",
  "linux": {
    "resources": {
      "memory_limit_in_bytes": $((64 * MIB)),
      "cpu_period": 100000,
      "cpu_quota": 50000,
      "cpu_shares": 512
    }
  }
}
EOF
ctr=$(cri "$EP" create "$pod" "$OUT/container.json" "$OUT/pod.json")
cri "$EP" start "$ctr" >/dev/null
check "container state" "$(cri "$EP" inspect -o json "$ctr" | jq -r .status.state)" CONTAINER_RUNNING

if [ "$DRIVER" = systemd ]; then
    pod_dir=$parent_dir/${parent%.slice}-crius_$pod.slice
    cg=$pod_dir/crius-$ctr.scope
    scope=crius-$ctr.scope
else
    pod_dir=$parent_dir/$pod
    cg=$pod_dir/$ctr
fi
[ -d "$cg" ] && ok "container cgroup $cg" || fail "no container cgroup $cg"
# The shell's write to /dev/shm is done once the file has its 16 MiB.
for _ in $(seq 100); do
    [ "$(cri "$EP" exec "$ctr" stat -c %s /dev/shm/fill 2>/dev/null)" = $((16 * MIB)) ] && break
    sleep 0.2
done

# --------------------------------------------------------------- the limits
check "memory.max" "$(cat "$cg/memory.max")" $((64 * MIB))
check "cpu.max" "$(cat "$cg/cpu.max")" "50000 100000"
check "memory.max inside the container" "$(cri "$EP" exec "$ctr" cat /sys/fs/cgroup/memory.max)" $((64 * MIB))
if [ "$DRIVER" = systemd ]; then
    check "$scope MemoryMax" "$(systemctl show -P MemoryMax "$scope")" $((64 * MIB))
    check "$scope CPUQuotaPerSecUSec" "$(systemctl show -P CPUQuotaPerSecUSec "$scope")" 500ms
    check "$scope Slice" "$(systemctl show -P Slice "$scope")" "$(basename "$pod_dir")"
fi

# ---------------------------------------------------------------- the stats
# A figure of the kernel's, read from FILE: working set (memory.current
# less inactive_file, as kubelet and cAdvisor count it) or CPU nanoseconds.
working_set() { # DIR
    local current inactive
    current=$(cat "$1/memory.current")
    inactive=$(awk '$1 == "inactive_file" { print $2 }' "$1/memory.stat")
    echo $((current - inactive))
}
cpu_ns() { echo $(($(awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat") * 1000)); }
# Bounds of a figure that moves: the least and the most of two reads, with
# SLACK for what moves between a read and the RPC's own.
SLACK=$((256 * 1024))
stats_round() { # NAME DIR JQ-PATH CRICTL-ARGS...
    local name=$1 dir=$2 at=$3 ws0 cpu0 json ws1 cpu1 ws cpu lo hi
    shift 3
    ws0=$(working_set "$dir")
    cpu0=$(cpu_ns "$dir")
    json=$(cri "$EP" "$@" -o json)
    ws1=$(working_set "$dir")
    cpu1=$(cpu_ns "$dir")
    echo "$json" >"$OUT/$name.json"
    ws=$(jq -r "$at.memory.workingSetBytes.value | tonumber" <<<"$json")
    cpu=$(jq -r "$at.cpu.usageCoreNanoSeconds.value | tonumber" <<<"$json")
    lo=$((ws0 < ws1 ? ws0 : ws1))
    hi=$((ws0 > ws1 ? ws0 : ws1))
    within "$name working set" "$ws" $((lo - SLACK)) $((hi + SLACK))
    [ "$ws" -ge $((16 * MIB)) ] && ok "$name working set holds the 16 MiB in /dev/shm" ||
        fail "$name working set $ws < 16 MiB"
    within "$name CPU" "$cpu" "$cpu0" "$cpu1"
}
stats_round "crictl stats" "$cg" '.stats[0]' stats --id "$ctr"
stats_round "crictl statsp" "$pod_dir" '.stats[0].linux' statsp --id "$pod"

# ----------------------------------------------------------------- exec
check "exec output" "$(cri "$EP" exec "$ctr" echo hello from the container)" "hello from the container"
# crictl exits 1 for any command that fails, and says with what code.
said=$(cri "$EP" exec "$ctr" sh -c 'exit 3' 2>&1) && fail "exec of 'exit 3' succeeded"
case $said in
*"exit code 3"*) ok "exec exit code: $said" ;;
*) fail "exec exit code: crictl said '$said', want exit code 3" ;;
esac

# ----------------------------------------------------------------- stop
cri "$EP" stop --timeout 10 "$ctr" >/dev/null
status=$(cri "$EP" inspect -o json "$ctr")
check "stopped container state" "$(jq -r .status.state <<<"$status")" CONTAINER_EXITED
check "stopped container exit code (SIGTERM handled)" "$(jq -r .status.exitCode <<<"$status")" 0
for _ in $(seq 50); do [ -d "$cg" ] || break; sleep 0.1; done
[ ! -d "$cg" ] && ok "container cgroup gone after stop" || fail "$cg left after stop"
cri "$EP" rm "$ctr" >/dev/null
cri "$EP" stopp "$pod" >/dev/null
check "stopped pod state" "$(cri "$EP" inspectp -o json "$pod" | jq -r .status.state)" SANDBOX_NOTREADY
cri "$EP" rmp "$pod" >/dev/null
check "pods left" "$(cri "$EP" pods -q | grep -c "$pod" || true)" 0
[ ! -d "$pod_dir" ] && ok "pod cgroup gone after rmp" || fail "$pod_dir left after rmp"
if [ "$DRIVER" = systemd ]; then
    check "systemd units of the pod or container" \
        "$(systemctl list-units --all --no-legend --plain | grep -c -e "$pod" -e "$ctr" || true)" 0
fi
pod=

say "scenario: $checks checks passed"
