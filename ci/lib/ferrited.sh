# Helpers to run ferrited from CI stages. Source this file.
# start_ferrited LOG ARGS... : starts ferrited, waits for its "ready" lines, sets FERRITED_PID.
FERRITED_BIN=${FERRITED_BIN:-target/release/ferrited}

start_ferrited() {
    local log=$1
    shift
    "$FERRITED_BIN" "$@" >"$log" 2>&1 &
    FERRITED_PID=$!
    for _ in $(seq 1 100); do
        if grep -q '^ready ' "$log"; then
            return 0
        fi
        if ! kill -0 "$FERRITED_PID" 2>/dev/null; then
            echo "ferrited exited early:"
            cat "$log"
            return 1
        fi
        sleep 0.1
    done
    echo "ferrited did not become ready:"
    cat "$log"
    return 1
}

stop_ferrited() {
    if [ -n "${FERRITED_PID:-}" ] && kill -0 "$FERRITED_PID" 2>/dev/null; then
        kill -TERM "$FERRITED_PID"
        for _ in $(seq 1 100); do
            kill -0 "$FERRITED_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$FERRITED_PID" 2>/dev/null; then
            echo "ferrited did not stop on SIGTERM; killing it"
            kill -KILL "$FERRITED_PID"
            return 1
        fi
        wait "$FERRITED_PID" 2>/dev/null
    fi
    FERRITED_PID=
}
