#!/usr/bin/env bash
# End-to-end compose of the real OS (os/): mmdebstrap with the committed
# lockfile, post-processing, commit; then the same build again into a fresh
# repository, which must come entirely from the package cache (offline) and
# give the same commit checksum (reproducibility). The commits are checked
# with the real ostree CLI. Needs root, network on a cold cache, and about
# 1.5 GB in $FERROCORE_BUILD_CACHE (kept between runs so CI downloads once).
# Measured on the 2-core dev machine (busy): cold 329 s, cached 407 s, both
# dominated by the commit of the ~740 MiB tree with a debug build.
set -euo pipefail
cd "$(dirname "$0")/../.."

for p in mmdebstrap ostree; do
    command -v "$p" >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap ostree
    }
done
if [ "$(id -u)" != 0 ]; then echo "build-compose: needs root (mmdebstrap --mode=root)"; exit 1; fi

target=${CARGO_TARGET_DIR:-target}
cargo build -q -p ferrocore
fc=$target/debug/ferrocore
cache=${FERROCORE_BUILD_CACHE:-/var/tmp/ferrocore-build}
work=$(mktemp -d /var/tmp/build-compose.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The debug binary carries ~150 MB of debug info; the OS gets a stripped copy.
strip -o "$work/ferrocore" "$fc"
ref=$(sed -n 's/^ref = "\(.*\)"/\1/p' os/manifest.toml)

run() { # NAME: build into $work/repo-NAME, print the commit, time it
    local t0=$SECONDS
    "$fc" build --config os --cache "$cache" --repo "$work/repo-$1" --out "$work/builds-$1" \
        --ferrocore-binary "$work/ferrocore" | tee "$work/$1.out"
    echo "build $1: $((SECONDS - t0)) s"
}
run first
run second
grep -q "all packages from the cache" "$work/second.out" || { echo "FAIL: second build downloaded packages"; exit 1; }
c1=$(ostree --repo="$work/repo-first" rev-parse "$ref")
c2=$(ostree --repo="$work/repo-second" rev-parse "$ref")
if [ "$c1" != "$c2" ]; then
    echo "FAIL: not reproducible: $c1 vs $c2; differing files:"
    ostree --repo="$work/repo-first" pull-local "$work/repo-second" "$c2" >/dev/null
    ostree --repo="$work/repo-first" diff "$c1" "$c2" | head -40
    exit 1
fi
echo "reproducible: $c1"

repo=$work/repo-first
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
