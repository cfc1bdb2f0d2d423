# Turns iscsi-test-cu verbose output into one line per test: "Suite.Test passed|skipped|failed".
# A test is failed if any assertion in it failed, skipped if it skipped (and did not fail).
function flush() {
    if (name != "") print name, status
    name = ""
}
/^Suite: / { flush(); suite = $2; next }
/^  Test: / {
    flush()
    name = suite "." $2
    status = "passed"
}
name != "" && /\[SKIPPED\]/ { if (status != "failed") status = "skipped" }
name != "" && (/\[FAILED\]/ || /\.\.\.FAILED/ || /^FAILED/) { status = "failed" }
/^Run Summary/ { flush() }
END { flush() }
