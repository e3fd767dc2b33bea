#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/etc/systemd/system
ln -s /dev/null $R/etc/systemd/system/unmask-me.service
