#!/bin/bash
# configs.sh DIR: writes DIR/good.ign (a file, a user with an SSH key from a
# fresh DIR/key, a unit printing what Ignition wrote to /dev/kmsg once
# multi-user.target is reached) and DIR/bad.ign (a file whose
# verification hash is wrong: Ignition must stop the boot).
set -euo pipefail
D=$1; mkdir -p "$D"
rm -f "$D/key" "$D/key.pub"; ssh-keygen -q -t ed25519 -N '' -f "$D/key" -C test@ferrocore
python3 - "$D" <<'PY'
import json, sys, urllib.parse
d = sys.argv[1]
key = open(f"{d}/key.pub").read().strip()
check = """[Unit]
Description=print what Ignition wrote, once multi-user is reached
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "<5>IGN-CHECK multi-user reached; file=$(cat /etc/ferrocore-test) user=$(getent passwd core) groups=$(id -nG core) keys=$(cat /var/home/core/.ssh/authorized_keys.d/ignition | wc -l) stamp=$(ls /boot/ignition.firstboot 2>&1)" > /dev/kmsg'
[Install]
WantedBy=multi-user.target
"""
good = {
    "ignition": {"version": "3.4.0"},
    "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [key], "groups": ["sudo"]}]},
    "storage": {
        "files": [
            {"path": "/etc/ferrocore-test", "mode": 420,
             "contents": {"source": "data:,hello-from-ignition"}},
            {"path": "/etc/systemd/system/ign-check.service", "mode": 420,
             "contents": {"source": "data:," + urllib.parse.quote(check)}},
        ],
        "links": [{"path": "/etc/systemd/system/multi-user.target.wants/ign-check.service",
                   "target": "/etc/systemd/system/ign-check.service"}],
    },
}
bad = {
    "ignition": {"version": "3.4.0"},
    "storage": {"files": [{"path": "/etc/ferrocore-test", "mode": 420, "contents": {
        "source": "data:,hello-from-ignition",
        "verification": {"hash": "sha512-" + "0" * 128}}}]},
}
json.dump(good, open(f"{d}/good.ign", "w"), indent=1)
json.dump(bad, open(f"{d}/bad.ign", "w"), indent=1)
PY
