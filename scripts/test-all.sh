#!/usr/bin/env bash
# Runs every test of ferrocore on a fresh Debian 12 machine: installs what the tests
# need (the real upstream peers among them), checks formatting and lints, runs the
# workspace tests, then the scripts that drive upstream test suites against ours.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: the real peers we compare against (ostree and its
# upstream test suite, Ignition 2.14), etcd for the FleetLock etcd store, shadow-utils
# and systemctl that the Ignition engine drives, python3-gi for the Ignition peer
# recipe's D-Bus stand-in, openssl for test certificates, tzdata for update windows,
# mmdebstrap for composing the OS from Debian packages; the disk tools Ignition's disks
# stage drives (loop-device tests); GRUB, sgdisk and qemu-utils for the disk image;
# cpio and kmod to check the initramfs; QEMU and ssh for the VM suite.
apt_pkgs=(ostree ostree-tests gnome-desktop-testing attr gnupg ignition etcd-server etcd-client
          passwd systemd python3-gi e2fsprogs mount util-linux openssl tzdata mmdebstrap binutils
          gdisk xfsprogs dosfstools btrfs-progs mdadm cryptsetup-bin udev
          grub-pc-bin grub-common qemu-utils cpio kmod qemu-system-x86 openssh-client)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# Debian starts etcd as a service on install; tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then systemctl stop etcd 2>/dev/null || true; fi

echo "== fmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests"
cargo test --workspace
for s in scripts/ci.d/*.sh; do
    [ -e "$s" ] || continue
    echo "== $s"
    bash "$s"
done
