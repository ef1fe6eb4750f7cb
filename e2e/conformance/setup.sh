#!/usr/bin/env bash
# setup.sh: prepares a Debian 12 machine to run critest against crius and
# against containerd, from this repository alone.
#
#   1. installs the Debian packages the harness needs (one apt-get update);
#   2. makes the work root: $CONF_WORK, else a new mktemp directory under
#      ${TMPDIR:-/var/tmp}, mode 0711, and records what it finds on the host
#      that a run changes (net.ipv4.ip_forward, portmap's iptables chains);
#   3. starts a distribution registry (Debian's docker-registry) on
#      127.0.0.1:$REGISTRY_PORT (default 5055; Debian's own service, when it
#      runs, takes 5000), its storage in the work root;
#   4. builds the test images and pushes them there (build-images.sh);
#   5. writes the CNI network (bridge $CONF_BRIDGE on $CONF_SUBNET, with
#      host-local IPAM and portmap, its state in the work root) and
#      containerd's config with the same registry mirrors crius gets.
#
# It prints the work root last; the other scripts find everything through
# CONF_WORK=<that path>. teardown.sh undoes all of it.
#
# Environment: CONF_WORK, REGISTRY_PORT (5055), CONF_BRIDGE (crconf0),
# CONF_SUBNET (10.77.0.0/16), SKIP_APT=1 (the packages are there already),
# REGISTRY_AT=HOST:PORT (a registry another setup.sh filled, e.g. the
# host's from a guest at 10.0.2.2:5055: steps 3 and 4 are left out).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

# On the way out: the policy file made below goes; a setup that failed
# after making the work root undoes what it did (teardown.sh).
MADE_POLICY=0
cleanup() {
    local rc=$?
    [ "$MADE_POLICY" = 0 ] || rm -f /usr/sbin/policy-rc.d
    if [ "$rc" != 0 ] && [ -f "${CONF_WORK:-/nonexistent}/env" ]; then
        step "setup failed: undoing it"
        "$HERE/teardown.sh" || true
    fi
}
trap cleanup EXIT

REGISTRY_PORT=${REGISTRY_PORT:-5055}
REGISTRY=${REGISTRY_AT:-127.0.0.1:$REGISTRY_PORT}
CONF_BRIDGE=${CONF_BRIDGE:-crconf0}
CONF_SUBNET=${CONF_SUBNET:-10.77.0.0/16}

# ---------------------------------------------------------------- 1. packages
PACKAGES=(docker-registry busybox-static containerd runc crun containernetworking-plugins
    iptables iproute2 gcc libc6-dev curl jq util-linux procps)
if [ "${SKIP_APT:-0}" != 1 ]; then
    step "apt-get update (once), then installing what is missing of: ${PACKAGES[*]}"
    apt-get update -q >/dev/null
    missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        # Keep the packages' services (docker-registry on :5000, containerd)
        # from starting: this harness runs its own instances.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            MADE_POLICY=1
        fi
        step "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
fi

# ---------------------------------------------------------------- 2. work root
if [ -n "${CONF_WORK:-}" ]; then
    [ ! -e "$CONF_WORK/env" ] || die "$CONF_WORK is in use already (run teardown.sh first)"
    mkdir -p "$CONF_WORK"
else
    CONF_WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/crius-conformance.XXXXXX")
fi
chmod 0711 "$CONF_WORK"
export CONF_WORK
step "work root $CONF_WORK"
mkdir -p "$CONF_WORK"/{registry,cni/net.d,cni/ipam,containerd/certs.d,results,logs,pids}
: > "$CONF_WORK/crictl.yaml"

# What a run changes on the host and teardown.sh gives back.
cat /proc/sys/net/ipv4/ip_forward > "$CONF_WORK/host.ip_forward"
iptables -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-HOSTPORT-/ { print $2 }' \
    > "$CONF_WORK/host.hostport-chains"
ipcs -m | awk '$2 ~ /^[0-9]+$/ { print $2 }' | sort > "$CONF_WORK/host.shm"

cat > "$CONF_WORK/env" <<EOF
REGISTRY_PORT=$REGISTRY_PORT
REGISTRY=$REGISTRY
CONF_BRIDGE=$CONF_BRIDGE
CONF_SUBNET=$CONF_SUBNET
CONF_NET_DIR=$CONF_WORK/cni/net.d
EOF

# ---------------------------------------------------------------- 3. registry
if [ -n "${REGISTRY_AT:-}" ]; then
    curl -sf -o /dev/null "http://$REGISTRY/v2/" || die "no registry answers at REGISTRY_AT=$REGISTRY"
    step "using the registry at $REGISTRY and the images in it"
else
    if curl -s -o /dev/null "http://$REGISTRY/v2/"; then
        die "something answers on $REGISTRY already; pick another REGISTRY_PORT"
    fi
    step "starting docker-registry on $REGISTRY"
    cat > "$CONF_WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $CONF_WORK/registry
http:
  addr: $REGISTRY
EOF
    setsid /usr/bin/docker-registry serve "$CONF_WORK/registry.yml" \
        > "$CONF_WORK/logs/registry.log" 2>&1 < /dev/null &
    echo $! > "$CONF_WORK/pids/registry"
    for ((i = 0; i < 50; i++)); do
        curl -sf -o /dev/null "http://$REGISTRY/v2/" && break
        sleep 0.2
    done
    curl -sf -o /dev/null "http://$REGISTRY/v2/" ||
        die "the registry did not come up; see $CONF_WORK/logs/registry.log"
fi

# ---------------------------------------------------------------- 4. images
[ -n "${REGISTRY_AT:-}" ] || "$HERE/build-images.sh"

# ---------------------------------------------------------------- 5. configs
step "writing the CNI network $CONF_BRIDGE ($CONF_SUBNET) and containerd's config"
# Bridge + host-local + portmap. No masquerade: pods talk only to this host.
cat > "$CONF_WORK/cni/net.d/10-crius-conformance.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "crius-conformance",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CONF_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$CONF_SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$CONF_WORK/cni/ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
  ]
}
EOF

# Registry mirrors for containerd (hosts.toml under config_path): the same
# four registries crius sends to the harness's registry (crius.sh).
for host in registry.k8s.io k8s.gcr.io gcr.io docker.io "$REGISTRY"; do
    mkdir -p "$CONF_WORK/containerd/certs.d/$host"
    cat > "$CONF_WORK/containerd/certs.d/$host/hosts.toml" <<EOF
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
done

D=$CONF_WORK/containerd
cat > "$D/config.toml" <<EOF
# containerd (Debian's 1.6) as the reference runtime of the conformance
# harness: everything under the work root, the harness's CNI network and
# registry mirrors, runc and crun handlers. Written by setup.sh.
version = 2
root = "$D/root"
state = "$D/state"

[grpc]
  address = "$D/containerd.sock"

[ttrpc]
  address = "$D/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # root may lack CAP_SYS_RESOURCE (in a container, a VM's sandbox): then
  # runc cannot set the sandboxes' negative oom_score_adj.
  restrict_oom_score_adj = true
  # pods' network namespaces under the state dir, not /var/run/netns
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/bin/runc"
        Root = "$D/runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
        BinaryName = "/usr/bin/crun"
        Root = "$D/crun"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CONF_WORK/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$D/certs.d"
EOF

step "ready; for the other scripts:"
echo "CONF_WORK=$CONF_WORK"
