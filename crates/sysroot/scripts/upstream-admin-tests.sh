#!/bin/bash
# Runs upstream's `ostree admin` tests (Debian package ostree-tests) against
# ferrocore's sysroot implementation: `ostree admin ...` goes to
# `ferrocore admin`, every other `ostree` command to the real ostree (the
# store has its own test runs; FERROCORE_OSTREE_ALL=1 sends everything to ours).
# `admin status` is asked for upstream's layout explicitly.
#
# Usage: upstream-admin-tests.sh /path/to/ferrocore [TEST.sh...]
# Prints one line per test: name, exit code, ok count / plan.
set -uo pipefail
ferrocore=$(realpath "${1:?usage: $0 /path/to/ferrocore [TEST.sh...]}")
shift
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(test-admin-deploy-karg.sh test-admin-deploy-clean.sh
         test-admin-deploy-etcmerge-cornercases.sh test-admin-deploy-2.sh
         test-admin-deploy-none.sh test-admin-deploy-nomerge.sh
         test-admin-deploy-switch.sh test-admin-kargs.sh
         test-admin-pull-deploy-commit.sh test-admin-upgrade-unconfigured.sh
         test-no-initramfs.sh test-admin-instutil-set-kargs.sh)
fi
src=/usr/libexec/installed-tests/libostree
bin=$(mktemp -d /tmp/sysroot-peerbin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
cat > "$bin/ostree" <<WRAP
#!/bin/bash
if [ "\$1" = admin ]; then
  shift
  if [ "\$1" = status ]; then shift; exec "$ferrocore" admin status --format=ostree "\$@"; fi
  exec "$ferrocore" admin "\$@"
fi
exec /usr/bin/ostree "\$@"
WRAP
chmod +x "$bin/ostree"
# FERROCORE_OSTREE_ALL=1: every `ostree` command is ours (the multi-call binary
# under the name `ostree`), not only `admin`.
if [ "${FERROCORE_OSTREE_ALL:-0}" = 1 ]; then ln -sf "$ferrocore" "$bin/ostree"; fi
failed=0
for t in "${tests[@]}"; do
  d=$(mktemp -d /tmp/sysroot-itest.XXXXXX)
  log="$d.log"
  (cd "$d" && timeout 300 env PATH="$bin:/usr/bin:/bin:/usr/sbin:/sbin" \
      G_TEST_SRCDIR=$src G_TEST_BUILDDIR=$src "$src/$t" >"$log" 2>&1)
  rc=$?
  echo "$t rc=$rc ok=$(grep -c '^ok' "$log") plan=$(grep -m1 '^1\.\.' "$log" | cut -c4-) log=$log"
  [ $rc -eq 0 ] || failed=1
  # Deployments may carry the immutable attribute; clear it before removal.
  chattr -R -i "$d" 2>/dev/null; rm -rf "$d"
done
exit $failed
