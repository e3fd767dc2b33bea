#!/bin/bash
# boot.sh DIR CONFIG.ign NAME [STOP_MARK] (env TIMEOUT, default 300 s): direct kernel boot of DIR/{vmlinuz,initramfs.img,disk.img}
# (disk used through a qcow2 overlay, so the base disk stays fresh), serial
# console time-stamped into DIR/log-NAME.txt by vmrun.py.
set -euo pipefail
D=$1; IGN=$2; NAME=$3; STOP=${4:-multiuser}
rm -f "$D/$NAME.qcow2"
qemu-img create -q -f qcow2 -F raw -b "$D/disk.img" "$D/$NAME.qcow2"
exec python3 "$(dirname "$0")/../../../../shared/reference/boot-scripts/vmrun.py" --name "$NAME" --log "$D/log-$NAME.txt" --timeout "${TIMEOUT:-300}" \
  --stop-on "$STOP" \
  --mark 'kernel=Linux version' --mark 'init=ferrocore-init: start' \
  --mark 'rootfound=ferrocore-init: root ' --mark 'prepared=ferrocore-init: prepare-root' \
  --mark 'ignition=ferrocore-init: ignition done' --mark 'ignfail=ignition: ' \
  --mark 'switchroot=ferrocore-init: switch-root' \
  --mark 'systemd=systemd\[1\]: systemd 25|systemd 252 running' \
  --mark 'multiuser=Reached target.*[Mm]ulti-[Uu]ser' --mark 'igncheck=IGN-CHECK multi-user reached' \
  --mark 'panic=Kernel panic|ferrocore-init: error' \
  -- qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
     -nodefaults -no-user-config -display none -no-reboot -serial stdio -monitor none \
     -drive file="$D/$NAME.qcow2",if=virtio,format=qcow2 \
     -kernel "$D/vmlinuz" -initrd "$D/initramfs.img" \
     -append "$(cat "$D/cmdline") ignition.firstboot" \
     -fw_cfg name=opt/com.coreos/config,file="$IGN"
