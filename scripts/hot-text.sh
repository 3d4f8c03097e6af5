#!/usr/bin/env bash
# Regenerate crates/kmem-malloc/hot-text.ld: the functions of libkmalloc that
# programs run, gathered into one output section at the start of its code.
#
#   scripts/hot-text.sh        (KEEP=1 keeps its work directory)
#
# Why: the host kernel maps a file-backed page fault's whole 64 KiB
# neighbourhood ("fault-around"), so the executed functions scattered over
# the library's 520 kB of code made almost all of it resident (384-448 kB in
# a small program that preloads it), most of that std's backtrace symbolizer
# and error paths that never run. Packed together (about 195 kB), only their
# own windows are mapped.
#
# How: each workload runs under valgrind's callgrind with libkmalloc
# preloaded (KMEM_EMULATE_RSEQ=1, so the rseq paths run as without valgrind);
# every function of libkmalloc that ran is listed. Then each workload runs
# three times under `perf record -e page-faults` (if perf is installed) and
# a function at an instruction fetch's fault outside the hot section is added
# too (valgrind misses a few; each window shows only its first fault, and the
# windows move with the library's random base), until no fault is new. The
# functions that the most of mallocbench's workloads run come first
# (the boot, the fast paths, the sheaves' swaps), ties broken by all the
# workloads, then the rest (threads, fork, large blocks), each group hottest
# first. The functions that only the boot runs (callgrind dumps a part when
# `kmalloc::bootstrap::boot` returns) form a group of their own between
# `__kmem_init_begin` and `__kmem_init_end`, page-aligned, which the library
# drops after the boot (crates/kmem-malloc/src/initmem.rs): the code the
# benchmark's workloads run after the boot comes first and fits one window.
# Symbols become section patterns with the parts that change from build to
# build wildcarded (legacy mangling's hash, a v0 crate
# disambiguator, ThinLTO's `.llvm.N` suffix), so the script stays useful
# across edits: a renamed or new function is merely left in `.text`. GNU ld
# and LLD both read the `INSERT BEFORE .text` script.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$(mktemp -d)
if [ -n "${KEEP:-}" ]; then echo "work dir: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
LD_SCRIPT=crates/kmem-malloc/hot-text.ld

cargo build --release -q -p kmem-malloc
LIB=$(cd "$TARGET/release" && pwd)/libkmalloc.so
P=crates/kmem-malloc/tests/programs
cc -O2 -pthread -o "$WORK/mallocbench" crates/kmem-malloc/bench/mallocbench.c
cc -O2 -pthread -o "$WORK/api" $P/api.c
cc -O2 -pthread -o "$WORK/threads" $P/threads.c
cc -O2 -pthread -o "$WORK/fork" $P/fork.c
g++ -O2 -pthread -o "$WORK/cxx" $P/cxx.cc
cat > "$WORK/work.py" <<'EOF'
import json, random
d = [{str(i): random.random()} for i in range(20000)]
print(len(json.dumps(d)))
EOF

WORKLOADS=(
    "$WORK/mallocbench pair 20000 2"
    "$WORK/mallocbench larson 400000 2"
    "$WORK/mallocbench mixed 400000 2"
    "$WORK/mallocbench prodcons 200000 2"
    "$WORK/mallocbench falseshare 2000 2"
    "$WORK/mallocbench frag 2 2"
    "$WORK/mallocbench large 2 1"
    "$WORK/api"
    "$WORK/threads"
    "$WORK/fork mt"
    "$WORK/cxx"
    "python3 $WORK/work.py"
)

# The mallocbench workloads, which come first in WORKLOADS.
NR_BENCH=0
for w in "${WORKLOADS[@]}"; do
    if [[ $w == *mallocbench* ]]; then NR_BENCH=$((NR_BENCH + 1)); fi
done

# The library's functions (callgrind names an object only when it differs
# from the last one it named, calls included, so functions are matched
# against these instead).
nm -S --defined-only "$LIB" | awk '$3 ~ /^[tTwW]$/ { print $4 }' > "$WORK/syms.txt"

# "name workload cost phase" for every function of libkmalloc that ran:
# phase b if it ran before the boot returned (callgrind dumps a first part
# when `kmalloc::bootstrap::boot` returns), r if it ran after.
k=0
for w in "${WORKLOADS[@]}"; do
    eval "set -- $w"
    KMEM_EMULATE_RSEQ=1 LD_PRELOAD=$LIB timeout 120 valgrind --tool=callgrind --demangle=no --compress-strings=no \
        --compress-pos=no --dump-after='_ZN7kmalloc9bootstrap4boot17h*' \
        --callgrind-out-file="$WORK/cg.out" "$@" >/dev/null 2>&1 || true
    for part in "$WORK"/cg.out*; do
        phase=r
        if [ "$part" = "$WORK/cg.out.1" ]; then phase=b; fi
        python3 - "$WORK/syms.txt" "$part" "$k" "$phase" >> "$WORK/ran.txt" <<'EOF'
import collections, sys
ours = set(open(sys.argv[1]).read().split())
cost = collections.Counter()
fn = None
for line in open(sys.argv[2], errors='replace'):
    if line.startswith('fn='):
        fn = line[3:].strip().split("'")[0]  # callgrind's recursion depth suffix
        fn = fn if fn in ours else None
        if fn:
            cost[fn] += 0
    elif fn and line[:1].isdigit():
        p = line.split()
        if len(p) >= 2:
            cost[fn] += int(p[1])
for name, c in cost.items():
    print(name, sys.argv[3], c, sys.argv[4])
EOF
    done
    rm -f "$WORK"/cg.out*
    k=$((k + 1))
done

write_script() {
    python3 - "$WORK/ran.txt" "$NR_BENCH" "$WORK/syms.txt" > "$LD_SCRIPT" <<'EOF'
import collections, re, sys
runs = collections.defaultdict(set)
after_boot = collections.defaultdict(set)
cost = collections.Counter()
faulted = collections.defaultdict(set)
for line in open(sys.argv[1]):
    name, k, c, phase = line.split()
    if phase == 'p':
        faulted[name].add(k)
        continue
    runs[name].add(k)
    if phase == 'r':
        after_boot[name].add(k)
    cost[name] += int(c)
# A fault (phase p) does not say when the function ran: one that callgrind
# never saw counts as run after the boot.
for name, ks in faulted.items():
    if name not in runs:
        runs[name] |= ks
        after_boot[name] |= ks
# What only contention and preemption run, which valgrind (one thread at a
# time, restartable sequences emulated) never shows: the spinlocks' slow
# path, the frees whose sequence declined (a slow path held the CPU's
# sequences stopped) and the check of their object, the CPU number's slow
# path. Every workload may run them.
bench_all = {str(k) for k in range(int(sys.argv[2]))}
rare = ('9lock_slow17h', 'declined', '13host_cpu_slow17h', '18check_object_start17h')
for name in open(sys.argv[3]).read().split():
    if any(r in name for r in rare):
        runs[name] |= bench_all
        after_boot[name] |= bench_all
# The boot-only functions (src/initmem.rs): run by the boot, never after
# it. `boot` itself and its caller run on after the range is dropped, and
# so does `initmem.rs`, which drops it and the boot's stack.
stay = ('9bootstrap4boot17h', 'machine_or_arena', '7initmem')
def boot_only(n):
    return not after_boot[n] and not any(s in n for s in stay)
def pattern(n):
    # ThinLTO's `.llvm.N` suffix, which valgrind may or may not report, is
    # always wildcarded after a hash.
    p = re.sub(r'\.llvm\.\d+$', '*', n)
    p = re.sub(r'17h[0-9a-f]{16}E\*?$', '17h*E*', p)
    return re.sub(r'Cs[0-9a-zA-Z]+_', 'Cs*_', p)
# Three groups, each in order of how many of the malloc benchmark's
# workloads (the first NR_BENCH, `large`, the last, aside) run a function
# after the boot, then at all, then of how many workloads do: what those
# workloads run besides the boot-only code (the fast paths, the slow paths,
# what the boot shares with later calls), in as few 64 KiB windows as can
# hold it; the boot-only code; the rest (threads, fork, large blocks).
bench = {str(k) for k in range(int(sys.argv[2]) - 1)}
order = sorted(runs, key=lambda n: (-len(after_boot[n] & bench), -len(runs[n] & bench), -len(runs[n]), -cost[n], n))
groups = [[], [], []]
seen = set()
for n in order:
    p = pattern(n)
    if p in seen:
        continue
    seen.add(p)
    groups[1 if boot_only(n) else 0 if runs[n] & bench else 2].append(p)
print('/* Generated by scripts/hot-text.sh: the functions of libkmalloc that programs')
print(' * run, packed into one section ahead of .text so that the host\'s 64 KiB')
print(' * fault-around windows map only them (see build.rs). */')
print('SECTIONS\n{\n  .text.kmem_hot : {')
# The PLT (calls to __tls_get_addr, __register_atfork and __cxa_finalize go
# through it; the linker would put it after .text, a window of its own), the
# rseq sequences' abort handlers (slab/rseq.rs), which no symbol names, the C
# runtime's frame_dummy, which every load runs, and libc_nonshared's
# pthread_atfork, which the boot calls (both in plain `.text` sections).
print('    *(.plt) *(.iplt)')
print('    *(.text.unlikely.kmem_rseq)')
print('    *crtbeginS.o(.text)')
print('    *libc_nonshared.a:pthread_atfork.oS(.text)')
def emit(group):
    for p in group:
        # The fast paths start a cache line: where they fall in one moves
        # a malloc/free pair's time by some 7 % with the same instructions.
        if p in ('malloc', 'free'):
            print('    . = ALIGN(64);')
        print('    *(.text.%s .text.unlikely.%s)' % (p, p))
emit(groups[0])
print('    . = ALIGN(4096);\n    __kmem_init_begin = .;')
emit(groups[1])
print('    . = ALIGN(4096);\n    __kmem_init_end = .;')
emit(groups[2])
print('  }\n}\nINSERT BEFORE .text;')
EOF
}
write_script
echo "callgrind: $(cut -d' ' -f1 "$WORK/ran.txt" | sort -u | wc -l) functions ran"

# Instruction fetches that fault outside the hot section, in real runs.
if command -v perf >/dev/null; then
    for round in 1 2 3 4 5 6; do
        cargo build --release -q -p kmem-malloc
        nm -S --defined-only "$LIB" > "$WORK/nm.txt"
        : > "$WORK/faulted.txt"
        for rep in 1 2 3; do
            k=0
            for w in "${WORKLOADS[@]}"; do
                eval "set -- $w"
                timeout 120 perf record -q -e page-faults -c 1 -d -o "$WORK/pf.data" env LD_PRELOAD="$LIB" "$@" \
                    >/dev/null 2>&1 || true
                perf script -i "$WORK/pf.data" -F ip,sym,addr,dso --no-demangle 2>/dev/null > "$WORK/pf.txt" || true
                python3 - "$WORK/nm.txt" "$WORK/pf.txt" "$k" >> "$WORK/faulted.txt" <<'EOF'
# Lines "addr sym (dso) ip sym (dso)"; an instruction fetch faults at its own
# ip. perf does not name every function, so the library's symbols are looked
# up here, rebased by the fault of _init (the library's first code to run).
import bisect, sys
syms = []
for l in open(sys.argv[1]):
    p = l.split()
    if len(p) == 3:  # no size (_init)
        p = [p[0], '0'] + p[1:]
    if len(p) == 4 and p[2] in 'tTwW':
        syms.append((int(p[0], 16), int(p[1], 16), p[3]))
syms.sort()
starts = [s[0] for s in syms]
init = next(a for a, _, n in syms if n == '_init')
base = None
for l in open(sys.argv[2]):
    p = l.split()
    if len(p) < 6 or p[0] != p[3] or 'libkmalloc' not in p[2]:
        continue
    ip = int(p[0], 16)
    if p[1] == '_init':
        base = ip - init
    if base is None:
        continue
    i = bisect.bisect_right(starts, ip - base) - 1
    if i >= 0 and ip - base < syms[i][0] + max(syms[i][1], 1):
        print(syms[i][2], sys.argv[3], 0, 'p')
EOF
                k=$((k + 1))
            done
        done
        new=$(cut -d' ' -f1 "$WORK/faulted.txt" | sort -u | grep -vxF -f <(cut -d' ' -f1 "$WORK/ran.txt") | wc -l || true)
        sort -u "$WORK/faulted.txt" >> "$WORK/ran.txt"
        echo "round $round: $new functions faulted outside the hot section"
        [ "$new" -gt 0 ] || break
        write_script
    done
fi
echo "$(grep -c '^    \*(' "$LD_SCRIPT") sections in $LD_SCRIPT"
