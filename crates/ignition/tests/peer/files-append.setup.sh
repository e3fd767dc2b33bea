#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/etc
printf 'orig=0\n' > $R/etc/existing.conf
chmod 644 $R/etc/existing.conf
