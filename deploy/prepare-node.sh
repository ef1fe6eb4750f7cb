#!/usr/bin/env bash
# Node preparation shared by install.sh and the test suite (as root).
#
# On a hybrid cgroup host (cgroup v1 controllers under /sys/fs/cgroup, v2 at
# /sys/fs/cgroup/unified), crun refuses to run containers while the v2
# hierarchy holds any controller ("cgroups in hybrid mode not supported").
# A controller left unmounted in v1 (hugetlb, typically) lands there; mount
# each as a v1 hierarchy, as a systemd hybrid boot does, so that runc and
# crun both work. Idempotent; changes nothing on pure v1 or v2 hosts.
set -euo pipefail

if [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && [ -r /sys/fs/cgroup/unified/cgroup.controllers ]; then
    for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
        mkdir -p "/sys/fs/cgroup/$c"
        if ! mountpoint -q "/sys/fs/cgroup/$c"; then
            mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
            echo "prepare-node: mounted the $c cgroup controller as a v1 hierarchy"
        fi
    done
fi
