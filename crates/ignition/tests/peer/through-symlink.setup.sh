#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/sysroot-var/home $R/realdir
ln -s sysroot-var $R/var
ln -s /realdir $R/abs
