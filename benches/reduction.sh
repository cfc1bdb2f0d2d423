#!/usr/bin/env bash
# Data reduction on a pool engine volume: sequential-write MB/s and CPU per MB of each setting,
# from one run on this machine, and the dedup table's memory per entry.
#
#   benches/reduction.sh [DIR]
#
# Each case creates a pool file in DIR (default: a temporary directory under /var/tmp), a
# volume with 128 KiB blocks, writes FERRITE_BENCH_SIZE bytes (default 2G) sequentially in
# 128 KiB writes, 8 in flight, and ends with a txg sync (compression and dedup run at sync
# time, so they are inside the measurement). Cases, in order:
#   off                 compression=off dedup=off, incompressible data (the baseline)
#   lz4-incompressible  compression=lz4, incompressible data          goal: MB/s >= 0.9 x off
#   lz4-compressible    compression=lz4, 2:1 compressible data        goal: physical ~ 1/2, MB/s >= off
#   dedup-duplicate     dedup=on, the same 8 MiB over and over        goal: MB/s >= 1.5 x off, physical ~ 8 MiB
#   dedup-unique        dedup=on, incompressible unique data          goal: MB/s >= 0.7 x off
# The ratios compare each case with the off case of the same run; the dedup-unique case also
# prints the dedup table's bytes per entry in memory (goal <= 96).
#
# Environment: FERRITE_BENCH_SIZE (default 2G: shorter runs last well under a second and
# follow the disk's moment-to-moment speed), FERRITE_BENCH_ROUNDS (default 3; MB/s and CPU
# figures are averaged over the rounds, each round runs every case once so a load change on a
# shared machine falls on all cases alike), CARGO_TARGET_DIR (default <repo>/target).
set -euo pipefail
BENCH=reduction
. "$(dirname "$0")/lib.sh"

SIZE=${FERRITE_BENCH_SIZE:-2G}
ROUNDS=${FERRITE_BENCH_ROUNDS:-3}
scratch_dir "${1:-}"

build_release ferrite-reduction-bench
BENCH_BIN=$TARGET_DIR/release/ferrite-reduction-bench

CASES=(off lz4-incompressible lz4-compressible dedup-duplicate dedup-unique)
declare -A MBS CPU PHYS LOGICAL PER_ENTRY ENTRIES
for c in "${CASES[@]}"; do
    MBS[$c]=0
    CPU[$c]=0
done
for round in $(seq 1 "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        line=$("$BENCH_BIN" --file "$DIR/pool.img" --case "$c" --size "$SIZE")
        echo "round $round: $line"
        MBS[$c]=$(python3 -c "print(${MBS[$c]} + $(val "$line" mb_s))")
        CPU[$c]=$(python3 -c "print(${CPU[$c]} + $(val "$line" cpu_ms_per_mb))")
        PHYS[$c]=$(val "$line" physical_bytes)
        LOGICAL[$c]=$(val "$line" logical_bytes)
        ENTRIES[$c]=$(val "$line" ddt_entries)
        PER_ENTRY[$c]=$(val "$line" ddt_bytes_per_entry)
    done
done

echo
printf '%-20s %10s %14s %16s %12s %10s\n' case MB/s cpu_ms/MB physical_bytes vs_off_MB/s goal
for c in "${CASES[@]}"; do
    mbs=$(python3 -c "print(f'{${MBS[$c]} / $ROUNDS:.1f}')")
    cpu=$(python3 -c "print(f'{${CPU[$c]} / $ROUNDS:.3f}')")
    ratio=$(python3 -c "print(f'{${MBS[$c]} / ${MBS[off]}:.2f}')")
    case $c in
        off) goal=- ;;
        lz4-incompressible) goal='>=0.9' ;;
        lz4-compressible) goal='>=1.0' ;;
        dedup-duplicate) goal='>=1.5' ;;
        dedup-unique) goal='>=0.7' ;;
    esac
    printf '%-20s %10s %14s %16s %12s %10s\n' "$c" "$mbs" "$cpu" "${PHYS[$c]}" "$ratio" "$goal"
done
echo
python3 - "${PHYS[off]}" "${PHYS[lz4-compressible]}" "${PHYS[dedup-duplicate]}" "${LOGICAL[off]}" <<'PY'
import sys
off, comp, dup, logical = map(int, sys.argv[1:])
print(f"lz4 on 2:1 data: physical bytes {comp / off:.2f} of off")
print(f"dedup on a duplicate stream: physical bytes {dup / (1 << 20):.1f} MiB for {logical / (1 << 20):.0f} MiB written (one copy is 8 MiB)")
PY
echo "dedup table: ${ENTRIES[dedup-unique]} entries, ${PER_ENTRY[dedup-unique]} bytes per entry in memory (goal <= 96)"
echo "note: averaged over $ROUNDS round(s); on a shared machine figures are noisy"
