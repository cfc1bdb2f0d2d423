#!/usr/bin/env bash
# Redundancy groups against plain devices on the same backing, through ferrite-bench's
# group: targets (the pool's device layer driven directly: mirror, RAID-Z, stripe; see
# tools/src/bench/group.rs). Each case is measured on memory devices (the CPU cost of the
# group) and on files (the disk), in alternating rounds (baseline first in even rounds, the
# group first in odd ones); each ratio is the median over the rounds.
#
#   benches/redundancy.sh [DIR]
#
# DIR holds the member files (default: a temporary directory under /var/tmp, removed after).
#
# Cases (group over baseline):
#   mirror_randwrite    2-way mirror over one device, 4K random write QD32 (IOPS; goal 0.95)
#   raidz1_seqwrite     RAID-Z1 4+1 over a 4-device stripe, 128K sequential write QD8 (MB/s;
#                       goal 0.8)
#   raidz2_seqwrite     RAID-Z2 4+2 over the same stripe (MB/s; goal 0.75)
#   degraded_randread   RAID-Z1 4+1 with one device missing over the healthy group, 4K random
#                       read QD32 (IOPS; goal 0.5)
# Parity CPU: CPU seconds per GB written by the RAID-Z groups on memory devices, against the
# stripe's, and per GB read rebuilt by the degraded group against the healthy one.
#
# Not measured yet: resilver and foreground I/O during a scrub need pools built from
# redundancy groups (format 5); the ratio line prints n/a for them.
#
# Environment:
#   FERRITE_BENCH_RUNTIME  seconds per run (default 5)
#   FERRITE_BENCH_ROUNDS   rounds (default 3)
#   FERRITE_GROUP_MEM      memory per device (default 256m)
#   FERRITE_GROUP_FILE     bytes per member file (default 256m; 18 members in all)
#   FERRITE_BENCH_BIN      a ferrite-bench binary to measure instead of building one
#
# The last line is
#   ratio mirror_randwrite=… raidz1_seqwrite=… raidz2_seqwrite=… degraded_randread=… resilver=n/a scrub_fg_iops=n/a scrub_fg_p99=n/a
# (the file-backed figures).
set -euo pipefail
BENCH=redundancy
. "$(dirname "$0")/lib.sh"

RUNTIME=${FERRITE_BENCH_RUNTIME:-5}
ROUNDS=${FERRITE_BENCH_ROUNDS:-3}
MEM=${FERRITE_GROUP_MEM:-256m}
FILE_SIZE=${FERRITE_GROUP_FILE:-256m}
need python3
if [[ -n ${FERRITE_BENCH_BIN:-} ]]; then
    BENCH_BIN=$FERRITE_BENCH_BIN
else
    build_release ferrite-bench
    BENCH_BIN=$TARGET_DIR/release/ferrite-bench
fi
scratch_dir "${1:-}"
# Reports of the runs (inside DIR: scratch_dir's trap removes a temporary DIR).
WORK=$DIR/reports
mkdir -p "$WORK"

# run TARGET RW BS QD -> "iops mb_s p99_us cpu_s"
run() {
    local target=$1 rw=$2 bs=$3 qd=$4 out=$WORK/run.json
    if ! "$BENCH_BIN" --target "$target" --rw "$rw" --bs "$bs" --iodepth "$qd" --shards 1 \
        --pin 1 --runtime "$RUNTIME" --json >"$out" 2>"$WORK/run.stderr"; then
        echo "redundancy: ferrite-bench failed on $target:" >&2
        cat "$WORK/run.stderr" >&2
        exit 1
    fi
    python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu = r["cpu_user_s"] + r["cpu_system_s"]
print(f'{r["iops"]:.0f} {r["bandwidth_mb_s"]:.1f} {r["latency"]["latency_ns_p99"] / 1000.0:.1f} {cpu:.3f}')
PY
}

# median X... -> the median
median() {
    python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.argv[1:])):.3f}")' "$@"
}

# name | baseline layout | group layout | rw bs qd | figure (iops or mb_s)
CASES=("mirror_randwrite|single|mirror2|randwrite 4k 32|iops"
       "raidz1_seqwrite|stripe4|raidz1x5|write 128k 8|mb_s"
       "raidz2_seqwrite|stripe4|raidz2x6|write 128k 8|mb_s"
       "degraded_randread|raidz1x5|raidz1x5-missing1|randread 4k 32|iops")

# The member files are written whole once per layout first (by the layout itself), so reads
# reach the disk rather than unwritten extents.
for layout in single mirror2 stripe4 raidz1x5 raidz2x6; do
    if ! "$BENCH_BIN" --target "group:$layout@file:$DIR/$layout:$FILE_SIZE" --rw write --bs 128k \
        --iodepth 8 --shards 1 >/dev/null 2>"$WORK/fill.stderr"; then
        echo "redundancy: filling $layout failed:" >&2
        cat "$WORK/fill.stderr" >&2
        exit 1
    fi
done

declare -A RATIO
echo "redundancy: ${RUNTIME}s per run, $ROUNDS rounds, memory devices of $MEM, files of $FILE_SIZE in $DIR, $(nproc) CPUs"
printf '%-8s %-20s | %10s %10s | %10s %10s | %6s %13s\n' backing case base_iops base_MB/s \
    group_iops group_MB/s ratio cpu_s/GB
for backing in mem file; do
    for spec in "${CASES[@]}"; do
        IFS='|' read -r name base group workload figure <<<"$spec"
        read -r rw bs qd <<<"$workload"
        target_of() {
            if [[ $backing == mem ]]; then
                echo "group:$1@mem:$MEM"
            else
                # Each layout has its own files (a RAID-Z group's are not a stripe's).
                echo "group:$1@file:$DIR/${1%-missing*}:$FILE_SIZE"
            fi
        }
        ratios=() base_runs=() group_runs=()
        for ((round = 0; round < ROUNDS; round++)); do
            if ((round % 2 == 0)); then
                b=$(run "$(target_of "$base")" "$rw" "$bs" "$qd")
                g=$(run "$(target_of "$group")" "$rw" "$bs" "$qd")
            else
                g=$(run "$(target_of "$group")" "$rw" "$bs" "$qd")
                b=$(run "$(target_of "$base")" "$rw" "$bs" "$qd")
            fi
            base_runs+=("$b") group_runs+=("$g")
            read -r b_iops b_mbs _ b_cpu <<<"$b"
            read -r g_iops g_mbs _ g_cpu <<<"$g"
            if [[ $figure == iops ]]; then
                ratios+=("$(python3 -c "print($g_iops / max($b_iops, 1))")")
            else
                ratios+=("$(python3 -c "print($g_mbs / max($b_mbs, 0.001))")")
            fi
        done
        r=$(median "${ratios[@]}")
        # Medians of the figures, and CPU seconds per GB moved (baseline, group).
        read -r bi bm gi gm bcpu gcpu <<<"$(python3 - "$RUNTIME" "${base_runs[@]}" "${group_runs[@]}" <<'PY'
import statistics, sys
runtime = float(sys.argv[1])
runs = [list(map(float, r.split())) for r in sys.argv[2:]]
half = len(runs) // 2
base, group = runs[:half], runs[half:]
med = lambda rows, i: statistics.median(r[i] for r in rows)
# CPU seconds per GB moved: cpu / (MB/s x seconds / 1000).
per_gb = lambda rows: statistics.median(r[3] / max(r[1] * runtime / 1000, 1e-9) for r in rows)
print(f"{med(base, 0):.0f} {med(base, 1):.1f} {med(group, 0):.0f} {med(group, 1):.1f} {per_gb(base):.2f} {per_gb(group):.2f}")
PY
)"
        printf '%-8s %-20s | %10s %10s | %10s %10s | %6s %6s/%-6s\n' "$backing" "$name" "$bi" "$bm" \
            "$gi" "$gm" "$r" "$bcpu" "$gcpu"
        [[ $backing == file ]] && RATIO[$name]=$r
    done
done
echo "(ratios: medians over the rounds of group over baseline; cpu_s/GB: CPU seconds per GB moved, baseline/group)"
echo "ratio mirror_randwrite=${RATIO[mirror_randwrite]} raidz1_seqwrite=${RATIO[raidz1_seqwrite]} raidz2_seqwrite=${RATIO[raidz2_seqwrite]} degraded_randread=${RATIO[degraded_randread]} resilver=n/a scrub_fg_iops=n/a scrub_fg_p99=n/a"
