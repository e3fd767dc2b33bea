#!/usr/bin/env bash
# The main job: build ferrocore (static), compose the OS from Debian 12 packages
# into a commit, make a disk image of it, translate examples/node.bu into an
# Ignition config (plus this machine's throwaway ssh key for the user `core`),
# boot it in QEMU, then show `ferrocore admin status` and the container unit's
# output from inside over ssh, and power the VM off. Needs root (mmdebstrap),
# about 20 minutes the first time (package download, release build, TCG boot).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(mmdebstrap gdisk dosfstools e2fsprogs grub-pc-bin grub-common qemu-utils qemu-system-x86
      openssh-client cpio)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

work=${FERROCORE_QUICKSTART_DIR:-/var/tmp/ferrocore-quickstart}
mkdir -p "$work"
echo "== building the static ferrocore binary"
fc=$(bash scripts/static-ferrocore.sh)
echo "== composing the OS (cached after the first run)"
. scripts/lib/compose.sh
compose_cached "$fc" "$work" "${FERROCORE_BUILD_CACHE:-/var/tmp/ferrocore-build}" >"$work/compose.log"
builddir=$(dirname "$(sed -n 's/^meta: //p' "$work/compose.out")")
echo "== making the disk image"
image=$("$fc" build image --build "$builddir" --repo "$work/repo" --platform qemu | grep '\.qcow2$' | head -1)

echo "== translating examples/node.bu"
"$fc" butane --pretty --strict --files-dir examples --output examples/node.ign examples/node.bu
"$fc" ignition validate examples/node.ign
[ -f "$work/key" ] || ssh-keygen -q -t ed25519 -N '' -f "$work/key"
cp examples/node.ign "$work/node.ign"
cat >"$work/quickstart.bu" <<BU
variant: fcos
version: 1.6.0
ignition:
  config:
    merge:
      - local: node.ign
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - $(cat "$work/key.pub")
BU
"$fc" butane --strict --files-dir "$work" --output "$work/quickstart.ign" "$work/quickstart.bu"

port=${FERROCORE_QUICKSTART_SSH_PORT:-10022}
echo "== booting $image (console: $work/console.log; ssh on 127.0.0.1:$port)"
"$fc" vm run "$image" --ignition "$work/quickstart.ign" --ssh-port "$port" --timeout 1200 \
    2>"$work/console.log" &
vm=$!
trap 'kill $vm 2>/dev/null || true' EXIT
ssh_core() {
    ssh -q -i "$work/key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o BatchMode=yes -o ConnectTimeout=5 core@127.0.0.1 "$@" </dev/null
}
t0=$SECONDS
until ssh_core true 2>/dev/null; do
    kill -0 $vm 2>/dev/null || { echo "the VM stopped; see $work/console.log"; exit 1; }
    [ $((SECONDS - t0)) -lt 900 ] || { echo "no ssh after 900 s; see $work/console.log"; exit 1; }
    sleep 5
done
echo "== ssh reachable after $((SECONDS - t0)) s; inside the node:"
ssh_core sudo ferrocore admin status
ssh_core 'systemctl is-system-running --wait >/dev/null 2>&1; sudo journalctl -u hello.service -o cat | grep hello' || true
ssh_core sudo systemctl poweroff || true
wait $vm || true
