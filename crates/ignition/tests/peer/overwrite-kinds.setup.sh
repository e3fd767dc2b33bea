#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/etc/was-dir/sub
echo x > $R/etc/was-dir/sub/f
echo old > $R/etc/was-file
echo y > $R/etc/was-file-link
ln -s /nowhere $R/etc/was-link-dir
