#!/usr/bin/env bash
# Old build against new build, in one sitting: builds two revisions (release), then runs
# benches/compare-engine.sh and benches/compare-tgt.sh (this checkout's copies, so both builds
# are measured by the same scripts) with each build in turn, alternating old, new, new, old
# (AB_ROUNDS times), and prints each ratio's median per build and new over old.
#
#   benches/ab.sh OLD_REV NEW_REV      e.g. benches/ab.sh origin/main HEAD
#
# A revision is anything `git rev-parse` takes; WORKTREE stands for this checkout's working
# tree as it is (uncommitted changes included). Each revision is exported with `git archive`
# into AB_DIR/src-<sha> and built into AB_DIR/target-<sha>, which persist between runs (a
# second run rebuilds nothing).
#
# compare-engine's ratios are ferrite over fio on the same file; compare-tgt's are ferrited
# over tgtd with the same clients: each is measured against its own baseline in the same run,
# so the two builds' ratios compare even when the machine's speed drifts during the sitting.
#
# Environment:
#   AB_DIR        where sources, builds and the benchmark files go (default /var/tmp/ferrite-ab)
#   AB_ROUNDS     old-new-new-old cycles (default 1: each build measured twice)
#   AB_SKIP_TGT   set to 1 to run compare-engine only
#   plus what compare-engine.sh and compare-tgt.sh take (FERRITE_BENCH_RUNTIME, ROUNDS, ...).
#
# The last line is
#   ab <case>=<new/old> ...    (medians; above 1 is better for IOPS and MB/s, below 1 for CPU)
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 OLD_REV NEW_REV" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AB_DIR=${AB_DIR:-/var/tmp/ferrite-ab}
AB_ROUNDS=${AB_ROUNDS:-1}
mkdir -p "$AB_DIR"

# build REV: prints the directory holding the release binaries of REV.
build() {
    local rev=$1 sha src target
    if [[ $rev == WORKTREE ]]; then
        sha=worktree
        src=$ROOT
    else
        sha=$(git -C "$ROOT" rev-parse --verify "$rev^{commit}") || {
            echo "ab: $rev is not a revision" >&2
            exit 2
        }
        src=$AB_DIR/src-$sha
        if [[ ! -d $src ]]; then
            mkdir -p "$src.tmp"
            git -C "$ROOT" archive "$sha" | tar -x -C "$src.tmp"
            mv "$src.tmp" "$src"
        fi
    fi
    target=$AB_DIR/target-$sha
    echo "ab: building $rev ($sha) into $target" >&2
    (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release -q -p ferrite-tools \
        --bin ferrite-bench --bin ferrited) >&2
    echo "$target/release"
}

OLD_BIN=$(build "$1")
NEW_BIN=$(build "$2")
LOG=$AB_DIR/ab-$(date -u +%Y%m%dT%H%M%S).log
echo "ab: old $1 ($OLD_BIN), new $2 ($NEW_BIN); log $LOG" >&2

# run WHO BIN: one compare-engine and one compare-tgt run of the build in BIN; appends
# "WHO ratio ..." lines to $LOG.
run() {
    local who=$1 bin=$2 out
    echo "ab: compare-engine, $who build ($(date -u +%T))" >&2
    out=$(FERRITE_BENCH_BIN=$bin/ferrite-bench "$ROOT/benches/compare-engine.sh" "$AB_DIR/engine.img" 2>&1) || {
        echo "$out" >&2
        exit 1
    }
    echo "$out" | grep -v '^ratio' >>"$LOG"
    echo "$who $(echo "$out" | grep '^ratio' | tail -1)" | tee -a "$LOG" >&2
    if [[ ${AB_SKIP_TGT:-0} != 1 ]]; then
        echo "ab: compare-tgt, $who build ($(date -u +%T))" >&2
        out=$(cd "$ROOT" && FERRITED=$bin/ferrited benches/compare-tgt.sh 2>&1) || {
            echo "$out" >&2
            exit 1
        }
        echo "$out" | grep -v '^ratio' >>"$LOG"
        echo "$who $(echo "$out" | grep '^ratio' | tail -1)" | tee -a "$LOG" >&2
    fi
}

for ((r = 0; r < AB_ROUNDS; r++)); do
    run old "$OLD_BIN"
    run new "$NEW_BIN"
    run new "$NEW_BIN"
    run old "$OLD_BIN"
done

python3 - "$LOG" <<'PY'
import statistics, sys
figures = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 3 or parts[0] not in ("old", "new") or parts[1] != "ratio":
        continue
    for kv in parts[2:]:
        key, _, value = kv.partition("=")
        try:
            figures.setdefault(key, {}).setdefault(parts[0], []).append(float(value))
        except ValueError:
            pass
print(f"{'case':28} {'old (median)':>14} {'new (median)':>14} {'new/old':>8}")
last = []
for key, by in figures.items():
    if "old" not in by or "new" not in by:
        continue
    old, new = statistics.median(by["old"]), statistics.median(by["new"])
    ratio = new / old if old else float("nan")
    print(f"{key:28} {old:14.3f} {new:14.3f} {ratio:8.3f}")
    last.append(f"{key}={ratio:.3f}")
print("ab " + " ".join(last))
PY
