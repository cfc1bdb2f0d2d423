# Turns iscsi-test-cu verbose output into one line per test: "Suite.Test passed|skipped|failed".
#
# The verdict is CUnit's own: "...passed" / "...FAILED" after "  Test: Name", or "passed" /
# "FAILED" at the start of a later line once the test's log lines are done. A test that
# passed is "skipped" when it logged [SKIPPED] before its verdict. The tool's helpers log
# "[FAILED]" whenever a command's status differs from the one they were told to expect, also
# in negative tests that want the command to fail (iSCSIdatasn), so that word alone does not
# fail a test; a failed assertion does. Output after a verdict comes from suite clean-up or
# set-up (iscsi-test-cu logs out and clears reservations there) and belongs to no test: its
# [FAILED] lines are reported on stderr as notes. A test with no verdict (the tool died in
# it) is failed.
#
# With -v partial=FILE (ci/expected/iscsi-test-cu-partial.txt), a [SKIPPED] line that FILE
# lists for that test ("Suite.Test<TAB>text of the message") marks an optional part the test
# skipped while it ran the rest of its checks: it does not make the test skipped. Every other
# [SKIPPED] line does (the test skipped its body).
#
# With -v messages=1 it prints, instead of verdicts, "Suite.Test<TAB>message" for each
# failure message of each failed test: every "[FAILED] ..." line the test logged before its
# verdict and every assertion CUnit lists after it ("file.c:135  - CU_FAIL(...)"), each once.
# The conformance stage compares them with ci/expected/iscsi-test-cu-known-failures.txt.
#
# A PARTIAL file that cannot be read is an error (exit 2), never an empty list.
BEGIN {
    if (partial != "") {
        while ((r = (getline line < partial)) > 0) {
            if (line ~ /^#/ || line !~ /\t/) continue
            split(line, f, "\t")
            part[f[1]] = part[f[1]] SUBSEP f[2]
        }
        if (r < 0) {
            printf "cu-results.awk: cannot read %s\n", partial > "/dev/stderr"
            unreadable = 1
            exit 2
        }
        close(partial)
    }
}
# True when text holds a [SKIPPED] message that does not stand for the whole test.
function skips(text,    n, msgs, i) {
    if (text !~ /\[SKIPPED\]/) return 0
    if (!(name in part)) return 1
    n = split(part[name], msgs, SUBSEP)
    for (i = 2; i <= n; i++) if (index(text, msgs[i]) > 0) return 0
    return 1
}
function flush(    m) {
    if (name != "" && !messages) print name, (verdict == "" ? "failed" : verdict)
    if (name != "" && messages && (verdict == "" || verdict == "failed"))
        for (m = 1; m <= nmsg; m++) print name "\t" msg[m]
    name = ""
    nmsg = 0
}
# Records a failure message of the current test (once).
function message(text,    m) {
    sub(/^[ \t]+/, "", text)
    sub(/[ \t]+$/, "", text)
    for (m = 1; m <= nmsg; m++) if (msg[m] == text) return
    msg[++nmsg] = text
}
function judge(text,    p, q, cut, rest) {
    # Position of the verdict in text, if any.
    p = index(text, "...passed"); q = index(text, "...FAILED")
    if (text ~ /^passed/) p = 1
    if (text ~ /^FAILED/) q = 1
    if (p == 0 && q == 0) {
        if (skips(text)) skipped = 1
        if (index(text, "[FAILED]") > 0) message(substr(text, index(text, "[FAILED]")))
        return
    }
    cut = (p > 0 && (q == 0 || p < q)) ? p : q
    if (skips(substr(text, 1, cut - 1))) skipped = 1
    if (index(substr(text, 1, cut - 1), "[FAILED]") > 0)
        message(substr(text, index(text, "[FAILED]"), cut - index(text, "[FAILED]")))
    if (cut == q) verdict = "failed"
    else verdict = skipped ? "skipped" : "passed"
    rest = substr(text, cut)
    if (rest ~ /\[FAILED\]/) note(rest)
}
function note(text) {
    sub(/^[ .]*(passed|FAILED)[ ]*/, "", text)
    printf "note: after %s: %s\n", name, text > "/dev/stderr"
}
/^Suite: / { flush(); suite = $2; next }
/^  Test: / {
    flush()
    name = suite "." $2
    verdict = ""
    skipped = 0
    judge(substr($0, index($0, "...")))
    next
}
/^Run Summary/ { flush(); next }
name != "" && verdict == "" { judge($0); next }
# CUnit's list of a failed test's assertions ("    1. file.c:135  - CU_FAIL(...)") is not a note.
name != "" && verdict == "failed" && /^ +[0-9]+\. / { t = $0; sub(/^ +[0-9]+\. /, "", t); message(t); next }
name != "" && /\[FAILED\]/ && !/^ +[0-9]+\. / { note($0) }
END {
    if (unreadable) exit 2
    flush()
}
