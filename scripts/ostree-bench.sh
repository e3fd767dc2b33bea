#!/usr/bin/env bash
# ostree-bench.sh - real ostree vs ferrocore's ostree on the same tree, in one run.
# Derived from ../shared/peers/ostree-baseline.sh (same tree, same operations);
# each operation runs for both implementations back to back, REPS times, and
# the table shows median wall time, CPU, peak RSS and the ratio ours/real.
#
# Usage: scripts/ostree-bench.sh
#   env: OURS=/path/to/ferrocore   (default: cargo build --release -p ferrocore)
#        REAL=/usr/bin/ostree
#        DATA=/tmp/ostree-bench     scratch dir (wiped at start; must be under /tmp)
#        FS=fresh|dir               fresh (default when root): DATA is a new
#                                   ext4 filesystem (with journal, mkfs
#                                   defaults) in a sparse file on a loop
#                                   device; dir: a plain directory
#        REPS=3                     repetitions per operation
#        SRC="..."                  source directories copied into the test tree
#        PORT=18091                 HTTP server port for the pull tests
#        HTTPD=nginx|python         server for the pull tests (default: nginx if
#                                   installed, else python3 -m http.server)
#        OPS="..."                  operations to time (default: all), e.g.
#                                   OPS="commit-archive commit-bare-user"; an
#                                   unselected operation that a selected one
#                                   needs (the first commits, the full pull)
#                                   still runs, untimed
# Targets from the issue: archive commit <= 0.25x, bare-user commit <= 0.5x,
# re-commit after 1% change <= 0.1x, checkout -U <= 0.7x, fsck <= 0.5x,
# full HTTP pull <= 0.4x; peak RSS <= 64 MB.
#
# Fairness: the two implementations alternate which goes first in each rep,
# and the filesystem is synced before every timed operation. The data lives
# on a fresh ext4 by default: on ext4 without a journal (this machine's /)
# the inode allocator skips inodes deleted in the last 5 s (5 min while
# their inode-table block is dirty) one by one, so after deleting a previous
# run's 300k files, creating files cost 2-3x the system time for minutes,
# depending on which block groups each implementation's directories landed
# in; a fresh journaled filesystem is also what a real system looks like. The pull server is nginx (keep-alive, sendfile)
# when installed: `python3 -m http.server` (the baseline's) answers HTTP/1.0,
# one connection per request, and its CPU time per pull exceeds ours, so it
# times the server more than the client. HTTPD=python keeps the baseline's.
set -euo pipefail
cd "$(dirname "$0")/.."

REAL=${REAL:-/usr/bin/ostree}
DATA=${DATA:-/tmp/ostree-bench}
REPS=${REPS:-3}
PORT=${PORT:-18091}
if [ -z "${HTTPD:-}" ]; then
    if [ -x /usr/sbin/nginx ]; then HTTPD=nginx; else HTTPD=python; fi
fi
if [ -z "${FS:-}" ]; then
    if [ "$(id -u)" = 0 ]; then FS=fresh; else FS=dir; fi
fi
case "$FS" in fresh|dir) ;; *) echo "FS must be fresh or dir" >&2; exit 1;; esac
case "$HTTPD" in nginx|python) ;; *) echo "HTTPD must be nginx or python" >&2; exit 1;; esac
SRC=${SRC:-"/usr/lib/python3 /usr/lib/python3.11 /usr/lib/git-core /usr/lib/grub /usr/share/doc /usr/share/man /usr/share/perl /usr/share/vim /usr/share/i18n"}
REF=bench/x86_64
ALL_OPS="commit-archive commit-bare-user checkout-U fsck-archive fsck-bare-user pull-local http-pull-full commit2-archive commit2-bare-user http-pull-incremental"
OPS=${OPS:-$ALL_OPS}
for op in $OPS; do
    case " $ALL_OPS " in *" $op "*) ;; *) echo "unknown operation in OPS: $op (known: $ALL_OPS)" >&2; exit 1;; esac
done
# wanted OP...: true if any OP is selected.
wanted() { local o; for o in "$@"; do case " $OPS " in *" $o "*) return 0;; esac; done; return 1; }
# Operations that others build on run (untimed) when something selected needs them.
NEED_ARCH="commit-archive fsck-archive pull-local http-pull-full commit2-archive http-pull-incremental"
NEED_BU="commit-bare-user checkout-U fsck-bare-user commit2-bare-user"
NEED_HP="http-pull-full http-pull-incremental"

case "$DATA" in /tmp/*) ;; *) echo "DATA must be under /tmp" >&2; exit 1;; esac
if [ -z "${OURS:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build -q --release -p ferrocore
    OURS=$CARGO_TARGET_DIR/release/ferrocore
fi
if mountpoint -q "$DATA"; then
    dev=$(findmnt -n -o SOURCE "$DATA")
    umount "$DATA"
    case "$dev" in /dev/loop*) losetup -d "$dev" 2>/dev/null || true;; esac
fi
rm -rf "$DATA" "$DATA.img"
mkdir -p "$DATA"
if [ "$FS" = fresh ]; then
    # Direct I/O to the backing file: without it every byte written is
    # copied once more into the backing file's page cache, CPU time that
    # a real disk does not cost and that both implementations would pay.
    truncate -s 24G "$DATA.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$DATA.img"
    dev=$(losetup --direct-io=on -f --show "$DATA.img")
    mount "$dev" "$DATA"
fi
mkdir -p "$DATA/log" "$DATA/bin"
# Our binary must run under the name `ostree` (multi-call personality).
ln -s "$(readlink -f "$OURS")" "$DATA/bin/ostree"
declare -A BIN=([real]=$REAL [ours]=$DATA/bin/ostree)
RES="$DATA/results.tsv"
printf 'impl\top\trep\twall_s\tmaxrss_kb\tcpu_s\tload1\n' > "$RES"

# run_timed IMPL OP REP CMD...: CMD under /usr/bin/time -v; a failure is
# recorded as "fail" (ours may not implement an operation yet).
run_timed() {
    local impl=$1 op=$2 rep=$3; shift 3
    local load1 tf="$DATA/log/$impl.$op.$rep.time"
    sync
    load1=$(cut -d' ' -f1 /proc/loadavg)
    if ! /usr/bin/time -v -o "$tf" "$@" > "$DATA/log/$impl.$op.$rep.out" 2>&1; then
        printf '%s\t%s\t%s\tfail\t0\t0\t%s\n' "$impl" "$op" "$rep" "$load1" >> "$RES"
        printf '  %-5s %-24s rep %s: FAILED (see %s)\n' "$impl" "$op" "$rep" "$DATA/log/$impl.$op.$rep.out"
        return 0
    fi
    local wall rss cpu
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.2f", s }' "$tf")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tf")
    cpu=$(awk -F': ' '/User time \(seconds\)/ {u=$2} /System time \(seconds\)/ {s=$2} END {printf "%.2f", u+s}' "$tf")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$impl" "$op" "$rep" "$wall" "$rss" "$cpu" "$load1" >> "$RES"
    printf '  %-5s %-24s rep %s: %7ss  %7s KB  cpu %6ss  load %s\n' "$impl" "$op" "$rep" "$wall" "$rss" "$cpu" "$load1"
}

# run_op IMPL OP REP CMD...: timed if OP is selected, else run untimed (a
# prerequisite of a selected operation; the caller decides that).
run_op() {
    if wanted "$2"; then
        run_timed "$@"
    else
        shift 3
        "$@" > /dev/null 2>&1 || true
    fi
}

echo "== building test tree from: $SRC"
TREE="$DATA/tree"
mkdir -p "$TREE"
for s in $SRC; do
    [ -e "$s" ] || continue
    mkdir -p "$TREE/$(dirname "$s")"
    cp -a "$s" "$TREE/$s"
done
NFILES=$(find "$TREE" -type f | wc -l)
echo "tree: $(du -sb "$TREE" | cut -f1) bytes, $NFILES files, $(find "$TREE" -type l | wc -l) symlinks"
TREE2="$DATA/tree2"
cp -al "$TREE" "$TREE2"
NCHG=$(( NFILES / 100 ))
find "$TREE2" -type f | sort | awk -v n="$NFILES" -v k="$NCHG" 'NR % int(n/k) == 0 && c < k { print; c++ }' |
while IFS= read -r f; do
    cp -p "$f" "$f.tmp.$$" && echo "bench-change" >> "$f.tmp.$$" && mv "$f.tmp.$$" "$f"
done

if [ "$HTTPD" = nginx ]; then
    # One worker per core, as a packaged nginx runs; root so that it reads
    # whatever modes the repositories were written with.
    mkdir -p "$DATA/nginx"
    cat > "$DATA/nginx/nginx.conf" <<CONF
user root;
worker_processes auto;
daemon off;
pid $DATA/nginx/nginx.pid;
error_log $DATA/log/httpd.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path $DATA/nginx; proxy_temp_path $DATA/nginx;
    fastcgi_temp_path $DATA/nginx; uwsgi_temp_path $DATA/nginx; scgi_temp_path $DATA/nginx;
    server { listen 127.0.0.1:$PORT; root $DATA; }
}
CONF
    /usr/sbin/nginx -p "$DATA/nginx" -c "$DATA/nginx/nginx.conf" &
else
    (cd "$DATA" && exec /usr/bin/python3 -m http.server "$PORT" --bind 127.0.0.1 > "$DATA/log/httpd.log" 2>&1) &
fi
HTTPD_PID=$!
trap 'kill "$HTTPD_PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.1
done
echo "pull server: $HTTPD on 127.0.0.1:$PORT"

for i in $(seq 1 "$REPS"); do
    order="real ours"
    [ $((i % 2)) -eq 0 ] && order="ours real"
    for impl in $order; do
        O=${BIN[$impl]}; D=$DATA/$impl.$i
        echo "== $impl rep $i"
        wanted $NEED_ARCH && run_op "$impl" commit-archive "$i" bash -c "$O --repo=$D.arch init --mode=archive && $O --repo=$D.arch commit -b $REF -s first --tree=dir=$TREE"
        wanted $NEED_BU && run_op "$impl" commit-bare-user "$i" bash -c "$O --repo=$D.bu init --mode=bare-user && $O --repo=$D.bu commit -b $REF -s first --tree=dir=$TREE"
        wanted checkout-U && run_timed "$impl" checkout-U "$i" "$O" --repo="$D.bu" checkout -U "$REF" "$D.co"
        wanted fsck-archive && run_timed "$impl" fsck-archive "$i" "$O" --repo="$D.arch" fsck
        wanted fsck-bare-user && run_timed "$impl" fsck-bare-user "$i" "$O" --repo="$D.bu" fsck
        if wanted pull-local; then
            "$O" --repo="$D.pl" init --mode=bare-user
            run_timed "$impl" pull-local "$i" "$O" --repo="$D.pl" pull-local "$D.arch" "$REF"
        fi
        if wanted $NEED_HP; then
            "$O" --repo="$D.arch" summary -u || true
            "$O" --repo="$D.hp" init --mode=bare-user
            "$O" --repo="$D.hp" remote add --no-gpg-verify origin "http://127.0.0.1:$PORT/$impl.$i.arch"
            run_op "$impl" http-pull-full "$i" "$O" --repo="$D.hp" pull origin "$REF"
        fi
        wanted commit2-archive http-pull-incremental && run_op "$impl" commit2-archive "$i" "$O" --repo="$D.arch" commit -b "$REF" -s second --tree=dir="$TREE2"
        wanted commit2-bare-user && run_timed "$impl" commit2-bare-user "$i" "$O" --repo="$D.bu" commit -b "$REF" -s second --tree=dir="$TREE2"
        if wanted http-pull-incremental; then
            "$O" --repo="$D.arch" summary -u || true
            run_timed "$impl" http-pull-incremental "$i" "$O" --repo="$D.hp" pull origin "$REF"
        fi
    done
done
# Checkouts are deleted only now: on a filesystem without a journal, ext4
# skips recently deleted inodes when allocating, so deleting 35k files
# mid-run would slow down whichever implementation runs next.
rm -rf "$DATA"/*.co

echo "== medians over $REPS reps (wall s / cpu s / peak RSS MB; ratio = ours/real wall)"
awk -F'\t' 'NR>1 { k=$2; if (!(k in seen)) { seen[k]=1; order[++n]=k }
                   if ($4=="fail") { fail[$1,k]=1; next }
                   w[$1,k]=w[$1,k] " " $4; c[$1,k]=c[$1,k] " " $6; r[$1,k]=r[$1,k] " " $5 }
  function med(s,   a, m, i, j, t) { m=split(s, a, " "); if (m==0) return -1
      for(i=1;i<=m;i++) for(j=i+1;j<=m;j++) if (a[j]+0 < a[i]+0) { t=a[i]; a[i]=a[j]; a[j]=t }
      return (m%2) ? a[(m+1)/2] : (a[m/2]+a[m/2+1])/2 }
  function cell(impl, k,   x) { if ((impl,k) in fail) return sprintf("%-22s", "failed/not implemented")
      return sprintf("%6.2f %6.2f %7.1f", med(w[impl,k]), med(c[impl,k]), med(r[impl,k])/1024) }
  END { printf "| %-22s | %-22s | %-22s | %6s |\n", "operation", "real", "ours", "ratio"
        for (i=1;i<=n;i++) { k=order[i]; rw=med(w["real",k]); ow=med(w["ours",k])
            ratio = ((("ours",k) in fail) || rw <= 0 || ow < 0) ? "-" : sprintf("%.2fx", ow/rw)
            printf "| %-22s | %-22s | %-22s | %6s |\n", k, cell("real",k), cell("ours",k), ratio } }' "$RES" | tee "$DATA/table.md"
