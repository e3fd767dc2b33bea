#!/bin/sh
# Prepares the target root ($1) before both implementations run.
set -eu
R=$1
mkdir -p $R/home/legacy $R/home/gone
printf 'legacy:x:1100:1100::/home/legacy:/bin/sh\ngone:x:1101:1101::/home/gone:/bin/sh\n' >> $R/etc/passwd
printf 'legacy:x:1100:\ngone:x:1101:\noldgroup:x:1102:\n' >> $R/etc/group
printf 'legacy:*:19000:0:99999:7:::\ngone:*:19000:0:99999:7:::\n' >> $R/etc/shadow
printf 'legacy:!::\ngone:!::\noldgroup:!::\n' >> $R/etc/gshadow
chown 1100:1100 $R/home/legacy
chown 1101:1101 $R/home/gone
