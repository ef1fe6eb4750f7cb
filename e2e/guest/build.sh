#!/usr/bin/env bash
# Builds (or finds cached) the guest image: Debian 12 (bookworm) from this
# machine's own apt source, debootstrapped with ./packages, booting with
# systemd as PID 1, a pure cgroup v2 hierarchy and AppArmor on.
#
#   e2e/guest/build.sh        # as root; prints the image's directory
#
# The image lives in $GUEST_DIR/images/<key>/ (key: sha256 of ./packages,
# this script and the mirror), made in a temp dir and renamed into place
# whole, so a directory there is always a complete image:
#
#   disk.raw     ext4 root file system, made with `mkfs.ext4 -d` (no loop
#                mount), booted as /dev/vda through a qcow2 overlay
#   vmlinuz, initrd.img, cmdline
#                the guest's own kernel and initramfs, for qemu -kernel
#   id_ed25519   the key root logs in with (made per image), known_hosts
#                the guest's host key under the alias crius-guest
#   manifest     every package installed, with its version
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# The image's directory is the one thing on stdout (fd 3); everything
# else (mkfs, chroot'ed tools) talks to stderr.
exec 3>&1 1>&2

SUITE=bookworm
# Room for the tests' images, containers and logs (a sparse file: only
# what is written takes space, and in the per-run overlay at that).
DISK_SIZE=8G
# Pure cgroup v2, AppArmor as the LSM, the console on the serial port.
CMDLINE="root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 apparmor=1 security=apparmor"

guest_need_root
guest_prereqs
mirror=$(guest_mirror "$SUITE")
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$GUEST_LANE/packages")
key=$({
    printf '%s\n' "${packages[@]}" "$mirror" "$SUITE"
    cat "$GUEST_LANE/build.sh"
} | sha256sum | cut -c1-16)
images=$GUEST_DIR/images
image=$images/$key
mkdir -p "$images" "$GUEST_DIR/debs"

if [ -f "$image/disk.raw" ]; then
    echo "$image" >&3
    exit 0
fi
# One build at a time; a second caller waits and then finds the image.
exec 9>"$images/.lock"
flock 9
if [ -f "$image/disk.raw" ]; then
    echo "$image" >&3
    exit 0
fi

started=$SECONDS
tmp=$(mktemp -d "$images/.build-$key.XXXXXX")
tree=$tmp/tree
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    # debootstrap mounts /proc and /sys in the tree; an interrupted run
    # may leave them.
    local m
    findmnt -rno TARGET | grep -F "$tmp/" | sort -r | while read -r m; do
        umount -l "$m" || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

guest_log "debootstrap $SUITE from $mirror (${#packages[@]} packages beyond minbase)"
# On failure debootstrap's own log says why.
if ! debootstrap --variant=minbase --components=main \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --cache-dir="$GUEST_DIR/debs" \
    "$SUITE" "$tree" "$mirror" >"$tmp/debootstrap.out" 2>&1; then
    tail -n 30 "$tmp/debootstrap.out" >&2
    tail -n 30 "$tree/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    guest_die "debootstrap failed"
fi
guest_log "debootstrap done in $((SECONDS - started)) s; configuring"

echo crius-guest >"$tree/etc/hostname"
cat >"$tree/etc/hosts" <<'EOF'
127.0.0.1 localhost
127.0.1.1 crius-guest
::1 localhost ip6-localhost ip6-loopback
EOF
echo '/dev/vda / ext4 rw,errors=remount-ro 0 0' >"$tree/etc/fstab"
# qemu's user-mode network: DHCP from 10.0.2.2's side, DNS at 10.0.2.3.
cat >"$tree/etc/systemd/network/10-guest.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
echo 'nameserver 10.0.2.3' >"$tree/etc/resolv.conf"
cat >"$tree/etc/ssh/sshd_config.d/crius-guest.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
# The tests start their own registries; Debian's on :5000 is not needed,
# nor are timers that would wake up mid-test.
chroot "$tree" systemctl enable systemd-networkd.service ssh.service >/dev/null 2>&1
chroot "$tree" systemctl set-default multi-user.target >/dev/null 2>&1
for unit in docker-registry.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-networkd-wait-online.service; do
    chroot "$tree" systemctl mask "$unit" >/dev/null 2>&1
done

ssh-keygen -q -t ed25519 -N '' -C crius-guest -f "$tmp/id_ed25519"
install -d -m 700 "$tree/root/.ssh"
install -m 600 "$tmp/id_ed25519.pub" "$tree/root/.ssh/authorized_keys"
echo "crius-guest $(cut -d' ' -f1,2 "$tree/etc/ssh/ssh_host_ed25519_key.pub")" >"$tmp/known_hosts"

kernel=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
[ -n "$kernel" ] || guest_die "no kernel in the guest's /boot"
version=${kernel##*/vmlinuz-}
[ -f "$tree/boot/initrd.img-$version" ] || guest_die "no initramfs for kernel $version"
echo "$CMDLINE" >"$tmp/cmdline"
# An initramfs of what mounting /dev/vda takes, not of every driver: it
# is unpacked and probed under emulation at each boot.
echo MODULES=list >"$tree/etc/initramfs-tools/conf.d/crius-guest"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$tree/etc/initramfs-tools/modules"
chroot "$tree" update-initramfs -u -k "$version" >/dev/null
cp "$kernel" "$tmp/vmlinuz"
cp "$tree/boot/initrd.img-$version" "$tmp/initrd.img"
# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
chroot "$tree" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/manifest"

chroot "$tree" apt-get clean
rm -rf "$tree"/var/lib/apt/lists/* "$tree/debootstrap"
guest_log "making the ext4 image ($DISK_SIZE, sparse) from $(du -sh "$tree" | cut -f1)"
mkfs.ext4 -q -F -L crius-guest -d "$tree" "$tmp/disk.raw" "$DISK_SIZE" >/dev/null
rm -rf "$tree" "$tmp/debootstrap.out"

mv -T "$tmp" "$image"
trap - EXIT
guest_log "image $key built in $((SECONDS - started)) s"
echo "$image" >&3
