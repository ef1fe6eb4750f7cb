#!/usr/bin/env bash
# Runs inside the guest, from the read-only payload disk run.sh made
# (mounted at /mnt/crius): each line of ./plan is a test binary of
# ./target/<profile>/deps/ and its libtest arguments, tab-separated, or
# `conformance` and the arguments of conformance-in-guest.sh after its
# first (critest and the crictl scenario; results in
# /var/tmp/guest-results/conformance/); each runs in turn, its output in
# /var/tmp/guest-results/<n>-<binary>.log and a line in .../summary.
# Exits 1 if any failed.
set -euo pipefail
payload=$(cd "$(dirname "$0")" && pwd)
out=/var/tmp/guest-results
rm -rf "$out"
mkdir -p "$out"
profile=$(cat "$payload/profile")

# Tests compiled with CARGO_MANIFEST_DIR=<source>/e2e read
# <source>/deploy/: give them the payload's copy there, and run them from
# <source>/e2e as cargo test does.
source_dir=$(cat "$payload/source-dir")
mkdir -p "$source_dir/e2e"
[ -e "$source_dir/deploy" ] || ln -s "$payload/deploy" "$source_dir/deploy"

{
    echo "kernel $(uname -r)"
    echo "pid 1 $(ps -o comm= -p 1)"
    echo "/sys/fs/cgroup $(stat -fc %T /sys/fs/cgroup)"
    echo "cgroup.subtree_control $(cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null)"
    echo "apparmor $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)"
    echo "/ propagation $(findmnt -no PROPAGATION /)"
    echo "runc $(runc --version | head -n 1)"
    echo "crun $(crun --version | head -n 1)"
} >"$out/node"

export RUST_BACKTRACE=1
status=0
n=0
while IFS=$'\t' read -r -a entry; do
    n=$((n + 1))
    binary=${entry[0]}
    log=$out/$(printf '%02d' "$n")-$binary.log
    started=$SECONDS
    # Each line stamped with the seconds since the binary started, so the
    # log shows how long each test took under emulation.
    case $binary in
    conformance) command=("$payload/conformance-in-guest.sh" "$out/conformance" "${entry[@]:1}") ;;
    *) command=("$payload/target/$profile/deps/$binary" "${entry[@]:1}") ;;
    esac
    if (cd "$source_dir/e2e" && "${command[@]}") 2>&1 |
        while IFS= read -r line; do printf '[%4d s] %s\n' "$((SECONDS - started))" "$line"; done >"$log"; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    case $binary in
    conformance)
        outcome=$(sed -nE 's/^\[ *[0-9]+ s\] ((critest crius-|crictl scenario).*)/\1/p' "$log" | paste -sd ';' -) || true
        ;;
    *) outcome=$(grep -oE 'test result:.*' "$log" | tail -n 1) || true ;;
    esac
    printf '%s %s (%s s): %s\n' "$binary" "$result" "$((SECONDS - started))" "$outcome" |
        tee -a "$out/summary"
done <"$payload/plan"
exit "$status"
