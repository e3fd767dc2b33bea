#!/bin/bash
# mkdisk.sh FERROCORE REPO REF OUT_DIR
# Quick test disk for a direct-kernel boot of ferrocore's initramfs: a GPT
# with p3 `boot` (ext4, the sysroot's boot/ + ignition.firstboot) and p4
# `root` (ext4, the sysroot: ostree/repo + one deployment), made with
# mkfs.ext4 -d (no loop devices, no mounts). Writes OUT/disk.img,
# OUT/vmlinuz, OUT/initramfs.img and OUT/cmdline.
set -euo pipefail
F=$1; REPO=$2; REF=$3; OUT=$4
W=$OUT/work; S=$W/sysroot; B=$W/bootfs
unpin() { chattr -i "$S"/ostree/deploy/*/deploy/*.[0-9]* 2>/dev/null || true; }  # deployments are immutable
unpin; rm -rf "$W"; mkdir -p "$W" "$B"
"$F" admin init-fs "$S" >/dev/null
"$F" ostree --repo="$S/ostree/repo" pull-local "$REPO" "$REF" >/dev/null
"$F" admin --sysroot "$S" os-init ferrocore >/dev/null
"$F" admin --sysroot "$S" deploy --os ferrocore --karg-none \
  --karg root=LABEL=root --karg rw --karg console=ttyS0,115200n8 \
  --karg ignition.platform.id=qemu "$REF" >/dev/null
dep=$(ls -d "$S"/ostree/deploy/ferrocore/deploy/*.0)
: > "$dep/etc/machine-id"                        # first boot: systemd makes one
printf 'LABEL=boot /boot ext4 defaults 1 2\n' > "$dep/etc/fstab"
# the boot partition gets the sysroot's boot/ contents; boot/ stays as mount point
(shopt -s dotglob; mv "$S"/boot/* "$B"/)
: > "$B/ignition.firstboot"
entry=$(ls "$B"/loader/entries/*.conf | head -1)
opts=$(sed -n 's/^options //p' "$entry")
linux=$(sed -n 's/^linux //p' "$entry"); initrd=$(sed -n 's/^initrd //p' "$entry")
linux=${linux#/boot}; initrd=${initrd#/boot}
cp "$B$linux" "$OUT/vmlinuz"; cp "$B$initrd" "$OUT/initramfs.img"
echo "$opts" > "$OUT/cmdline"
IMG=$OUT/disk.img; rm -f "$IMG"; truncate -s 4G "$IMG"
sgdisk -o -n1:2048:+1M -t1:EF02 -c1:BIOS-BOOT -n2:0:+127M -t2:EF00 -c2:EFI-SYSTEM \
  -n3:0:+384M -t3:8300 -c3:boot -n4:0:0 -t4:8300 -c4:root "$IMG" >/dev/null
first() { sgdisk -i "$1" "$IMG" | awk '/First sector/ {print $3}'; }
last() { sgdisk -i "$1" "$IMG" | awk '/Last sector/ {print $3}'; }
for p in 3:boot:"$B" 4:root:"$S"; do
  IFS=: read -r n label dir <<<"$p"
  mkfs.ext4 -q -F -L "$label" -E offset=$(( $(first "$n") * 512 )) -d "$dir" "$IMG" \
    "$(( ($(last "$n") - $(first "$n") + 1) / 2 ))k"
done
unpin; rm -rf "$W"
echo "disk $IMG; kernel args: $opts"
