#!/usr/bin/env bash
# Runs fio (ioengine=io_uring, direct=1) on a raw file and ferrite-bench on a pool engine
# volume (volume: target, in-process) over a file of the same size on the same file system,
# case by case (interleaved), and prints engine/fio ratios.
#
#   benches/compare-engine.sh FILE
#
# FILE is the raw file fio drives; the pool lives in FILE.pool (and the 128k-volblocksize pool
# in FILE.pool-128k). All are created with the same fio sequential write (so all are fully
# written, allocated files) when missing. On a virtual disk the host's cache favours the file
# written last: remove all three before a run whose cold-read ratio matters, so they are
# created together. The volume
# created in the pool is FERRITE_BENCH_VOLUME_PERCENT of the file (the rest is what a
# copy-on-write pool keeps free so that overwrites still land in long runs). fio is given
# --size=<volume bytes>, so it covers the same number of bytes as the volume (the first
# <volume bytes> of FILE): a virtual disk's host cache favours a smaller span, and a fio run over
# the whole file would be measured against a harder working set than the engine's.
#
# Environment:
#   FERRITE_BENCH_SIZE     size of both files when they have to be created (default 4g)
#   FERRITE_BENCH_RUNTIME  seconds per run (default 10)
#   FERRITE_BENCH_ROUNDS   runs of each tool per case (default 2); rounds alternate the order
#                          and the figures are averaged
#   FERRITE_BENCH_SHARDS   ferrite shards and fio jobs (default 1; iodepth is per shard/job)
#   FERRITE_BENCH_VOLUME_PERCENT  volume size in percent of the pool file (default 50)
#   CARGO_TARGET_DIR       where the release build goes (default: <repo>/target)
#   FERRITE_BENCH_BIN      a ferrite-bench binary to measure instead of building one (for an
#                          old-build-against-new-build sitting: run the script once with each)
#
# Cases (fio | ferrite-bench on the volume):
#   randread_4k_qd32_cold  randread 4k QD32 | the same after a --fill pass, with --cold (the
#                          pool is exported and re-imported, data blocks are not cached)
#   randwrite_4k_qd32      randwrite 4k QD32 | the same, write-back (txg syncs in the run)
#   fua_write_4k_qd32      randwrite 4k QD32 --sync=dsync | the same with --fua (intent log in
#                          the pool, on the same file)
#   write_128k_qd8         write 128k QD8 sequential | the same, write-back, on a volume with
#                          volblocksize 128k (the size one gives a volume for streaming
#                          writes), in a pool on FILE.pool-128k (same size, created the same way)
#   write_128k_qd8_vb4k    the same on the 4k-volblocksize volume of FILE.pool (each 128k write
#                          is 32 blocks for the txg to place); printed, not in the ratio line
# Ratios are ferrite over fio: IOPS for 4k, MB/s for 128k. The last line is
#   ratio randread_4k_qd32_cold=R1 randwrite_4k_qd32=R2 fua_write_4k_qd32=R3 write_128k_qd8=R4
set -euo pipefail
BENCH=compare-engine
. "$(dirname "$0")/lib.sh"

FILE=$(file_argument "$@")
POOL_FILE=$FILE.pool
SIZE=${FERRITE_BENCH_SIZE:-4g}
RUNTIME=${FERRITE_BENCH_RUNTIME:-10}
ROUNDS=${FERRITE_BENCH_ROUNDS:-2}
SHARDS=${FERRITE_BENCH_SHARDS:-1}
VOLUME_PERCENT=${FERRITE_BENCH_VOLUME_PERCENT:-50}
FIO=${FIO:-fio}
need "$FIO" python3

if [[ -n ${FERRITE_BENCH_BIN:-} ]]; then
    BENCH_BIN=$FERRITE_BENCH_BIN
    [[ -x $BENCH_BIN ]] || { echo "compare-engine: FERRITE_BENCH_BIN=$BENCH_BIN is not an executable" >&2; exit 2; }
    echo "compare-engine: measuring $BENCH_BIN" >&2
else
    build_release ferrite-bench
    BENCH_BIN=$TARGET_DIR/release/ferrite-bench
fi

for f in "$FILE" "$POOL_FILE" "$POOL_FILE-128k"; do
    if [[ ! -e $f ]]; then
        echo "compare-engine: creating $f ($SIZE, fully written)" >&2
        fio_fill "$f" "$SIZE"
    fi
done
for f in "$POOL_FILE" "$POOL_FILE-128k"; do
    if [[ $(stat -c %s "$FILE") != $(stat -c %s "$f") ]]; then
        echo "compare-engine: $FILE and $f differ in size; remove them to start over" >&2
        exit 2
    fi
done

VOLUME_BYTES=$(($(stat -c %s "$POOL_FILE") * VOLUME_PERCENT / 100 / 1048576 * 1048576))

work_dir

# run_fio NAME RW BS QD EXTRA... -> prints "iops mb_s p99_us"
run_fio() {
    local name=$1 rw=$2 bs=$3 qd=$4
    shift 4
    local out=$WORK/fio-$name.json
    "$FIO" --name="$name" --filename="$FILE" --ioengine=io_uring --direct=1 --rw="$rw" \
        --bs="$bs" --iodepth="$qd" --numjobs="$SHARDS" --cpus_allowed="0-$((SHARDS - 1))" \
        --cpus_allowed_policy=split --group_reporting --time_based --runtime="$RUNTIME" \
        --size="$VOLUME_BYTES" --norandommap --randrepeat=0 --lat_percentiles=1 "$@" \
        --output-format=json \
        --output="$out"
    fio_figures "$out" "$rw"
}

# run_ferrite NAME RW BS QD POOL EXTRA... -> prints "iops mb_s p99_us"
run_ferrite() {
    local name=$1 rw=$2 bs=$3 qd=$4 pool=$5
    shift 5
    local out=$WORK/ferrite-$name.json
    if ! "$BENCH_BIN" --target "volume:$pool" --rw "$rw" --bs "$bs" --iodepth "$qd" \
        --shards "$SHARDS" --pin 1 --runtime "$RUNTIME" --size "$VOLUME_BYTES" "$@" --json >"$out" \
        2>"$WORK/ferrite-$name.stderr"; then
        echo "compare-engine: ferrite-bench failed ($name):" >&2
        cat "$WORK/ferrite-$name.stderr" >&2
        exit 1
    fi
    grep -E 'filled|exported' "$WORK/ferrite-$name.stderr" | sed "s/^/  [$name] /" >&2 || true
    bench_figures "$out"
}

# name rw bs qd | fio extra args | ferrite extra args
CASES=("randread_4k_qd32_cold randread 4k 32||--cold"
       "randwrite_4k_qd32 randwrite 4k 32||"
       "fua_write_4k_qd32 randwrite 4k 32|--sync=dsync|--fua"
       "write_128k_qd8 write 128k 8||--volblock 128k"
       "write_128k_qd8_vb4k write 128k 8||")
# The cases of the ratio line.
RATIO_CASES=(randread_4k_qd32_cold randwrite_4k_qd32 fua_write_4k_qd32 write_128k_qd8)

echo "compare-engine: fio on $FILE vs a $VOLUME_BYTES-byte volume in a pool on $POOL_FILE ($(stat -c %s "$FILE") bytes each), ${RUNTIME}s per run, $ROUNDS rounds, $SHARDS shard(s), $(nproc) CPUs; load at start:$(load)"
printf '%-24s | %10s %9s %9s | %10s %9s %9s | %6s\n' workload fio_iops fio_MB/s fio_p99us \
    fer_iops fer_MB/s fer_p99us ratio
declare -A RATIO
filled=0
for spec in "${CASES[@]}"; do
    IFS='|' read -r head fio_extra fer_extra <<<"$spec"
    read -r name rw bs qd <<<"$head"
    read -ra fio_args <<<"$fio_extra"
    read -ra fer_args <<<"$fer_extra"
    pool=$POOL_FILE
    [[ " $fer_extra " == *" --volblock 128k "* ]] && pool=$POOL_FILE-128k
    fio_runs="" fer_runs=""
    for ((round = 0; round < ROUNDS; round++)); do
        extra=("${fer_args[@]}")
        if ((filled == 0)); then
            # The first engine run fills the volume (non-zero data everywhere) and commits it.
            extra+=(--fill)
            filled=1
        fi
        if ((round % 2 == 0)); then
            fio_runs+=$(run_fio "$name-$round" "$rw" "$bs" "$qd" "${fio_args[@]}")$'\n'
            fer_runs+=$(run_ferrite "$name-$round" "$rw" "$bs" "$qd" "$pool" "${extra[@]}")$'\n'
        else
            fer_runs+=$(run_ferrite "$name-$round" "$rw" "$bs" "$qd" "$pool" "${extra[@]}")$'\n'
            fio_runs+=$(run_fio "$name-$round" "$rw" "$bs" "$qd" "${fio_args[@]}")$'\n'
        fi
    done
    ferrite_over_fio "$bs" "${fio_runs%$'\n'}" "${fer_runs%$'\n'}"
    RATIO[$name]=$R
    printf '%-24s | %10s %9s %9s | %10s %9s %9s | %6s\n' "$name" "$F_IOPS" "$F_MBS" "$F_P99" \
        "$B_IOPS" "$B_MBS" "$B_P99" "$R"
done
echo "compare-engine: load at end:$(load)"
out=ratio
for name in "${RATIO_CASES[@]}"; do
    out+=" $name=${RATIO[$name]}"
done
echo "$out"
