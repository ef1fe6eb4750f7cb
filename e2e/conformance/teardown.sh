#!/usr/bin/env bash
# teardown.sh: undoes setup.sh and whatever ran since, for the work root
# $CONF_WORK: stops crius and containerd (their pods first, see crius.sh and
# containerd.sh) and the registry, by the pids recorded; deletes the CNI
# bridge; removes portmap's iptables chains if this run made them and no
# other pod uses them; gives net.ipv4.ip_forward back its value from
# before; unmounts anything left under the work root; and removes the work
# root but its results/ and logs/. Then it checks that no process, mount or
# network namespace of the run is left, and says so.
#
# Environment: CONF_WORK (from setup.sh), CRICTL (to remove pods left).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_root
load_work

step "stopping the runtimes"
"$HERE/crius.sh" stop || step "crius.sh stop failed"
"$HERE/containerd.sh" stop || step "containerd.sh stop failed"
stop_pid "$CONF_WORK/pids/registry" registry

step "undoing the network changes"
if ip link show "$CONF_BRIDGE" >/dev/null 2>&1; then
    ip link del "$CONF_BRIDGE" && step "bridge $CONF_BRIDGE deleted"
fi
# portmap's shared chains: only those this run created, and only when no
# other pod's rule is in them (the DNAT chain jumps to one chain per pod).
if ! grep -q CNI-HOSTPORT-DNAT "$CONF_WORK/host.hostport-chains" 2>/dev/null &&
    iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1; then
    if [ "$(iptables -t nat -S CNI-HOSTPORT-DNAT | grep -c '^-A')" = 0 ]; then
        iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null
        iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null
        iptables -t nat -D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" \
            -j CNI-HOSTPORT-MASQ 2>/dev/null
        for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
            iptables -t nat -F "$c" 2>/dev/null && iptables -t nat -X "$c" 2>/dev/null &&
                step "iptables nat chain $c removed"
        done
    else
        step "CNI-HOSTPORT-DNAT still holds other pods' rules: left in place"
    fi
fi
if [ "$(cat "$CONF_WORK/host.ip_forward" 2>/dev/null)" = 0 ] &&
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]; then
    echo 0 > /proc/sys/net/ipv4/ip_forward && step "net.ipv4.ip_forward back to 0"
fi

step "unmounting and removing $CONF_WORK (results/ and logs/ stay)"
umount_under "$CONF_WORK"
find "$CONF_WORK" -mindepth 1 -maxdepth 1 ! -name results ! -name logs -exec rm -rf {} +

step "checking for leftovers"
left=0
for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = $$ ] && continue
    if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qF -- "$CONF_WORK/" &&
        ! grep -Eqx 'bash|sh|tr|grep' "$p/comm" 2>/dev/null; then
        step "left: process ${p#/proc/} $(tr '\0' ' ' < "$p/cmdline")"
        left=1
    fi
done
if grep -qF " $CONF_WORK/" /proc/self/mountinfo; then
    step "left: mounts under $CONF_WORK"
    left=1
fi
if ip link show "$CONF_BRIDGE" >/dev/null 2>&1; then
    step "left: bridge $CONF_BRIDGE"
    left=1
fi
if [ "$left" = 0 ]; then
    step "nothing left; results and logs in $CONF_WORK"
else
    exit 1
fi
