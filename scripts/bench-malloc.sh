#!/usr/bin/env bash
# libkmalloc against glibc, mimalloc and jemalloc, all through LD_PRELOAD
# (glibc: no preload), on the classic workloads of
# crates/kmem-malloc/bench/mallocbench.c, and the instructions of a
# malloc(64)+free pair.
#
#   scripts/bench-malloc.sh [--quick] [--runs R] [--threads T] [--instr-only]
#
# For each workload and allocator: the median wall time of R runs (default 3)
# and the peak RSS (/usr/bin/time's maximum resident set size) of the median
# run; then the ratios kmem/other (below 1.00 kmem is faster), each the
# median over the rounds of kmem's time over the other's. The allocators'
# runs are interleaved (round 1 runs each once, then round 2; each round
# starts with the next allocator). mimalloc and
# jemalloc come from Debian's libmimalloc2.0 and libjemalloc2 packages
# (apt-get install -y libmimalloc2.0 libjemalloc2); a missing one is skipped.
#
# Instructions per pair: `mallocbench pair N` and `pair 2N` under
#   valgrind --tool=callgrind --toggle-collect=bench_pair
# (the C loop alone, through the PLT into each allocator), difference / N.
# Valgrind implements no rseq, so glibc registers none; KMEM_EMULATE_RSEQ=1
# makes libkmalloc run its rseq code paths over an unregistered area all the
# same (correct for this one-thread loop only; see
# kmem_hosted::platform::emulate_rseq_for_instruction_counts), so the count
# is of the paths a real run takes. The "adjusted" figure would subtract a
# sched_getcpu fallback (HostedPlatform::fold_cpu) if any were left, adding
# one instruction per call, as scripts/instr-count.sh does.
#
# The library is built into $CARGO_TARGET_DIR (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
THREADS=2
QUICK=0
INSTR_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; RUNS=1 ;;
        --runs) RUNS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --instr-only) INSTR_ONLY=1 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release -q -p kmem-malloc
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
KMEM=$(cd "$TARGET/release" && pwd)/libkmalloc.so
BIN=$TARGET/release/mallocbench
cc -O2 -pthread -o "$BIN" crates/kmem-malloc/bench/mallocbench.c

LIBDIR=/usr/lib/x86_64-linux-gnu
declare -A LIB=([kmem]=$KMEM [glibc]="")
NAMES=(kmem glibc)
for a in mimalloc:libmimalloc.so.2 jemalloc:libjemalloc.so.2; do
    name=${a%%:*}; so=$LIBDIR/${a#*:}
    if [ -e "$so" ]; then LIB[$name]=$so; NAMES+=("$name"); else echo "($name not installed: skipped)"; fi
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# N for each workload (quick: a tenth).
declare -A N=([pair]=20000000 [larson]=4000000 [mixed]=4000000 [prodcons]=2000000 [falseshare]=200000 [frag]=160 [large]=200)
WORKLOADS=(pair larson mixed prodcons falseshare frag large)

if [ "$INSTR_ONLY" = 0 ]; then
    printf '%-11s' workload
    for a in "${NAMES[@]}"; do printf ' %10s' "$a s"; done
    for a in "${NAMES[@]:1}"; do printf ' %12s' "kmem/$a"; done
    for a in "${NAMES[@]}"; do printf ' %10s' "$a MB"; done
    echo
    for w in "${WORKLOADS[@]}"; do
        n=${N[$w]}
        [ "$QUICK" = 1 ] && n=$(( n / 10 > 1 ? n / 10 : 1 ))
        declare -A T=() R=()
        # Round r runs every allocator once, back to back, starting with a
        # different one each round: a slow period of the host falls on all
        # of them alike. A ratio is the median of the rounds' ratios (kmem's
        # run of round r over the other's), which cancels most of such a
        # period; the times are each allocator's median.
        for a in "${NAMES[@]}"; do : > "$OUT/runs.$a"; done
        for r in $(seq "$RUNS"); do
            k=$(( (r - 1) % ${#NAMES[@]} ))
            for a in "${NAMES[@]:k}" "${NAMES[@]:0:k}"; do
                LD_PRELOAD=${LIB[$a]} /usr/bin/time -f '%M' -o "$OUT/rss" "$BIN" "$w" "$n" "$THREADS" > "$OUT/out"
                echo "$(awk '{print $2}' "$OUT/out") $(cat "$OUT/rss")" >> "$OUT/runs.$a"
            done
        done
        for a in "${NAMES[@]}"; do
            read -r t r < <(sort -n "$OUT/runs.$a" | awk -v k=$(( (RUNS + 1) / 2 )) 'NR == k')
            T[$a]=$t; R[$a]=$r
        done
        printf '%-11s' "$w"
        for a in "${NAMES[@]}"; do printf ' %10.3f' "${T[$a]}"; done
        for a in "${NAMES[@]:1}"; do
            paste -d' ' "$OUT/runs.kmem" "$OUT/runs.$a" |
                awk '$3 > 0 { print $1 / $3 }' | sort -g |
                awk '{ v[NR] = $1 } END { printf " %12s", (NR ? sprintf("%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) : "-") }'
        done
        for a in "${NAMES[@]}"; do awk -v r="${R[$a]}" 'BEGIN { printf " %10.1f", r / 1024 }'; done
        echo
    done
fi

if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed: no instruction counts (apt-get install -y valgrind)"
    exit 0
fi
echo
printf '%-10s %12s %14s %14s\n' allocator "Ir/pair raw" "fallback/pair" "adjusted"
NI=100000
for a in "${NAMES[@]}"; do
    for k in $NI $((2 * NI)); do
        KMEM_EMULATE_RSEQ=1 LD_PRELOAD=${LIB[$a]} valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
            --callgrind-out-file="$OUT/cg.$a.$k" --toggle-collect=bench_pair "$BIN" pair "$k" >/dev/null 2>"$OUT/cg.log" ||
            { cat "$OUT/cg.log" >&2; exit 1; }
    done
    ir() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }
    fb() {
        awk -v pat="HostedPlatform::fold_cpu" '
            /^cfn=/ { hit = index($0, pat) > 0; next }
            /^calls=/ { if (hit) { split(substr($0, 7), x, " "); calls += x[1]; want = 1 } next }
            want { incl += $NF; want = 0; hit = 0 }
            END { print incl + 0, calls + 0 }' "$1"
    }
    read -r f1 c1 < <(fb "$OUT/cg.$a.$NI")
    read -r f2 c2 < <(fb "$OUT/cg.$a.$((2 * NI))")
    awk -v a="$a" -v n=$NI -v i1="$(ir "$OUT/cg.$a.$NI")" -v i2="$(ir "$OUT/cg.$a.$((2 * NI))")" \
        -v f1="$f1" -v f2="$f2" -v c1="$c1" -v c2="$c2" 'BEGIN {
        raw = (i2 - i1) / n; fbk = (f2 - f1) / n; calls = (c2 - c1) / n
        printf "%-10s %12.1f %14.1f %14.1f\n", a, raw, fbk, raw - fbk + calls
    }'
done
