#!/usr/bin/env bash
# Build the kmem test kernel and boot it in QEMU (software emulation).
#
#   kernel/run.sh [--smp N] [--mem SIZE] [--timeout SECS] [--no-build] [--] [kernel command line...]
#
# Prints the serial console, then the verdict; exits 0 if the kernel passed,
# 1 if it failed (or faulted), 2 if QEMU died otherwise (triple fault), 124
# on timeout (a hang), 3 if QEMU or the target is missing.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
smp=4
mem=256M
timeout_s=60
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) smp="$2"; shift 2 ;;
        --mem) mem="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --) shift; break ;;
        *) break ;;
    esac
done
cmdline="$*"

qemu="${QEMU:-qemu-system-x86_64}"
if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "run.sh: skipped: $qemu not found (apt-get install qemu-system-x86)" >&2
    exit 3
fi
if [ "$build" = 1 ]; then
    if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
        echo "run.sh: skipped: target x86_64-unknown-none missing (rustup target add x86_64-unknown-none)" >&2
        exit 3
    fi
    (cd "$here" && cargo build --release --quiet) || { echo "run.sh: kernel build failed" >&2; exit 1; }
fi
elf="$here/target/x86_64-unknown-none/release/kmem-kernel"

start=$(date +%s.%N)
timeout --foreground -k 5 "$timeout_s" "$qemu" \
    -machine q35 -cpu max -accel tcg -smp "$smp" -m "$mem" \
    -kernel "$elf" -append "$cmdline" \
    -nographic -serial stdio -monitor none \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -device edu \
    -no-reboot </dev/null
rc=$?
end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
case $rc in
    33) echo "run.sh: PASS (smp=$smp mem=$mem, ${secs}s)"; exit 0 ;;
    35) echo "run.sh: FAIL: the kernel reported failure (smp=$smp mem=$mem, ${secs}s)"; exit 1 ;;
    124|137) echo "run.sh: FAIL: timeout after ${timeout_s}s (hang) (smp=$smp mem=$mem)"; exit 124 ;;
    0) echo "run.sh: FAIL: QEMU exited without a verdict (triple fault or reset) (smp=$smp mem=$mem, ${secs}s)"; exit 2 ;;
    *) echo "run.sh: FAIL: QEMU exit status $rc (smp=$smp mem=$mem, ${secs}s)"; exit 2 ;;
esac
