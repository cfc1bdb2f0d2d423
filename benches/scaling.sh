#!/usr/bin/env bash
# In-process shard scaling of the pool engine: ferrite-bench drives a pool volume on a memory
# device (volume-mem:SIZE, no kernel I/O, so the run is CPU-bound) with 4K random reads (after
# a --fill pass) and 4K random writes (write-back, txg syncs in the run), with 1 and 2 shards,
# and prints IOPS and the 2-shard/1-shard ratios.
#
#   benches/scaling.sh
#
# Environment:
#   FERRITE_BENCH_SIZE     volume size (default 512m)
#   FERRITE_BENCH_RUNTIME  seconds per run (default 5)
#   FERRITE_BENCH_ROUNDS   runs per case (default 2); rounds alternate the shard order and the
#                          figures are averaged
#   FERRITE_BENCH_IODEPTH  I/Os in flight per shard (default 32)
#   CARGO_TARGET_DIR       where the release build goes (default: <repo>/target)
#
# N shards run on N cores: the whole process (shards and the pool's CPU workers, which
# checksum and compress at txg sync) is confined with taskset to CPUs 0..N-1, so the ratio
# compares one core with two. The machine load (uptime) is printed first: the ratio means
# something only when the cores are otherwise idle. The last line is
#   ratio randread_2v1=R1 randwrite_2v1=R2
set -euo pipefail
BENCH=scaling
. "$(dirname "$0")/lib.sh"

SIZE=${FERRITE_BENCH_SIZE:-512m}
RUNTIME=${FERRITE_BENCH_RUNTIME:-5}
ROUNDS=${FERRITE_BENCH_ROUNDS:-2}
IODEPTH=${FERRITE_BENCH_IODEPTH:-32}

build_release ferrite-bench
BENCH_BIN=$TARGET_DIR/release/ferrite-bench
echo "scaling: load before the runs:$(load)"

# One run; prints its IOPS.
run() {
    local rw=$1 shards=$2 extra=()
    [[ $rw == randread ]] && extra=(--fill)
    taskset -c "0-$((shards - 1))" \
        "$BENCH_BIN" --target "volume-mem:$SIZE" --rw "$rw" --bs 4k --iodepth "$IODEPTH" \
        --shards "$shards" --runtime "$RUNTIME" "${extra[@]}" 2>/dev/null |
        awk '$1 == "all" { sub("iops=", "", $2); print $2 }'
}

declare -A SUM
for rw in randread randwrite; do
    SUM[$rw-1]=0
    SUM[$rw-2]=0
    for ((round = 0; round < ROUNDS; round++)); do
        order=(1 2)
        ((round % 2 == 1)) && order=(2 1)
        for shards in "${order[@]}"; do
            iops=$(run "$rw" "$shards")
            [[ -n $iops ]] || { echo "scaling: $rw --shards $shards failed" >&2; exit 1; }
            echo "scaling: $rw shards=$shards round=$round iops=$iops" >&2
            SUM[$rw-$shards]=$(python3 -c "print(${SUM[$rw-$shards]} + $iops)")
        done
    done
done
echo "scaling: load after the runs:$(load)"
printf '%-10s %12s %12s %8s\n' case iops_1shard iops_2shards ratio
ratios=()
for rw in randread randwrite; do
    line=$(python3 -c "
a = ${SUM[$rw-1]} / $ROUNDS; b = ${SUM[$rw-2]} / $ROUNDS
print(f'{a:.0f} {b:.0f} {b / a:.2f}')")
    read -r one two ratio <<<"$line"
    printf '%-10s %12s %12s %8s\n' "$rw" "$one" "$two" "$ratio"
    ratios+=("${rw}_2v1=$ratio")
done
echo "ratio ${ratios[*]}"
