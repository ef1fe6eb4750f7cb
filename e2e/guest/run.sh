#!/usr/bin/env bash
# Runs e2e test binaries inside a booted Debian 12 guest (systemd as PID 1,
# pure cgroup v2, AppArmor, a shared `/`): the node shape current
# Kubernetes runs on, which this host is not.
#
#   e2e/guest/run.sh                          # the default set (./default-tests)
#   e2e/guest/run.sh BINARY [LIBTEST ARGS…]   # any other selection, e.g.
#   e2e/guest/run.sh containers security_settings --exact …
#   e2e/guest/run.sh crius-bench sandboxes --count 20 --cgroup-driver systemd
#   CRITEST=… CRICTL=… e2e/guest/run.sh conformance [HANDLER…]
#
# As root. BINARY is an e2e test target (a file name in e2e/tests/), or
# crius-bench (e2e/src/bin/crius-bench/) with its arguments, or
# `conformance`: critest for each HANDLER (default: `default crun`) and
# e2e/conformance/crictl-scenario.sh against crius with the node's cgroup
# driver, with critest and crictl binaries you built (CRITEST, CRICTL; the
# lane never builds them) and the images of e2e/conformance/setup.sh, run
# on this host with its registry, which the guest reaches at 10.0.2.2. It:
#   1. builds or finds the cached image (build.sh);
#   2. builds, or finds already built, crius and the e2e test binaries for
#      CRIUS_GUEST_PROFILE (debug, the default, as `cargo build --workspace
#      --bins` and `cargo test --workspace` leave them; or release);
#   3. stages the binaries with in-guest.sh on a second disk, an ext4 image
#      made with `mkfs.ext4 -d` and mounted read-only in the guest;
#   4. boots a qcow2 overlay of the image under qemu (TCG), waits for ssh,
#      runs in-guest.sh, and brings the logs back into
#      $GUEST_DIR/results/<time>/ (also results/latest);
#   5. always stops qemu and removes the overlay and the staging files,
#      however it ends (a failing test, a timeout, Ctrl-C).
#
# Exits 0 when every selected test passed. The tests start their own
# registries inside the guest (Debian's docker-registry is in the image),
# as they do on the host; the host's loopback would be 10.0.2.2 from there.
#
# Environment: CRIUS_GUEST_PROFILE (debug|release), CRIUS_GUEST_TIMEOUT
# (seconds the tests may take in the guest, default 1500; 3600 for
# conformance), REGISTRY_PORT and SKIP_APT for conformance's setup.sh,
# CRIUS_GUEST_MEMORY (default 4G), CRIUS_GUEST_CPUS (default 2),
# CRIUS_GUEST_DIR (default /var/tmp/crius-guest), CARGO_TARGET_DIR.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

PROFILE=${CRIUS_GUEST_PROFILE:-debug}
MEMORY=${CRIUS_GUEST_MEMORY:-4G}
CPUS=${CRIUS_GUEST_CPUS:-2}
# How long the guest may take from power-on to answering ssh.
BOOT_TIMEOUT=300
REPO=$(cd "$GUEST_LANE/../.." && pwd)

case $PROFILE in
debug) cargo_profile=() ;;
release) cargo_profile=(--release) ;;
*) guest_die "CRIUS_GUEST_PROFILE=$PROFILE: want debug or release" ;;
esac
guest_need_root
lane_started=$SECONDS

# The selection: one entry per test binary run, its libtest arguments
# after it, tab-separated (in-guest.sh's plan).
plan=()
if [ $# -gt 0 ]; then
    plan+=("$(IFS=$'\t'; echo "$*")")
else
    while read -r -a words; do
        [ ${#words[@]} -gt 0 ] || continue
        plan+=("$(IFS=$'\t'; echo "${words[*]}")")
    done < <(sed -e 's/#.*//' "$GUEST_LANE/default-tests")
fi
binaries=()
conformance=0
for entry in "${plan[@]}"; do
    binary=${entry%%$'\t'*}
    [ "$binary" = crius-bench ] || [ "$binary" = conformance ] ||
        [ -f "$REPO/e2e/tests/$binary.rs" ] ||
        guest_die "no e2e test binary $binary (e2e/tests/$binary.rs)"
    binaries+=("$binary")
    [ "$binary" != conformance ] || conformance=1
done
TIMEOUT=${CRIUS_GUEST_TIMEOUT:-$((conformance ? 3600 : 1500))}
if [ "$conformance" = 1 ]; then
    for tool in CRITEST CRICTL; do
        [ -x "${!tool:-}" ] ||
            guest_die "conformance: set $tool to a $(echo "$tool" | tr A-Z a-z) you built from kubernetes-sigs/cri-tools"
    done
    [ ${#plan[@]} = 1 ] || guest_die "conformance runs alone"
    # The handlers, each after a tab.
    handlers=${plan[0]#conformance}
    [ -n "$handlers" ] || handlers=$'\tdefault\tcrun'
fi

# 1. The image.
phase=$SECONDS
image=$(bash "$GUEST_LANE/build.sh")
t_image=$((SECONDS - phase))
guest_prereqs

mkdir -p "$GUEST_DIR/run" "$GUEST_DIR/results"
run=$(mktemp -d "$GUEST_DIR/run/XXXXXX")
qemu_pid=
tests_pid=
conf_work=
stop_guest() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    qemu_pid=
}
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    if [ -n "$tests_pid" ]; then
        kill -TERM "$tests_pid" 2>/dev/null || true
    fi
    stop_guest
    if [ -n "$conf_work" ]; then
        CONF_WORK=$conf_work "$REPO/e2e/conformance/teardown.sh" >&2 ||
            guest_log "the conformance harness's teardown.sh reported leftovers"
        rm -rf "$conf_work"
    fi
    rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 2. The binaries: cargo finds them fresh when CI built them already.
phase=$SECONDS
guest_log "finding (or building) the $PROFILE binaries"
(
    cd "$REPO"
    cargo build -q --workspace --bins "${cargo_profile[@]}" --message-format=json-render-diagnostics
    # The test binaries only when a test is to run (a release build of
    # them all takes long).
    if printf '%s\n' "${binaries[@]}" | grep -qvxE 'crius-bench|conformance'; then
        cargo test -q --workspace --no-run "${cargo_profile[@]}" --message-format=json-render-diagnostics
    fi
) >"$run/cargo.json"
# "name kind executable" for the workspace's binaries and the crius-e2e
# test binaries.
mapfile -t built < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    if "test" in t["kind"] and "crius-e2e" not in m["package_id"]:
        continue
    print(t["name"], t["kind"][0], m["executable"])
' "$run/cargo.json")
executable() { # NAME KIND
    local line n k path
    for line in "${built[@]}"; do
        read -r n k path <<<"$line"
        if [ "$n" = "$1" ] && [ "$k" = "$2" ]; then
            echo "$path"
            return
        fi
    done
    guest_die "cargo built no $2 named $1"
}
t_cargo=$((SECONDS - phase))

# 3. The payload disk.
phase=$SECONDS

stage=$run/stage
bin=$stage/target/$PROFILE
mkdir -p "$bin/deps" "$stage/deploy"
# Hard links where the target dir shares the file system, else copies.
place() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
for name in crius crius-monitor; do
    place "$(executable "$name" bin)" "$bin/$name"
done
# The tests find crius as ../crius from target/<profile>/deps/.
for binary in $(printf '%s\n' "${binaries[@]}" | sort -u); do
    case $binary in
    crius-bench) place "$(executable "$binary" bin)" "$bin/deps/$binary" ;;
    conformance) ;;
    *) place "$(executable "$binary" test)" "$bin/deps/$binary" ;;
    esac
done
cp "$GUEST_LANE/in-guest.sh" "$stage/"
if [ "$conformance" = 1 ]; then
    # The host's registry with every image critest pulls (setup.sh prints
    # its work root last); the guest runs the same harness against it.
    guest_log "conformance: the harness's registry and images on this host (setup.sh)"
    conf_work=$(mktemp -d "${TMPDIR:-/var/tmp}/crius-guest-conformance.XXXXXX")
    CONF_WORK=$conf_work "$REPO/e2e/conformance/setup.sh" >"$run/setup.log" 2>&1 ||
        { tail -n 20 "$run/setup.log" >&2; guest_die "the conformance harness's setup.sh failed"; }
    registry_port=$(. "$conf_work/env" && echo "$REGISTRY_PORT")
    plan=("conformance"$'\t'"10.0.2.2:$registry_port$handlers")
    mkdir -p "$stage/bin"
    cp "$CRITEST" "$stage/bin/critest"
    cp "$CRICTL" "$stage/bin/crictl"
    cp -r "$REPO/e2e/conformance" "$stage/conformance"
    cp "$GUEST_LANE/conformance-in-guest.sh" "$stage/"
fi
printf '%s\n' "${plan[@]}" >"$stage/plan"
echo "$PROFILE" >"$stage/profile"
# Tests that read deploy/ through CARGO_MANIFEST_DIR find it at the path
# they were compiled under (in-guest.sh links it there).
cp -r "$REPO/deploy/." "$stage/deploy/"
echo "$REPO" >"$stage/source-dir"
kib=$(du -sk "$stage" | cut -f1)
mkfs.ext4 -q -F -L crius-payload -d "$stage" "$run/payload.img" "$((kib * 11 / 10 + 65536))k" >/dev/null
rm -rf "$stage"
t_payload=$((SECONDS - phase))
guest_log "payload: $((kib / 1024)) MiB staged on a disk in $t_payload s"

# 4. Boot.
phase=$SECONDS
qemu-img create -q -f qcow2 -F raw -b "$image/disk.raw" "$run/overlay.qcow2"
results=$GUEST_DIR/results/$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$results"
ln -sfn "$(basename "$results")" "$GUEST_DIR/results/latest"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
for attempt in 1 2 3; do
    port=$(free_port)
    "${GUEST_QEMU[@]}" -nodefaults -display none -no-reboot \
        -accel tcg,thread=multi -cpu max -m "$MEMORY" -smp "$CPUS" \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" -append "$(cat "$image/cmdline")" \
        -drive "file=$run/overlay.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
        -drive "file=$run/payload.img,if=virtio,format=raw,readonly=on" \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" \
        -device virtio-net-pci,netdev=net0 -device virtio-rng-pci \
        -serial "file:$results/console.log" -monitor none \
        >"$run/qemu.log" 2>&1 &
    qemu_pid=$!
    sleep 1
    if kill -0 "$qemu_pid" 2>/dev/null; then
        break
    fi
    # Another process took the port between the check and qemu's bind.
    wait "$qemu_pid" || true
    qemu_pid=
    grep -q 'hostfwd' "$run/qemu.log" && [ "$attempt" -lt 3 ] && continue
    cat "$run/qemu.log" >&2
    guest_die "qemu did not start"
done
guest_log "booting (qemu pid $qemu_pid, ssh on 127.0.0.1:$port)"
ssh_to_guest=(ssh -i "$image/id_ed25519" -p "$port" -o HostKeyAlias=crius-guest
    -o UserKnownHostsFile="$image/known_hosts" -o StrictHostKeyChecking=yes
    -o BatchMode=yes -o ConnectTimeout=5 -o ServerAliveInterval=15
    -o ServerAliveCountMax=8 -o LogLevel=ERROR root@127.0.0.1)
until "${ssh_to_guest[@]}" true 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || {
        cat "$run/qemu.log" >&2
        guest_die "qemu exited during boot (console: $results/console.log)"
    }
    [ $((SECONDS - phase)) -lt "$BOOT_TIMEOUT" ] ||
        guest_die "no ssh within $BOOT_TIMEOUT s (console: $results/console.log)"
    sleep 2
done
t_boot=$((SECONDS - phase))
guest_log "guest up: ssh answered $t_boot s after power-on"

# 5. The tests.
phase=$SECONDS
status=0
# In the background, so that a signal to run.sh is handled at once (bash
# runs traps only between foreground commands, and `wait` is one).
timeout --kill-after=30 "$TIMEOUT" "${ssh_to_guest[@]}" \
    'mkdir -p /mnt/crius && mount -o ro /dev/vdb /mnt/crius && /mnt/crius/in-guest.sh' &
tests_pid=$!
wait "$tests_pid" || status=$?
tests_pid=
t_tests=$((SECONDS - phase))
[ "$status" != 124 ] || guest_log "the tests did not finish within $TIMEOUT s"
# Whatever happened, bring back what the guest wrote.
"${ssh_to_guest[@]}" 'cd /var/tmp/guest-results 2>/dev/null && {
        journalctl -b --no-pager -o short-monotonic >journal.log 2>&1
        dmesg >dmesg.log 2>&1
        tar -c .
    }' | tar -C "$results" -x || guest_log "could not fetch every result"
stop_guest
t_lane=$((SECONDS - lane_started))

{
    echo "profile $PROFILE"
    echo "image ($(basename "$image")) ${t_image} s"
    echo "cargo (find or build the binaries) ${t_cargo} s"
    echo "payload disk ${t_payload} s ($((kib / 1024)) MiB)"
    echo "boot to ssh ${t_boot} s"
    echo "tests ${t_tests} s"
    echo "lane ${t_lane} s"
} >"$results/timings"
guest_log "results in $results"
if [ -f "$results/summary" ]; then
    cat "$results/summary" >&2
fi
sed 's/^/  /' "$results/timings" >&2
# The failed tests, by name.
grep -h ' \.\.\. FAILED$' "$results"/[0-9]*.log >&2 2>/dev/null || true
if [ "$status" = 0 ]; then
    guest_log "every selected test passed"
else
    guest_log "FAILED (exit $status); the logs are in $results"
fi
exit "$status"
