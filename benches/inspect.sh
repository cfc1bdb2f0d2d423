#!/usr/bin/env bash
# How fast ferrite-inspect verifies a pool, against the device: ferrite-inspect on a pool file
# and fio's sequential read (ioengine=io_uring, direct=1, bs=1m, iodepth=32) of the same file,
# in one run, and the ratio of their MB/s (goal: at least 0.5).
#
#   benches/inspect.sh FILE
#
# FILE holds the pool; when it is missing, ferrite-bench creates it with one volume of
# FERRITE_BENCH_SIZE and fills the volume once with incompressible data through the engine
# (--fill: many 128 KiB writes in flight, committed), so the pool holds that much live data in
# 4 KiB blocks laid out as the txg syncs placed them. ferrite-inspect's MB/s is the bytes of
# tree blocks it read and verified over its wall time (including the metadata load); fio's is
# its read bandwidth over the whole file. Each round runs both, the order alternating between
# rounds, and the figures are averaged.
#
# Environment:
#   FERRITE_BENCH_SIZE    volume size when FILE is created (default 3g)
#   FERRITE_BENCH_ROUNDS  rounds (default 2)
#   CARGO_TARGET_DIR      where the release build goes (default: <repo>/target)
#
# The last line is
#   inspect inspect_mb_s=A fio_mb_s=B ratio=A/B
set -euo pipefail
BENCH=inspect
. "$(dirname "$0")/lib.sh"

FILE=$(file_argument "$@")
SIZE=${FERRITE_BENCH_SIZE:-3g}
ROUNDS=${FERRITE_BENCH_ROUNDS:-2}
FIO=${FIO:-fio}
need "$FIO" python3

build_release ferrite-bench ferrite-inspect
BENCH_BIN=$TARGET_DIR/release/ferrite-bench
INSPECT=$TARGET_DIR/release/ferrite-inspect

if [[ ! -e $FILE ]]; then
    echo "inspect: creating a pool in $FILE with a $SIZE volume, filled once" >&2
    "$BENCH_BIN" --target "volume:$FILE" --size "$SIZE" --fill --rw read --bs 128k --iodepth 1 \
        --io-count 1 >/dev/null
fi

work_dir

# run_inspect ROUND -> prints "mb_s"
run_inspect() {
    local err=$WORK/inspect-$1.stderr status=0
    "$INSPECT" "$FILE" >"$WORK/inspect-$1.stdout" 2>"$err" || status=$?
    if [[ $status -ne 0 ]]; then
        echo "inspect: ferrite-inspect exited $status:" >&2
        cat "$WORK/inspect-$1.stdout" "$err" >&2
        exit 1
    fi
    # "ferrite-inspect: verified N bytes in S s (M MB/s)"
    python3 - "$err" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"verified (\d+) bytes in ([0-9.]+) s", text)
if not m:
    sys.exit("inspect: no summary line from ferrite-inspect")
print(f"{int(m.group(1)) / float(m.group(2)) / 1e6:.1f} {int(m.group(1))}")
PY
}

# run_fio ROUND -> prints "mb_s"
run_fio() {
    local out=$WORK/fio-$1.json
    "$FIO" --name=seqread --filename="$FILE" --ioengine=io_uring --direct=1 --rw=read \
        --bs=1m --iodepth=32 --size="$(stat -c %s "$FILE")" --output-format=json --output="$out"
    python3 - "$out" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
print(f'{job["read"]["bw_bytes"] / 1e6:.1f}')
PY
}

echo "inspect: $FILE ($(stat -c %s "$FILE") bytes), $ROUNDS rounds, $(nproc) CPUs; load at start:$(load)"
printf '%-6s %14s %16s %10s\n' round inspect_MB/s inspect_bytes fio_MB/s
inspect_sum=0
fio_sum=0
for ((round = 0; round < ROUNDS; round++)); do
    if ((round % 2 == 0)); then
        read -r i_mbs i_bytes <<<"$(run_inspect "$round")"
        f_mbs=$(run_fio "$round")
    else
        f_mbs=$(run_fio "$round")
        read -r i_mbs i_bytes <<<"$(run_inspect "$round")"
    fi
    printf '%-6s %14s %16s %10s\n' "$round" "$i_mbs" "$i_bytes" "$f_mbs"
    inspect_sum=$(python3 -c "print($inspect_sum + $i_mbs)")
    fio_sum=$(python3 -c "print($fio_sum + $f_mbs)")
done
echo "inspect: load at end:$(load)"
python3 -c "
i, f = $inspect_sum / $ROUNDS, $fio_sum / $ROUNDS
print(f'inspect inspect_mb_s={i:.1f} fio_mb_s={f:.1f} ratio={i / max(f, 1e-9):.2f}')"
