#!/usr/bin/env bash
# Builds the static ferrocore binary that the OS image ships as /usr/bin/ferrocore
# and as its initramfs's /init (glibc with +crt-static: no musl toolchain needed),
# with the `image` profile (Cargo.toml), and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build -q --profile image -p ferrocore --target x86_64-unknown-linux-gnu >&2
echo "$target/x86_64-unknown-linux-gnu/image/ferrocore"
