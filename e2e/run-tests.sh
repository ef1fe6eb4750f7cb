#!/usr/bin/env bash
# Installs what the tests need (as root, on Debian/Ubuntu) and runs the
# whole test suite: unit tests, kernel-level tests and end-to-end tests with
# a real registry, real runc/crun and real CNI plugins; then the guest
# lane (e2e/guest/): the tests whose meaning depends on the node's shape,
# in a booted Debian 12 guest with systemd, pure cgroup v2 and AppArmor.
# CRIUS_GUEST_LANE=0 leaves the guest lane out.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "run-tests.sh: the tests create namespaces and mounts; run me as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in runc crun containernetworking-plugins docker-registry busybox-static \
           protobuf-compiler iptables iproute2 openssl prometheus; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q "${need[@]}"
fi
# Debian starts the registry's own service on :5000; the tests run their
# own registries and do not need it.
bash deploy/prepare-node.sh
python3 -c 'import grpc' 2>/dev/null || python3 -m pip install -q grpcio

cargo build --workspace --bins
status=0
cargo test --workspace --no-fail-fast || status=$?
if [ "${CRIUS_GUEST_LANE:-1}" != 0 ]; then
    # The binaries cargo test just built, run in the guest.
    CRIUS_GUEST_PROFILE=debug bash e2e/guest/run.sh || status=$?
fi
exit "$status"

