# Shared pieces of the benches/*.sh scripts. A script sets BENCH (its name in messages) and
# sources this file:
#
#   BENCH=compare-fio
#   . "$(dirname "$0")/lib.sh"
#
# It sets ROOT (the repository) and TARGET_DIR (CARGO_TARGET_DIR, default <repo>/target).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# file_argument ARGS...: the one argument FILE the script takes; exits 2 with the usage
# otherwise.
file_argument() {
    if [[ $# -ne 1 ]]; then
        echo "usage: $0 FILE" >&2
        exit 2
    fi
    echo "$1"
}

# need CMD...: exits 2 naming the first command that is not installed.
need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "$BENCH: $c not found" >&2; exit 2; }
    done
}

# build_release BIN...: builds ferrite-tools' binaries BIN (release) into $TARGET_DIR/release.
build_release() {
    local bins=() b
    for b in "$@"; do
        bins+=(--bin "$b")
    done
    echo "$BENCH: building $* (release, target dir $TARGET_DIR)" >&2
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p ferrite-tools "${bins[@]}")
}

# scratch_dir [DIR]: sets DIR to DIR, or to a temporary directory under /var/tmp removed on
# exit, and creates it.
scratch_dir() {
    DIR=${1:-}
    if [[ -z $DIR ]]; then
        DIR=$(mktemp -d "/var/tmp/ferrite-$BENCH.XXXXXX")
        trap 'rm -rf "$DIR"' EXIT
    fi
    mkdir -p "$DIR"
}

# work_dir: sets WORK to a temporary directory removed on exit.
work_dir() {
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
}

# fio_fill FILE SIZE: writes FILE sequentially with fio (so it is a fully written, allocated
# file).
fio_fill() {
    "$FIO" --name=prep --filename="$1" --size="$2" --rw=write --bs=1m --iodepth=8 \
        --ioengine=io_uring --direct=1 --output=/dev/null
}

# fio_figures JSON RW: "iops mb_s p99_us" of the read or write side of fio's JSON report.
fio_figures() {
    python3 - "$1" "$2" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["write" if "write" in sys.argv[2] else "read"]
p99 = side["lat_ns"].get("percentile", {}).get("99.000000", 0) / 1000.0
print(f'{side["iops"]:.0f} {side["bw_bytes"] / 1e6:.1f} {p99:.1f}')
PY
}

# bench_figures JSON: "iops mb_s p99_us" of a ferrite-bench --json report.
bench_figures() {
    python3 - "$1" <<'PY'
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

# ferrite_over_fio BS FIO_RUNS FERRITE_RUNS: sets F_IOPS F_MBS F_P99 (fio) and B_IOPS B_MBS
# B_P99 (ferrite) to the means of the runs (newline-separated "iops mb_s p99" lines), and R to
# ferrite over fio: IOPS for 4k, MB/s otherwise.
ferrite_over_fio() {
    local fio_runs ferrite_runs
    mapfile -t fio_runs <<<"$2"
    mapfile -t ferrite_runs <<<"$3"
    read -r F_IOPS F_MBS F_P99 <<<"$(mean "${fio_runs[@]}")"
    read -r B_IOPS B_MBS B_P99 <<<"$(mean "${ferrite_runs[@]}")"
    if [[ $1 == 4k ]]; then
        R=$(python3 -c "print(f'{$B_IOPS / max($F_IOPS, 1e-9):.2f}')")
    else
        R=$(python3 -c "print(f'{$B_MBS / max($F_MBS, 1e-9):.2f}')")
    fi
}

# load: the machine's load averages.
load() {
    uptime | sed 's/.*load average://'
}

# val LINE KEY: the value of KEY=VALUE in LINE.
val() {
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

# ferrited_toml PORT IQN LUN [HEAD]: a ferrited configuration with one portal on
# 127.0.0.1:PORT and target IQN whose LUN 0 has the lines LUN (after `id = 0`); the lines
# HEAD (tables such as [daemon] and [[pool]]) come first.
ferrited_toml() {
    printf '%s[[portal]]\naddress = "127.0.0.1:%s"\n[[target]]\niqn = "%s"\n[[target.lun]]\nid = 0\n%s\n' \
        "${4:-}" "$1" "$2" "$3"
}

# wait_ready OUT PID SECONDS ERR: waits until ferrited (PID) has printed its ready line into
# OUT; exits 1 with ERR printed if it exits first or is not ready within SECONDS.
wait_ready() {
    local out=$1 pid=$2 tries=$(($3 * 20))
    for ((; tries > 0; tries--)); do
        grep -q '^ready ' "$out" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "$BENCH: ferrited did not start" >&2
    cat "$4" >&2
    exit 1
}
