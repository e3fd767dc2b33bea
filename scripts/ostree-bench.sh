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
#        REPS=3                     repetitions per operation
#        SRC="..."                  source directories copied into the test tree
#        PORT=18091                 python3 -m http.server port for the pull test
# Targets from the issue: archive commit <= 0.25x, bare-user commit <= 0.5x,
# re-commit after 1% change <= 0.1x, checkout -U <= 0.7x, fsck <= 0.5x,
# full HTTP pull <= 0.4x; peak RSS <= 64 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

REAL=${REAL:-/usr/bin/ostree}
DATA=${DATA:-/tmp/ostree-bench}
REPS=${REPS:-3}
PORT=${PORT:-18091}
SRC=${SRC:-"/usr/lib/python3 /usr/lib/python3.11 /usr/lib/git-core /usr/lib/grub /usr/share/doc /usr/share/man /usr/share/perl /usr/share/vim /usr/share/i18n"}
REF=bench/x86_64

case "$DATA" in /tmp/*) ;; *) echo "DATA must be under /tmp" >&2; exit 1;; esac
if [ -z "${OURS:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build -q --release -p ferrocore
    OURS=$CARGO_TARGET_DIR/release/ferrocore
fi
rm -rf "$DATA"
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

(cd "$DATA" && exec /usr/bin/python3 -m http.server "$PORT" --bind 127.0.0.1 > "$DATA/log/httpd.log" 2>&1) &
HTTPD_PID=$!
trap 'kill "$HTTPD_PID" 2>/dev/null || true' EXIT

for i in $(seq 1 "$REPS"); do
    for impl in real ours; do
        O=${BIN[$impl]}; D=$DATA/$impl.$i
        echo "== $impl rep $i"
        run_timed "$impl" commit-archive "$i" bash -c "$O --repo=$D.arch init --mode=archive && $O --repo=$D.arch commit -b $REF -s first --tree=dir=$TREE"
        run_timed "$impl" commit-bare-user "$i" bash -c "$O --repo=$D.bu init --mode=bare-user && $O --repo=$D.bu commit -b $REF -s first --tree=dir=$TREE"
        run_timed "$impl" checkout-U "$i" "$O" --repo="$D.bu" checkout -U "$REF" "$D.co"
        run_timed "$impl" fsck-archive "$i" "$O" --repo="$D.arch" fsck
        run_timed "$impl" fsck-bare-user "$i" "$O" --repo="$D.bu" fsck
        "$O" --repo="$D.pl" init --mode=bare-user
        run_timed "$impl" pull-local "$i" "$O" --repo="$D.pl" pull-local "$D.arch" "$REF"
        "$O" --repo="$D.arch" summary -u || true
        "$O" --repo="$D.hp" init --mode=bare-user
        "$O" --repo="$D.hp" remote add --no-gpg-verify origin "http://127.0.0.1:$PORT/$impl.$i.arch"
        run_timed "$impl" http-pull-full "$i" "$O" --repo="$D.hp" pull origin "$REF"
        run_timed "$impl" commit2-archive "$i" "$O" --repo="$D.arch" commit -b "$REF" -s second --tree=dir="$TREE2"
        run_timed "$impl" commit2-bare-user "$i" "$O" --repo="$D.bu" commit -b "$REF" -s second --tree=dir="$TREE2"
        "$O" --repo="$D.arch" summary -u || true
        run_timed "$impl" http-pull-incremental "$i" "$O" --repo="$D.hp" pull origin "$REF"
        # Keep disk usage bounded: the next rep starts from scratch.
        rm -rf "$D.co"
    done
done

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
