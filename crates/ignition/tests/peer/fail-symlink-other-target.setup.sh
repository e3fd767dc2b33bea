#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/etc
ln -s /old $R/etc/link
