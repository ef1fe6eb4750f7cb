#!/usr/bin/env bash
# Installs crius on a Debian/Ubuntu machine (as root) and runs it with its
# defaults and a default CNI network, so that
#   crictl --runtime-endpoint unix:///run/crius/crius.sock runp pod.json
# works right after. Re-running it upgrades and restarts crius.
# deploy/uninstall.sh takes it away again.
#
# CRIUS_BIN_DIR=DIR installs the crius and crius-monitor already built in
# DIR instead of building them (a node without Rust). Where systemd is PID
# 1 crius runs as crius.service; elsewhere (or with
# CRIUS_SERVICE=background) in the background, its pid in /run/crius.pid
# and its log in /var/log/crius.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=background.sh
source deploy/background.sh

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run me as root" >&2
    exit 1
fi
bins=${CRIUS_BIN_DIR:-}
if [ -n "$bins" ]; then
    for b in crius crius-monitor; do
        [ -x "$bins/$b" ] || { echo "install.sh: no $b in CRIUS_BIN_DIR=$bins" >&2; exit 1; }
    done
elif ! command -v cargo >/dev/null; then
    echo "install.sh: cargo not found; install Rust (https://rustup.rs) first," \
        "or set CRIUS_BIN_DIR to where crius is built" >&2
    exit 1
fi

# What crius runs on, from the distribution: the OCI runtimes, the CNI
# plugins, iptables for portmap/masquerade; protoc to build the CRI API.
export DEBIAN_FRONTEND=noninteractive
need=()
pkgs=(runc crun containernetworking-plugins iptables)
[ -n "$bins" ] || pkgs+=(protobuf-compiler)
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q "${need[@]}"
fi

bash deploy/prepare-node.sh
if [ -z "$bins" ]; then
    cargo build --release --bins
    bins=target/release
fi
install -m 0755 "$bins/crius" "$bins/crius-monitor" /usr/local/bin/
install -D -m 0755 deploy/prepare-node.sh /usr/local/libexec/crius/prepare-node.sh
install -d /etc/crius /etc/cni/net.d
[ -e /etc/crius/crius.toml ] || install -m 0644 deploy/crius.toml /etc/crius/crius.toml
[ -e /etc/crictl.yaml ] || install -m 0644 deploy/crictl.yaml /etc/crictl.yaml
# A pod network, unless the node already has one.
if ! ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json >/dev/null 2>&1; then
    install -m 0644 deploy/10-crius-bridge.conflist /etc/cni/net.d/
fi

if ! crius_background; then
    install -m 0644 deploy/crius.service /etc/systemd/system/crius.service
    systemctl daemon-reload
    systemctl enable crius
    systemctl restart crius
else
    # No systemd (a container, a minimal VM): run it in the background,
    # in place of the one this script started before, if any.
    crius_stop_background
    crius_start_background
fi
for _ in $(seq 50); do
    [ -S /run/crius/crius.sock ] && break
    sleep 0.1
done
[ -S /run/crius/crius.sock ] || { echo "install.sh: crius did not start; see its log" >&2; exit 1; }
echo "crius is running on unix:///run/crius/crius.sock"
