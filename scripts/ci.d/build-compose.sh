#!/usr/bin/env bash
# End-to-end compose of the real OS (os/): mmdebstrap with the committed
# lockfile, post-processing, commit; then the same build again into a fresh
# repository, which must come entirely from the package cache (offline) and
# give the same commit checksum (reproducibility). The commits are checked
# with the real ostree CLI. Needs root, network on a cold cache, and about
# 1.5 GB in $FERROCORE_BUILD_CACHE (kept between runs so CI downloads once).
# The binary is the static one the image ships (scripts/static-ferrocore.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

for p in mmdebstrap ostree; do
    command -v "$p" >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap ostree
    }
done
if [ "$(id -u)" != 0 ]; then echo "build-compose: needs root (mmdebstrap --mode=root)"; exit 1; fi

cache=${FERROCORE_BUILD_CACHE:-/var/tmp/ferrocore-build}
# The first build is the one the VM suite (e2e-vm.sh) boots; the second goes to a
# scratch repository and must give the same commit.
shared=${FERROCORE_E2E_DIR:-/var/tmp/ferrocore-e2e}
work=$(mktemp -d /var/tmp/build-compose.XXXXXX)
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
fc=$(bash scripts/static-ferrocore.sh)
echo "static ferrocore: $((SECONDS - t0)) s, $(du -m "$fc" | cut -f1) MiB"
ref=$(sed -n 's/^ref = "\(.*\)"/\1/p' os/manifest.toml)
. scripts/lib/compose.sh

t0=$SECONDS
rm -f "$shared/compose.key" # always compose here: this script is the compose test
compose_cached "$fc" "$shared" "$cache" | tee "$work/first.out"
echo "build first: $((SECONDS - t0)) s"
t0=$SECONDS
"$fc" build --config os --cache "$cache" --repo "$work/repo-second" --out "$work/builds-second" \
    --ferrocore-binary "$fc" | tee "$work/second.out"
echo "build second: $((SECONDS - t0)) s"
grep -q "all packages from the cache" "$work/second.out" || { echo "FAIL: second build downloaded packages"; exit 1; }
c1=$(ostree --repo="$shared/repo" rev-parse "$ref")
c2=$(ostree --repo="$work/repo-second" rev-parse "$ref")
if [ "$c1" != "$c2" ]; then
    echo "FAIL: not reproducible: $c1 vs $c2; differing files:"
    ostree --repo="$work/repo-second" pull-local "$shared/repo" "$c1" >/dev/null
    ostree --repo="$work/repo-second" diff "$c2" "$c1" | head -40
    exit 1
fi
echo "reproducible: $c1"

repo=$shared/repo
ostree fsck --repo="$repo" | grep -v "^fsck objects"
[ "$(ostree show --repo="$repo" --print-metadata-key=ostree.bootable "$ref")" = true ]
kver=$(ostree show --repo="$repo" --print-metadata-key=ostree.linux "$ref" | tr -d "'")
ostree ls --repo="$repo" "$ref" "/usr/lib/modules/$kver/vmlinuz" "/usr/lib/modules/$kver/initramfs.img" \
    /usr/etc/os-release /usr/bin/ferrocore /usr/lib/tmpfiles.d/ferrocore-var.conf \
    /usr/lib/systemd/system/ferrocore-agent.service \
    /usr/etc/systemd/system/multi-user.target.wants/ferrocore-agent.service >/dev/null
[ "$(ostree ls --repo="$repo" "$ref" /var | wc -l)" = 1 ] || { echo "FAIL: /var not empty"; exit 1; }
if ostree ls --repo="$repo" "$ref" /etc >/dev/null 2>&1; then echo "FAIL: /etc in commit"; exit 1; fi
size=$(ostree ls --repo="$repo" -R "$ref" | awk '$1 ~ /^-/ {s += $4} END {printf "%.0f", s / 1048576}')
echo "kernel $kver, tree ${size} MiB, repo $(du -sm "$repo" | cut -f1) MiB"
echo "build-compose: ok"
