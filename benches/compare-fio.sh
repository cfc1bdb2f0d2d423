#!/usr/bin/env bash
# Runs fio (ioengine=io_uring, direct=1) and ferrite-bench on the same file, case by case
# (interleaved to reduce drift), and prints ferrite/fio ratios.
#
#   benches/compare-fio.sh FILE
#
# Environment:
#   FERRITE_BENCH_SIZE     size of FILE when it has to be created (default 4g)
#   FERRITE_BENCH_RUNTIME  seconds per run (default 10)
#   FERRITE_BENCH_ROUNDS   runs of each tool per case (default 2); rounds alternate the order
#                          (fio first, then ferrite first) and the figures are averaged, so a
#                          steady drift of the machine cancels out
#   CARGO_TARGET_DIR       where the release build goes (default: <repo>/target)
#
# Cases: randread 4k QD32, randwrite 4k QD32, read 128k QD8, write 128k QD8; each with one
# shard vs fio numjobs=1, then two shards vs numjobs=2 (iodepth is per shard / per job).
# Both sides are pinned the same way: ferrite shard i and fio job i run on CPU i
# (cpus_allowed_policy=split), so neither gains from migrating away from a busy CPU.
# Ratios are ferrite over fio: IOPS for 4k, MB/s for 128k. The last line is
#   ratio randread_4k_qd32=R1 randwrite_4k_qd32=R2 read_128k_qd8=R3 write_128k_qd8=R4
# and the line before it has the same for two shards (ratio_2shards ...).
set -euo pipefail
BENCH=compare-fio
. "$(dirname "$0")/lib.sh"

FILE=$(file_argument "$@")
SIZE=${FERRITE_BENCH_SIZE:-4g}
RUNTIME=${FERRITE_BENCH_RUNTIME:-10}
ROUNDS=${FERRITE_BENCH_ROUNDS:-2}
FIO=${FIO:-fio}
need "$FIO" python3

build_release ferrite-bench
BENCH_BIN=$TARGET_DIR/release/ferrite-bench

if [[ ! -e $FILE ]]; then
    echo "compare-fio: creating $FILE ($SIZE, fully written so reads hit allocated blocks)" >&2
    fio_fill "$FILE" "$SIZE"
fi

work_dir

# run_fio NAME RW BS QD JOBS -> prints "iops mb_s p99_us"
run_fio() {
    local out=$WORK/fio-$1.json
    "$FIO" --name="$1" --filename="$FILE" --ioengine=io_uring --direct=1 --rw="$2" --bs="$3" \
        --iodepth="$4" --numjobs="$5" --cpus_allowed="0-$(($5 - 1))" --cpus_allowed_policy=split \
        --group_reporting --time_based --runtime="$RUNTIME" \
        --norandommap --randrepeat=0 --lat_percentiles=1 --output-format=json --output="$out"
    fio_figures "$out" "$2"
}

# run_ferrite NAME RW BS QD SHARDS -> prints "iops mb_s p99_us"
run_ferrite() {
    local out=$WORK/ferrite-$1.json
    "$BENCH_BIN" --target "file:$FILE" --rw "$2" --bs "$3" --iodepth "$4" --shards "$5" --pin 1 \
        --runtime "$RUNTIME" --json >"$out" 2>"$WORK/ferrite-$1.stderr"
    bench_figures "$out"
}

CASES=("randread_4k_qd32 randread 4k 32" "randwrite_4k_qd32 randwrite 4k 32"
       "read_128k_qd8 read 128k 8" "write_128k_qd8 write 128k 8")

echo "compare-fio: $FILE, ${RUNTIME}s per run, $ROUNDS rounds, $(nproc) CPUs; load at start:$(load)"
printf '%-22s %6s | %10s %9s %9s | %10s %9s %9s | %6s\n' workload shards fio_iops fio_MB/s \
    fio_p99us fer_iops fer_MB/s fer_p99us ratio
declare -A RATIO
for shards in 1 2; do
    for spec in "${CASES[@]}"; do
        read -r name rw bs qd <<<"$spec"
        fio_runs="" fer_runs=""
        for ((round = 0; round < ROUNDS; round++)); do
            if ((round % 2 == 0)); then
                fio_runs+=$(run_fio "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")$'\n'
                fer_runs+=$(run_ferrite "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")$'\n'
            else
                fer_runs+=$(run_ferrite "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")$'\n'
                fio_runs+=$(run_fio "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")$'\n'
            fi
        done
        ferrite_over_fio "$bs" "${fio_runs%$'\n'}" "${fer_runs%$'\n'}"
        RATIO[$name-$shards]=$R
        printf '%-22s %6s | %10s %9s %9s | %10s %9s %9s | %6s\n' "$name" "$shards" "$F_IOPS" \
            "$F_MBS" "$F_P99" "$B_IOPS" "$B_MBS" "$B_P99" "$R"
    done
done
echo "compare-fio: load at end:$(load)"
line() {
    local out=$1 suffix=$2
    for spec in "${CASES[@]}"; do
        read -r name _ <<<"$spec"
        out+=" $name=${RATIO[$name-$suffix]}"
    done
    echo "$out"
}
line ratio_2shards 2
line ratio 1
