#!/usr/bin/env bash
# Upstream ostree's own test files against our `ostree` (store commands), with the
# ones that pass today as a regression gate; then upstream's `ostree admin` tests
# against our sysroot. Uses the debug binary `cargo test` already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q -p ferrocore
OSTREE_BIN=$target/debug/ferrocore bash scripts/ostree-upstream-tests.sh
# The admin tests that pass in full today (see crates/sysroot/scripts for the rest).
bash crates/sysroot/scripts/upstream-admin-tests.sh "$target/debug/ferrocore" \
    test-admin-deploy-karg.sh test-admin-deploy-clean.sh \
    test-admin-deploy-etcmerge-cornercases.sh test-admin-deploy-2.sh test-admin-deploy-none.sh \
    test-admin-deploy-nomerge.sh test-admin-deploy-switch.sh test-admin-kargs.sh \
    test-admin-pull-deploy-commit.sh test-admin-upgrade-unconfigured.sh \
    test-no-initramfs.sh test-admin-instutil-set-kargs.sh
# The same tests with every `ostree` command ours, not only `admin` (all but
# test-no-initramfs.sh pass that way today).
FERROCORE_OSTREE_ALL=1 bash crates/sysroot/scripts/upstream-admin-tests.sh "$target/debug/ferrocore" \
    test-admin-deploy-karg.sh test-admin-deploy-clean.sh \
    test-admin-deploy-etcmerge-cornercases.sh test-admin-deploy-2.sh test-admin-deploy-none.sh \
    test-admin-deploy-nomerge.sh test-admin-deploy-switch.sh test-admin-kargs.sh \
    test-admin-pull-deploy-commit.sh test-admin-upgrade-unconfigured.sh \
    test-admin-instutil-set-kargs.sh
