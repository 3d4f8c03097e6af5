#!/usr/bin/env bash
# Instructions per operation of kmem's page allocator and of
# buddy_system_allocator, and of kmem's object allocators (slab cache,
# kmalloc, and mempool_alloc+mempool_free on slab and kmalloc pools, with
# and without fast-path statistics) and glibc, mimalloc, jemalloc and
# slab::Slab, counted by valgrind's callgrind. The binary is built in
# $CARGO_TARGET_DIR if set (else target/).
#
#   scripts/instr-count.sh [N] [CASE... | pages | slab]
#
# `pages` and `slab` stand for their groups of cases (the default is both).
#
# For every case, runs `kmem-instr CASE N` and `kmem-instr CASE 2N` under
#   valgrind --tool=callgrind --toggle-collect='*instr_<case>*'
# so only the case's loop is counted (the warm-up goes through the same loop,
# and cancels out with the boot and everything else in the difference), and
# prints (Ir(2N) - Ir(N)) / N: instructions per operation (per page for the
# batch cases, whose N counts rounds of 1000 pages).
#
# Valgrind does not support rseq, so under valgrind glibc registers none and
# the hosted platform's smp_processor_id() takes its fallback: the out-of-line
# HostedPlatform::fold_cpu -> host_cpu_slow -> sched_getcpu (a getcpu system
# call; its kernel time is not counted, the user-space part is). The
# "rseq-adjusted" column removes that: it subtracts fold_cpu's inclusive
# count (its inclusive Ir, read from callgrind's call records) and adds the
# difference between the inline code of the two paths, per call: a normal
# run executes mov %fs:0,%rcx; mov 4(%rax,%rcx),%eax; cmp nr_cpus; jbe (4)
# where valgrind's run executed the fallback's call setup lea; mov; call (3).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-20000}
shift || true
PAGES=(kmem-order0 kmem-order3 bsa-heap-order0 bsa-heap-order3 bsa-frame-order0 bsa-frame-order3
    kmem-batch-lifo bsa-heap-batch-lifo)
SLAB=(slab-kmem-cache-64 slab-kmalloc-64 slab-kmalloc-var-64 slab-glibc-64 slab-mimalloc-64 slab-jemalloc-64 slab-typed-64
    slab-batch-kmem-cache-64 slab-batch-kmalloc-64 slab-batch-glibc-64 slab-batch-mimalloc-64 slab-batch-jemalloc-64
    slab-mempool-64 slab-mempool-nostats-64 slab-mempool-kmalloc-64 slab-mempool-kmalloc-nostats-64)
[ $# -eq 0 ] && set -- pages slab
CASES=()
for a in "$@"; do
    case $a in
        pages) CASES+=("${PAGES[@]}") ;;
        slab) CASES+=("${SLAB[@]}") ;;
        *) CASES+=("$a") ;;
    esac
done
RSEQ_PATH_INSNS=1

command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p kmem-bench --bin kmem-instr
BIN=${CARGO_TARGET_DIR:-target}/release/kmem-instr
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# Collected Ir of a callgrind output file.
total_ir() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# "inclusive calls" of the calls to functions whose name contains PAT, read
# from the call records of a callgrind output file written with
# --compress-strings=no (each `cfn=` names the callee, the `calls=` line after
# it holds the count, the line after that the inclusive cost of those calls).
incl_and_calls() {
    awk -v pat="$2" '
        /^cfn=/ { hit = index($0, pat) > 0; next }
        /^calls=/ { if (hit) { split(substr($0, 7), a, " "); calls += a[1]; want = 1 } next }
        want { incl += $NF; want = 0; hit = 0 }
        END { print incl + 0, calls + 0 }' "$1"
}

printf '%-32s %6s %10s %12s %10s %14s\n' case N "Ir/op raw" "fallback/op" "calls/op" "rseq-adjusted"
for c in "${CASES[@]}"; do
    n=$N
    per=1
    case $c in *batch*) n=$(( N / 1000 > 10 ? N / 1000 : 10 )); per=1000 ;; esac
    fn="instr_${c//-/_}"
    for k in $n $((2 * n)); do
        valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$OUT/$c.$k" --toggle-collect="*${fn}*" \
            "$BIN" "$c" "$k" >/dev/null 2>"$OUT/$c.$k.log" || { cat "$OUT/$c.$k.log" >&2; exit 1; }
    done
    ir1=$(total_ir "$OUT/$c.$n")
    ir2=$(total_ir "$OUT/$c.$((2 * n))")
    read -r f1 c1 < <(incl_and_calls "$OUT/$c.$n" "HostedPlatform::fold_cpu")
    read -r f2 c2 < <(incl_and_calls "$OUT/$c.$((2 * n))" "HostedPlatform::fold_cpu")
    awk -v c="$c" -v n="$n" -v per="$per" -v ir1="$ir1" -v ir2="$ir2" -v f1="$f1" -v f2="$f2" \
        -v c1="$c1" -v c2="$c2" -v r="$RSEQ_PATH_INSNS" 'BEGIN {
        ops = n * per
        raw = (ir2 - ir1) / ops
        fb = (f2 - f1) / ops
        calls = (c2 - c1) / ops
        printf "%-32s %6d %10.1f %12.1f %10.2f %14.1f\n", c, n, raw, fb, calls, raw - fb + r * calls
    }'
done
