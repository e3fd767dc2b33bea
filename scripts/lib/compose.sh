# Sourced by scripts/ci.d/*.sh. compose_cached FC WORK CACHE composes os/ with the
# static binary FC into WORK/repo (build records in WORK/builds, output in
# WORK/compose.out) unless a previous run composed the same os/ with the same
# binary; so the compose check and the VM suite share one compose per CI run.
compose_cached() {
    local fc=$1 work=$2 cache=$3 key
    mkdir -p "$work"
    key=$( (sha256sum <"$fc"; tar -C os -c --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner .) |
        sha256sum | cut -c1-16)
    if [ "$(cat "$work/compose.key" 2>/dev/null)" = "$key" ] && [ -d "$work/repo" ]; then
        echo "compose: cached ($key)"
        return 0
    fi
    rm -rf "$work/repo" "$work/builds" "$work/compose.key"
    "$fc" build --config os --cache "$cache" --repo "$work/repo" --out "$work/builds" \
        --ferrocore-binary "$fc" | tee "$work/compose.out"
    echo "$key" >"$work/compose.key"
}
