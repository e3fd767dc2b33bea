#!/usr/bin/env bash
# End-to-end VM tests: the static ferrocore binary, the OS commit built with it
# (`ferrocore build`: its /usr/bin/ferrocore and the initramfs's /init), a disk
# image (`ferrocore build image`), then the QEMU suite of crates/vm/tests/e2e.rs,
# two VMs at a time (TCG: no KVM on the CI machine).
# Needs root (mmdebstrap), qemu-system-x86 qemu-utils openssh-client, and the
# package cache of build-compose.sh ($FERROCORE_BUILD_CACHE). The commit is
# reused while os/ and the binary are unchanged.
# Measured on the 2-core dev machine (busy): compose 284 s (packages cached),
# image 38-64 s, suite 306 s (5 tests, 2 VMs of 1 vCPU/512 MiB at a time;
# boot -> ssh 68-113 s per VM, about 45 s for a lone 2-vCPU VM); releases B
# and C 2 x 140 s; update scenarios 1025 s (3 tests, two at a time: up to
# 4 VMs at once).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v ssh >/dev/null || need+=(openssh-client)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ "$(id -u)" != 0 ]; then echo "e2e-vm: needs root (mmdebstrap --mode=root)"; exit 1; fi

t_start=$SECONDS
stamp() { echo "e2e-vm: $1: $((SECONDS - $2)) s"; }
cache=${FERROCORE_BUILD_CACHE:-/var/tmp/ferrocore-build}
work=${FERROCORE_E2E_DIR:-/var/tmp/ferrocore-e2e}
mkdir -p "$work"

# 1. The static binary (boot contract): /usr/bin/ferrocore and /init.
t=$SECONDS
fc=$(bash scripts/static-ferrocore.sh)
stamp "static ferrocore" "$t"

# 2. The OS commit, rebuilt only when os/ or the binary changed.
t=$SECONDS
repo=$work/repo
. scripts/lib/compose.sh
compose_cached "$fc" "$work" "$cache"
read -r version commit < <(sed -n 's/^version \([^ ]*\) commit \([0-9a-f]*\).*/\1 \2/p' "$work/compose.out")
stamp "compose" "$t"

# 2b. Releases B and C (ferrocore build of changed copies of os/) for the
#     update scenarios, in an archive repository with A.
t=$SECONDS
. scripts/lib/releases.sh
compose_releases "$fc" "$work" "$cache"
stamp "releases B and C" "$t"

# 3. The disk image (raw + qcow2, in the build directory).
t=$SECONDS
builddir=$(dirname "$(sed -n 's/^meta: //p' "$work/compose.out")")
"$fc" build image --build "$builddir" --repo "$repo" --platform qemu | tee "$work/image.out"
image=$(grep '\.qcow2$' "$work/image.out" | head -1)
[ -f "$image" ] || { echo "e2e-vm: no qcow2 in the output of build image"; exit 1; }
stamp "image build" "$t"

# 4. The VM suite, two VMs at a time.
t=$SECONDS
export FERROCORE_E2E_IMAGE=$image FERROCORE_E2E_VERSION=$version FERROCORE_E2E_COMMIT=$commit
export FERROCORE_E2E_BIN=$fc
export FERROCORE_E2E_WORKDIR=$work/tests FERROCORE_E2E_PROFILE=parallel
status=0
cargo test -q -p ferrocore-vm --test e2e -- --include-ignored --test-threads=2 --nocapture \
    2>&1 | tee "$work/e2e.out" || status=$?
grep -h 'ssh reachable in\|passed in' "$work/e2e.out" | sed 's/^/e2e-vm: /' || true
stamp "suite" "$t"

# 5. The Ignition disks stage on real block devices: RAID1 + LUKS + ext4/xfs
#    on two extra virtio disks (this host's kernel has no md/dm; the guest's has).
#    The host's loop-device disk tests also run in that guest, with md and dm.
#    Beside it (two VMs at once) a node provisioned by the initramfs at first
#    boot with the same kind of layout, mounted by units, checked after a reboot.
t=$SECONDS
disk_tests=$(cargo test -p ignition-engine --test disks --no-run 2>&1 |
    sed -n 's/^ *Executable tests\/disks\/main.rs (\(.*\))$/\1/p' | tail -1)
[ -x "$disk_tests" ] || { echo "e2e-vm: no ignition-engine disks test binary"; exit 1; }
export FERROCORE_E2E_IGNITION_DISK_TESTS=$(readlink -f "$disk_tests")
dstatus=0
cargo test -q -p ferrocore-vm --test disks -- --include-ignored --nocapture \
    2>&1 | tee "$work/disks.out" || dstatus=$?
grep -h '^figure: \|^disks: \|^first-boot-disks: ' "$work/disks.out" | sed 's/^/e2e-vm: /' || true
stamp "disks scenario" "$t"
[ "$status" != 0 ] || status=$dstatus

# 6. The update scenarios (issue #10): releases published on the host, nodes
#    updating, taking turns through FleetLock, rolling back on their own.
t=$SECONDS
export FERROCORE_E2E_RELEASES=$work/releases
ustatus=0
cargo test -q -p ferrocore-vm --test updates -- --include-ignored --test-threads=2 --nocapture \
    2>&1 | tee "$work/updates.out" || ustatus=$?
grep -h '^figure: ' "$work/updates.out" | sed 's/^/e2e-vm: /' || true
stamp "update scenarios" "$t"
[ "$status" != 0 ] || status=$ustatus
if [ "$status" != 0 ]; then
    for log in "$FERROCORE_E2E_WORKDIR"/*/*.console.log "$FERROCORE_E2E_WORKDIR"/updates-*/*/*.console.log; do
        [ -f "$log" ] || continue
        echo "=== $log (last 60 lines)"; tail -n 60 "$log"
    done
fi
stamp "total" "$t_start"
exit "$status"
