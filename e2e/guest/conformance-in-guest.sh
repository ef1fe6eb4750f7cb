#!/usr/bin/env bash
# Runs inside the guest, from the payload disk (in-guest.sh calls it for a
# plan entry `conformance`): the conformance harness of e2e/conformance/
# against crius on this node's own shape — critest once per handler, then
# crictl-scenario.sh — with the images of the host's registry, which
# run.sh filled (setup.sh there) and the guest reaches at 10.0.2.2.
#
#   conformance-in-guest.sh OUT REGISTRY HANDLER...
#
# OUT: where the results go (critest-crius-HANDLER/, crictl-scenario/,
# logs/); REGISTRY: HOST:PORT of the filled registry; HANDLER: default (the
# runtime's default, runc) or a runtime handler name (crun). Exits 1 when
# a spec failed or the scenario did, after the rest has run.
set -euo pipefail
payload=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: conformance-in-guest.sh OUT REGISTRY HANDLER...}
registry=${2:?usage: conformance-in-guest.sh OUT REGISTRY HANDLER...}
shift 2
profile=$(cat "$payload/profile")
conf=$payload/conformance

export CRITEST=$payload/bin/critest CRICTL=$payload/bin/crictl
export CRIUS=$payload/target/$profile/crius CRIUS_MONITOR=$payload/target/$profile/crius-monitor
CONF_WORK=$(mktemp -d /var/tmp/crius-conformance.XXXXXX)
export CONF_WORK
REGISTRY_AT=$registry SKIP_APT=1 "$conf/setup.sh" >/dev/null
# shellcheck disable=SC2317 # run by the trap
finish() {
    "$conf/teardown.sh" || echo "teardown.sh reported leftovers (above)"
    mkdir -p "$out"
    cp -r "$CONF_WORK/results/." "$out/" 2>/dev/null || true
    cp -r "$CONF_WORK/logs" "$out/" 2>/dev/null || true
}
trap finish EXIT

status=0
ep=$("$conf/crius.sh" start)
for handler in "$@"; do
    h=$handler
    [ "$h" != default ] || h=
    RUNTIME_HANDLER=$h "$conf/critest.sh" "$ep" "crius-$handler" >/dev/null || {
        rc=$?
        [ "$rc" = 1 ] || echo "critest.sh for $handler exited $rc"
        status=1
    }
    echo "critest crius-$handler: $(tail -n 1 "$CONF_WORK/results/critest-crius-$handler/summary.txt" 2>/dev/null)"
done
if "$conf/crictl-scenario.sh" "$ep" >/dev/null; then
    echo "crictl scenario: $(tail -n 1 "$CONF_WORK/results/crictl-scenario/summary.txt")"
else
    echo "crictl scenario FAILED: $(tail -n 1 "$CONF_WORK/results/crictl-scenario/summary.txt" 2>/dev/null)"
    status=1
fi
"$conf/crius.sh" stop
exit "$status"
