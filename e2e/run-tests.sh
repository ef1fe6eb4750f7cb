#!/usr/bin/env bash
# Installs what the tests need (as root, on Debian/Ubuntu) and runs the
# whole test suite: unit tests, kernel-level tests and end-to-end tests with
# a real registry, real runc/crun and real CNI plugins.
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
cargo test --workspace --no-fail-fast
