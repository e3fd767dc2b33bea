#!/usr/bin/env bash
# The main job, for now: build ferrocore, translate the example Butane config into an
# Ignition config exactly as `butane --pretty --strict` would, then validate it as
# `ignition-validate` would. Output: examples/node.ign.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ferrocore
bin=${CARGO_TARGET_DIR:-target}/release/ferrocore
"$bin" butane --pretty --strict --files-dir examples --output examples/node.ign examples/node.bu
"$bin" ignition validate examples/node.ign
echo "examples/node.ign: translated and valid"
cat examples/node.ign
