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

if [[ $# -ne 1 ]]; then
    echo "usage: $0 FILE" >&2
    exit 2
fi
FILE=$1
SIZE=${FERRITE_BENCH_SIZE:-4g}
RUNTIME=${FERRITE_BENCH_RUNTIME:-10}
ROUNDS=${FERRITE_BENCH_ROUNDS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FIO=${FIO:-fio}
command -v "$FIO" >/dev/null || { echo "compare-fio: fio not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compare-fio: python3 not found" >&2; exit 2; }

echo "compare-fio: building ferrite-bench (release, target dir $TARGET_DIR)" >&2
(cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p ferrite-tools --bin ferrite-bench)
BENCH=$TARGET_DIR/release/ferrite-bench

if [[ ! -e $FILE ]]; then
    echo "compare-fio: creating $FILE ($SIZE, fully written so reads hit allocated blocks)" >&2
    "$FIO" --name=prep --filename="$FILE" --size="$SIZE" --rw=write --bs=1m --iodepth=8 \
        --ioengine=io_uring --direct=1 --output=/dev/null
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# run_fio NAME RW BS QD JOBS -> prints "iops mb_s p99_us"
run_fio() {
    local out=$WORK/fio-$1.json
    "$FIO" --name="$1" --filename="$FILE" --ioengine=io_uring --direct=1 --rw="$2" --bs="$3" \
        --iodepth="$4" --numjobs="$5" --cpus_allowed="0-$(($5 - 1))" --cpus_allowed_policy=split \
        --group_reporting --time_based --runtime="$RUNTIME" \
        --norandommap --randrepeat=0 --lat_percentiles=1 --output-format=json --output="$out"
    python3 - "$out" "$2" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["write" if "write" in sys.argv[2] else "read"]
p99 = side["lat_ns"].get("percentile", {}).get("99.000000", 0) / 1000.0
print(f'{side["iops"]:.0f} {side["bw_bytes"] / 1e6:.1f} {p99:.1f}')
PY
}

# run_ferrite NAME RW BS QD SHARDS -> prints "iops mb_s p99_us"
run_ferrite() {
    local out=$WORK/ferrite-$1.json
    "$BENCH" --target "file:$FILE" --rw "$2" --bs "$3" --iodepth "$4" --shards "$5" --pin 1 \
        --runtime "$RUNTIME" --json >"$out" 2>"$WORK/ferrite-$1.stderr"
    python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f'{r["iops"]:.0f} {r["bandwidth_mb_s"]:.1f} {r["latency"]["latency_ns_p99"] / 1000.0:.1f}')
PY
}

# mean "iops mb_s p99" ... -> the column-wise mean
mean() {
    python3 -c '
import sys
rows = [list(map(float, r.split())) for r in sys.argv[1:]]
cols = [sum(c) / len(rows) for c in zip(*rows)]
print(f"{cols[0]:.0f} {cols[1]:.1f} {cols[2]:.1f}")' "$@"
}

CASES=("randread_4k_qd32 randread 4k 32" "randwrite_4k_qd32 randwrite 4k 32"
       "read_128k_qd8 read 128k 8" "write_128k_qd8 write 128k 8")

echo "compare-fio: $FILE, ${RUNTIME}s per run, $ROUNDS rounds, $(nproc) CPUs; load at start:$(uptime | sed 's/.*load average://')"
printf '%-22s %6s | %10s %9s %9s | %10s %9s %9s | %6s\n' workload shards fio_iops fio_MB/s \
    fio_p99us fer_iops fer_MB/s fer_p99us ratio
declare -A RATIO
for shards in 1 2; do
    for spec in "${CASES[@]}"; do
        read -r name rw bs qd <<<"$spec"
        fio_runs=() fer_runs=()
        for ((round = 0; round < ROUNDS; round++)); do
            if ((round % 2 == 0)); then
                fio_runs+=("$(run_fio "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")")
                fer_runs+=("$(run_ferrite "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")")
            else
                fer_runs+=("$(run_ferrite "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")")
                fio_runs+=("$(run_fio "$name-$shards-$round" "$rw" "$bs" "$qd" "$shards")")
            fi
        done
        read -r f_iops f_mbs f_p99 <<<"$(mean "${fio_runs[@]}")"
        read -r b_iops b_mbs b_p99 <<<"$(mean "${fer_runs[@]}")"
        if [[ $bs == 4k ]]; then
            ratio=$(python3 -c "print(f'{$b_iops / max($f_iops, 1e-9):.2f}')")
        else
            ratio=$(python3 -c "print(f'{$b_mbs / max($f_mbs, 1e-9):.2f}')")
        fi
        RATIO[$name-$shards]=$ratio
        printf '%-22s %6s | %10s %9s %9s | %10s %9s %9s | %6s\n' "$name" "$shards" "$f_iops" \
            "$f_mbs" "$f_p99" "$b_iops" "$b_mbs" "$b_p99" "$ratio"
    done
done
echo "compare-fio: load at end:$(uptime | sed 's/.*load average://')"
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
