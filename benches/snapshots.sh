#!/usr/bin/env bash
# Many snapshots of one pool volume, one run on this machine:
#
#   benches/snapshots.sh [DIR]
#
# 1. ferrite-snapshot-bench (in-process, one reactor; taking 65,535 snapshots one RPC and
#    one txg each would take over an hour, at about 75 ms a txg at that count, so it
#    takes them FERRITE_SNAPSHOT_BATCH per txg, default 256, with a 4K write before each
#    batch) creates a pool file in DIR (default: a temporary directory under /var/tmp) with a
#    1 GiB volume and prints the create rate, the `snapshot_list` time with the worst 4K read
#    latency a concurrent reader on the same reactor saw meanwhile (goal <= 10 ms; on a loaded
#    machine the thread's preemption shows there too, so the listing's longest stretch of CPU
#    time between two yields, list_slice_cpu_ms, is printed beside it), 4K random-write IOPS
#    with the snapshots over IOPS with none (goal >= 0.95: the median of
#    FERRITE_SNAPSHOT_ROUNDS rounds, each one write phase on this pool, on a pool without
#    snapshots and on a pool with two, in rotating order, the newest snapshot taken again
#    before each phase; write_iops_ratio_vs_two compares with the pool with two snapshots,
#    whose first holds the same blocks as this pool's first 65,534) and
#    the import time (goal <= 5 s);
# 2. ferrited imports the pool (start-up time to ready) and `ferritectl snapshot list` lists
#    the snapshots over the control socket (goal <= 1 s);
# 3. ferrite-snapshot-bench --destroy-existing destroys them all (1024 per txg).
# The last line: `snapshots n=… list_s=… import_s=… max_io_stall_ms=… write_iops_ratio=…`,
# with list_s from ferritectl (step 2).
#
# Environment: FERRITE_SNAPSHOTS (default 65535), FERRITE_SNAPSHOT_BATCH (256),
# FERRITE_SNAPSHOT_ROUNDS (5),
# FERRITE_BENCH_SECONDS (5, each write phase), FERRITE_SNAPSHOT_PORTS (base port for
# ferrited's portal, default 3350), CARGO_TARGET_DIR (default <repo>/target).
set -euo pipefail
BENCH=snapshots
. "$(dirname "$0")/lib.sh"

N=${FERRITE_SNAPSHOTS:-65535}
BATCH=${FERRITE_SNAPSHOT_BATCH:-256}
SECONDS_EACH=${FERRITE_BENCH_SECONDS:-5}
ROUNDS=${FERRITE_SNAPSHOT_ROUNDS:-5}
PORT=${FERRITE_SNAPSHOT_PORTS:-3350}
scratch_dir "${1:-}"

build_release ferrite-snapshot-bench ferrited ferritectl
BIN=$TARGET_DIR/release

line=$("$BIN/ferrite-snapshot-bench" --file "$DIR/pool.img" --snapshots "$N" --batch "$BATCH" \
    --seconds "$SECONDS_EACH" --rounds "$ROUNDS" --keep)
echo "in-process: $line"

ferrited_toml "$PORT" iqn.2026-12.io.ferrite:snapshots $'backend = "memory"\nsize = "16M"' \
    $'[daemon]\nshards = 1\n[[pool]]\nname = "bench"\ndevices = [{ path = "'"$DIR"$'/pool.img" }]\n' \
    >"$DIR/ferrited.toml"
start=$(date +%s.%N)
"$BIN/ferrited" --config "$DIR/ferrited.toml" --data-dir "$DIR/data" --metrics off \
    >"$DIR/ferrited.out" 2>"$DIR/ferrited.err" &
PID=$!
stop_daemon() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
wait_ready "$DIR/ferrited.out" "$PID" 60 "$DIR/ferrited.err"
ready=$(date +%s.%N)
t0=$(date +%s.%N)
rows=$("$BIN/ferritectl" --socket "$DIR/data/ferrited.sock" snapshot list bench/v | tail -n +2 | wc -l)
t1=$(date +%s.%N)
stop_daemon
list_s=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
daemon_import_s=$(python3 -c "print(f'{$ready - $start:.2f}')")
echo "ferrited: ready after ${daemon_import_s} s (import of the pool); ferritectl snapshot list: $rows rows in $list_s s"
if [[ $rows -ne $N ]]; then
    echo "snapshots: ferritectl listed $rows snapshots, $N were taken" >&2
    exit 1
fi

destroyed=$("$BIN/ferrite-snapshot-bench" --file "$DIR/pool.img" --destroy-existing)
echo "destroy: $destroyed"

echo "create_per_s=$(val "$line" create_per_s) in_process_list_s=$(val "$line" list_s) \
list_slice_cpu_ms=$(val "$line" list_slice_cpu_ms) \
write_iops_ratio_vs_two=$(val "$line" write_iops_ratio_vs_two) \
destroy_all_s=$(val "$destroyed" destroy_all_s) daemon_ready_s=$daemon_import_s"
echo "snapshots n=$N list_s=$list_s import_s=$(val "$line" import_s) \
max_io_stall_ms=$(val "$line" max_io_stall_ms) write_iops_ratio=$(val "$line" write_iops_ratio)"
