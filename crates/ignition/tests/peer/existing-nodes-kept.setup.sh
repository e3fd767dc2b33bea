#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/etc $R/var/lib/existing/inner
echo keep > $R/etc/keep-me
ln -s /etc/keep-me $R/etc/same-link
ln $R/etc/keep-me $R/etc/same-hard
