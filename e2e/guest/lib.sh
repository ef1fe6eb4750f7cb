# shellcheck shell=bash
# Shared by build.sh and run.sh (sourced, never run): where the guest lane
# keeps its files, logging, and the host's prerequisites (debootstrap,
# mkfs.ext4, qemu-img, ssh, qemu-system-x86_64).
#
# After guest_prereqs, "${GUEST_QEMU[@]}" is the command that runs
# qemu-system-x86_64: Debian's own when apt can install it, else the one
# unpacked under $GUEST_DIR/qemu (see guest_qemu).

# Everything the lane keeps: images/, qemu/, debs/, results/, run/.
# shellcheck disable=SC2034 # GUEST_DIR, GUEST_LANE: for the scripts sourcing me
GUEST_DIR=${CRIUS_GUEST_DIR:-/var/tmp/crius-guest}
GUEST_LANE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_QEMU=()

guest_log() {
    printf '%s guest: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

guest_die() {
    guest_log "error: $*"
    exit 1
}

guest_need_root() {
    [ "$(id -u)" = 0 ] || guest_die "run me as root (debootstrap, chroot and the tests need it)"
}

# Whether every named package is installed.
guest_installed() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || return 1
    done
}

_guest_apt_updated=
guest_apt_update() {
    if [ -z "$_guest_apt_updated" ]; then
        apt-get update -q >&2
        _guest_apt_updated=1
    fi
}

# Installs what the lane runs on the host, then sets GUEST_QEMU.
guest_prereqs() {
    export DEBIAN_FRONTEND=noninteractive
    local need=() pkg
    for pkg in debootstrap e2fsprogs qemu-utils openssh-client python3; do
        guest_installed "$pkg" || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        guest_apt_update
        apt-get install -y -q --no-install-recommends "${need[@]}" >&2
    fi
    guest_qemu
}

# qemu-system-x86_64 from Debian: installed with apt when that removes
# nothing. Where it would remove something (here: a backported qemu-utils
# that Debian 12's qemu-system-common Breaks), the packages apt would
# install are downloaded and unpacked under $GUEST_DIR/qemu instead, and
# that qemu runs with their libraries, modules and firmware.
guest_qemu() {
    if command -v qemu-system-x86_64 >/dev/null; then
        GUEST_QEMU=(qemu-system-x86_64)
        return
    fi
    local root=$GUEST_DIR/qemu
    if [ ! -x "$root/usr/bin/qemu-system-x86_64" ]; then
        guest_apt_update
        local plan
        plan=$(apt-get install -s -q --no-install-recommends qemu-system-x86)
        if ! grep -q '^Remv ' <<<"$plan"; then
            apt-get install -y -q --no-install-recommends qemu-system-x86 >&2
            GUEST_QEMU=(qemu-system-x86_64)
            return
        fi
        guest_log "apt would remove $(awk '/^Remv /{printf "%s ", $2}' <<<"$plan")to install" \
            "qemu-system-x86; unpacking it under $root instead"
        local pkgs tmp
        mapfile -t pkgs < <(awk '/^Inst /{print $2}' <<<"$plan")
        mkdir -p "$GUEST_DIR"
        tmp=$(mktemp -d "$GUEST_DIR/.qemu.XXXXXX")
        # apt-get download drops privileges to _apt for the download.
        mkdir "$tmp/debs" "$tmp/root"
        chmod 755 "$tmp"
        chown _apt "$tmp/debs" 2>/dev/null || true
        if ! (cd "$tmp/debs" && apt-get download -q "${pkgs[@]}" >&2); then
            rm -rf "$tmp"
            guest_die "apt-get download ${pkgs[*]} failed"
        fi
        local deb
        for deb in "$tmp"/debs/*.deb; do
            dpkg-deb -x "$deb" "$tmp/root"
        done
        rm -rf "$tmp/debs" "$root"
        mv -T "$tmp/root" "$root"
        rmdir "$tmp"
    fi
    local libs=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
    GUEST_QEMU=(env "LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        "QEMU_MODULE_DIR=$root/usr/lib/x86_64-linux-gnu/qemu"
        "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/qemu"
        -L "$root/usr/share/seabios")
    "${GUEST_QEMU[@]}" --version >/dev/null ||
        guest_die "the qemu unpacked under $root does not run (remove it to unpack again)"
}

# The host's Debian mirror (the first deb822 or one-line source serving
# the suite), so the guest comes from where this machine's packages come.
guest_mirror() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822 stanzas: URIs and Suites of the same paragraph.
        awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (uri != "" && has) { print uri; exit } uri = ""; has = 0; next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
            END { if (uri != "" && has) print uri }' "$f"
    done | head -n 1 | grep . && return
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v suite="$suite" '$1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; s = ($2 ~ /^\[/) ? $4 : $3;
                                             if (s == suite) { print u; exit } }' | grep . ||
        echo http://deb.debian.org/debian
}
