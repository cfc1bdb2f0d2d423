#!/usr/bin/env bash
# ferrited against tgtd with the same neutral clients, in one run, on the same kind of backing
# file (a 1 GiB file filled with data, opened with O_DIRECT by both targets):
#   4K random reads : libiscsi's iscsi-perf -r, QD 1, 32, 128
#   4K writes       : QEMU's iSCSI driver, `qemu-img bench -w` (it has no random mode: the
#                     writes go at a 1028 KiB stride so consecutive writes hit distant blocks)
# Each target's CPU time is sampled from /proc/PID/stat around every run.
# Prints a table and, last, exactly:
#   ratio iops_randread_qd32=R1 iops_randwrite_qd32=R2 cpu_per_io_randread=R3 cpu_per_io_randwrite=R4
# (ferrite over tgtd). Every case runs ROUNDS times (default 3), alternating which target goes
# first; the table shows each target's median IOPS and median CPU per I/O, so a burst of noise
# from the shared host in one run does not decide the ratio. Environment: ROUNDS, RUNTIME
# (seconds per read run, default 10), WRITES (writes per write run at QD >= 32, default
# 200000), DIR (where the backing files go, default a temporary directory under /var/tmp),
# FERRITED (binary, default target/release/ferrited).
set -euo pipefail
BENCH=compare-tgt
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
WRITES=${WRITES:-200000}
FERRITED=${FERRITED:-target/release/ferrited}
DIR=${DIR:-$(mktemp -d /var/tmp/ferrite-compare.XXXXXX)}
FERRITE_PORT=3360
TGT_PORT=3361
TGT_CONTROL=7
IQN_F=iqn.2026-11.io.ferrite:bench
IQN_T=iqn.2026-11.io.tgt:bench

command -v iscsi-perf >/dev/null || { echo "compare-tgt: iscsi-perf missing (apt-get install libiscsi-bin)"; exit 1; }
command -v tgtd >/dev/null || { echo "compare-tgt: tgtd missing (apt-get install tgt)"; exit 1; }
qemu-img --help | grep -q iscsi || { echo "compare-tgt: QEMU has no iSCSI driver (install qemu-block-extra matching qemu-utils; see ci/install-deps)"; exit 1; }
[ -x "$FERRITED" ] || cargo build --release -p ferrite-tools --bin ferrited

FERRITE_PID=
TGT_PID=
cleanup() {
    [ -n "$FERRITE_PID" ] && kill -TERM "$FERRITE_PID" 2>/dev/null && wait "$FERRITE_PID" 2>/dev/null || true
    # tgtd ignores SIGTERM while it has targets; it keeps nothing we need, so end it outright.
    [ -n "$TGT_PID" ] && kill -KILL "$TGT_PID" 2>/dev/null && wait "$TGT_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

echo "compare-tgt: preparing two 1 GiB backing files filled with data in $DIR"
mkdir -p "$DIR/ferrite"
for f in "$DIR/ferrite/lun0.img" "$DIR/tgt-lun.img"; do
    dd if=/dev/urandom of="$f" bs=1M count=1024 oflag=direct status=none
done

ferrited_toml "$FERRITE_PORT" "$IQN_F" \
    $'backend = "file"\npath = "lun0.img"\nblock_size = 512\nphysical_block_size = 4096' \
    >"$DIR/ferrite.toml"
"$FERRITED" --config "$DIR/ferrite.toml" --data-dir "$DIR/ferrite" --keepalive-secs 0 >"$DIR/ferrited.log" 2>&1 &
FERRITE_PID=$!
tgtd -f -C "$TGT_CONTROL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$DIR/tgtd.log" 2>&1 &
TGT_PID=$!
wait_ready "$DIR/ferrited.log" "$FERRITE_PID" 10 "$DIR/ferrited.log"
sleep 1
tgtadm -C "$TGT_CONTROL" --lld iscsi --op new --mode target --tid 1 -T "$IQN_T"
tgtadm -C "$TGT_CONTROL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 \
    -b "$DIR/tgt-lun.img" --bstype rdwr --bsoflags direct
tgtadm -C "$TGT_CONTROL" --lld iscsi --op bind --mode target --tid 1 -I ALL

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

# run NAME PID URL-or-opts ; sets IOPS and CPU_US_PER_IO
run_read() {
    local pid=$1 url=$2 qd=$3
    local before after out
    before=$(cpu_ticks "$pid")
    out=$(iscsi-perf -m "$qd" -b 8 -r -t "$RUNTIME" "$url" 2>&1 | tr '\r' '\n' | grep 'iops average' | tail -1)
    after=$(cpu_ticks "$pid")
    IOPS=$(echo "$out" | sed -E 's/.*iops average ([0-9]+).*/\1/')
    CPU_US_PER_IO=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$IOPS" -v s="$RUNTIME" 'BEGIN { printf "%.1f", t / hz * 1e6 / (n * s) }')
}
run_write() {
    local pid=$1 opts=$2 qd=$3
    local count=$WRITES
    [ "$qd" -lt 32 ] && count=$((WRITES / 10))
    local before after secs
    before=$(cpu_ticks "$pid")
    secs=$(qemu-img bench -w -t none -c "$count" -d "$qd" -s 4096 -S 1052672 --image-opts "$opts" 2>&1 |
        sed -nE 's/.*Run completed in ([0-9.]+) seconds.*/\1/p')
    after=$(cpu_ticks "$pid")
    IOPS=$(awk -v c="$count" -v s="$secs" 'BEGIN { printf "%d", c / s }')
    CPU_US_PER_IO=$(awk -v t=$((after - before)) -v hz="$TICKS" -v c="$count" 'BEGIN { printf "%.1f", t / hz * 1e6 / c }')
}

f_url="iscsi://127.0.0.1:$FERRITE_PORT/$IQN_F/0"
t_url="iscsi://127.0.0.1:$TGT_PORT/$IQN_T/1"
f_opts="driver=iscsi,transport=tcp,portal=127.0.0.1:$FERRITE_PORT,target=$IQN_F,lun=0"
t_opts="driver=iscsi,transport=tcp,portal=127.0.0.1:$TGT_PORT,target=$IQN_T,lun=1"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# measure KIND QD: runs both targets ROUNDS times, alternating the order; sets FI FC TI TC
# (medians of IOPS and CPU per I/O) and prints each round on stderr.
measure() {
    local kind=$1 qd=$2 r fis="" fcs="" tis="" tcs=""
    for ((r = 0; r < ROUNDS; r++)); do
        local order=(f t)
        ((r % 2 == 1)) && order=(t f)
        for who in "${order[@]}"; do
            if [ "$who" = f ]; then
                if [ "$kind" = read ]; then run_read "$FERRITE_PID" "$f_url" "$qd"; else run_write "$FERRITE_PID" "$f_opts" "$qd"; fi
                fis="$fis $IOPS"; fcs="$fcs $CPU_US_PER_IO"
            else
                if [ "$kind" = read ]; then run_read "$TGT_PID" "$t_url" "$qd"; else run_write "$TGT_PID" "$t_opts" "$qd"; fi
                tis="$tis $IOPS"; tcs="$tcs $CPU_US_PER_IO"
            fi
        done
    done
    echo "compare-tgt: $kind qd=$qd ferrite iops:$fis cpu_us/io:$fcs | tgtd iops:$tis cpu_us/io:$tcs" >&2
    FI=$(echo "$fis" | median); FC=$(echo "$fcs" | median)
    TI=$(echo "$tis" | median); TC=$(echo "$tcs" | median)
}

row() {
    local name=$1 qd=$2
    printf '%-16s %4s | %10.0f %10.1f %9.1f | %10.0f %10.1f %9.1f | %6.2f\n' "$name" "$qd" "$FI" "$(echo "$qd $FI" | awk '{print $1 / $2 * 1e6}')" "$FC" \
        "$TI" "$(echo "$qd $TI" | awk '{print $1 / $2 * 1e6}')" "$TC" "$(echo "$FI $TI" | awk '{print $1 / $2}')"
}

printf '%-16s %4s | %10s %10s %9s | %10s %10s %9s | %6s\n' workload qd "ferrite" "lat_us" "cpu_us/io" "tgtd" "lat_us" "cpu_us/io" ratio
declare -A R
for kind in read write; do
    name=randread_4k
    [ "$kind" = write ] && name=write_4k_stride
    for qd in 1 32 128; do
        measure "$kind" "$qd"
        row "$name" "$qd"
        R[${kind}_iops_$qd]=$(echo "$FI $TI" | awk '{printf "%.2f", $1 / $2}')
        R[${kind}_cpu_$qd]=$(echo "$FC $TC" | awk '{printf "%.2f", ($2 > 0) ? $1 / $2 : 0}')
    done
done
echo "(medians of $ROUNDS rounds; lat_us: mean latency by Little's law, QD / IOPS; cpu_us/io: target CPU time per I/O from /proc)"
echo "ratio iops_randread_qd32=${R[read_iops_32]} iops_randwrite_qd32=${R[write_iops_32]} cpu_per_io_randread=${R[read_cpu_32]} cpu_per_io_randwrite=${R[write_cpu_32]}"
