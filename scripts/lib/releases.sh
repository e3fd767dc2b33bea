# Sourced by scripts/ci.d/e2e-vm.sh. compose_releases FC WORK CACHE makes the
# releases the update scenarios publish, with `ferrocore build` like any
# release: copies of os/ with one change each, composed on top of release A
# (WORK/repo, made by compose_cached) in the archive repository WORK/releases/repo:
#   B: /etc/motd says "ferrocore release B" (an /etc change the 3-way merge
#      must carry to the node);
#   C: B plus an sshd drop-in with an unknown option, so ssh.service fails to
#      start: the node's health check fails and the node rolls back.
# Writes WORK/releases/releases.txt ("NAME VERSION COMMIT" per line). Reused
# while A's compose key is unchanged.
compose_releases() {
    local fc=$1 work=$2 cache=$3 rel=$2/releases key
    key=$(cat "$work/compose.key")
    if [ "$(cat "$rel/key" 2>/dev/null)" = "$key" ] && [ -s "$rel/releases.txt" ]; then
        echo "releases: cached ($key)"
        return 0
    fi
    rm -rf "$rel"
    mkdir -p "$rel"
    local ref a_line
    ref=$(sed -n 's/^ref = "\(.*\)"$/\1/p' os/manifest.toml)
    a_line=$(sed -n 's/^version \([^ ]*\) commit \([0-9a-f]*\).*/\1 \2/p' "$work/compose.out")
    "$fc" ostree --repo="$rel/repo" init --mode=archive
    "$fc" ostree --repo="$rel/repo" pull-local "$work/repo" "$ref"
    echo "A $a_line" >"$rel/releases.txt"

    cp -a os "$rel/os-B"
    printf 'ferrocore release B: updated by the agent\n' >"$rel/os-B/overlay/etc/motd"
    cp -a "$rel/os-B" "$rel/os-C"
    printf '# Release C is broken on purpose: sshd refuses this file.\nThisIsNotAnSshdOption yes\n' \
        >"$rel/os-C/overlay/etc/ssh/sshd_config.d/90-broken.conf"
    local name
    for name in B C; do
        "$fc" build --config "$rel/os-$name" --cache "$cache" --repo "$rel/repo" \
            --out "$rel/builds" --ferrocore-binary "$fc" | tee "$rel/compose-$name.out"
        echo "$name $(sed -n 's/^version \([^ ]*\) commit \([0-9a-f]*\).*/\1 \2/p' "$rel/compose-$name.out")" \
            >>"$rel/releases.txt"
    done
    cat "$rel/releases.txt"
    echo "$key" >"$rel/key"
}
