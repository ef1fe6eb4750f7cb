#!/usr/bin/env bash
# Takes away what deploy/install.sh put on this machine (as root): stops
# crius and its service, removes the binaries, the unit and the helper.
# Containers are not crius's to kill here: remove the node's pods first
# (kubelet drained, or crictl rmp -fa), or they keep running unmanaged.
#
#   deploy/uninstall.sh           # keeps /etc/crius, /var/lib/crius, the CNI config
#   deploy/uninstall.sh --purge   # removes those too (the data of every image)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=background.sh
source deploy/background.sh

if [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: run me as root" >&2
    exit 1
fi
purge=
case "${1:-}" in
"") ;;
--purge) purge=1 ;;
*) echo "usage: uninstall.sh [--purge]" >&2; exit 2 ;;
esac

if [ -d /run/systemd/system ] && [ -e /etc/systemd/system/crius.service ]; then
    systemctl disable --now crius 2>/dev/null || systemctl stop crius || true
    rm -f /etc/systemd/system/crius.service
    systemctl daemon-reload
    systemctl reset-failed crius 2>/dev/null || true
fi
# The background crius install.sh started, if any (only that one).
crius_stop_background
rm -f /usr/local/bin/crius /usr/local/bin/crius-monitor
rm -rf /usr/local/libexec/crius

if [ -n "$purge" ]; then
    # A mount left below crius's directories (a pod not removed) could
    # reach host files; deleting through it is not for a script to do.
    if awk '{print $5}' /proc/self/mountinfo | grep -qE '^(/run/crius|/var/lib/crius)(/|$)'; then
        echo "uninstall.sh: something is still mounted below /run/crius or /var/lib/crius" \
            "(pods not removed?); not purging" >&2
        exit 1
    fi
    # Only what install.sh itself wrote, and what crius keeps.
    cmp -s /etc/crius/crius.toml deploy/crius.toml && rm -f /etc/crius/crius.toml
    rmdir /etc/crius 2>/dev/null || true
    cmp -s /etc/crictl.yaml deploy/crictl.yaml && rm -f /etc/crictl.yaml
    cmp -s /etc/cni/net.d/10-crius-bridge.conflist deploy/10-crius-bridge.conflist &&
        rm -f /etc/cni/net.d/10-crius-bridge.conflist
    rm -rf /var/lib/crius /run/crius
fi
echo "crius is uninstalled${purge:+ (purged)}"
