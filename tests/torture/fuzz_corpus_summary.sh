#!/bin/bash
# fuzz_corpus_summary.sh BUILD_KIND MODE NAME=BINARY=CORPUS...
# Replays each fuzz target's checked-in corpus once more (MODE libfuzzer:
# BINARY -runs=0 CORPUS; MODE replay: BINARY CORPUS, the gcc replay driver)
# and writes one summary line with the corpus sizes, so `make test` shows
# what the fuzz replay covered. Fails if a replay fails or a corpus is empty.
set -u
kind=$1 mode=$2
shift 2
parts=() rc=0 total=0
for spec in "$@"; do
    name=${spec%%=*} rest=${spec#*=}
    bin=${rest%%=*} corpus=${rest#*=}
    count=$(find "$corpus" -maxdepth 1 -type f | wc -l)
    if [ "$mode" = libfuzzer ]; then
        "$bin" -runs=0 "$corpus" >/dev/null 2>&1
    else
        "$bin" "$corpus" >/dev/null 2>&1
    fi
    r=$?
    if [ $r != 0 ] || [ "$count" = 0 ]; then
        parts+=("$name $count FAILED (exit $r)")
        rc=1
    else
        parts+=("$name $count")
    fi
    total=$((total + count))
done
line="torture fuzz corpora ($kind): $([ $rc = 0 ] && echo ok || echo FAILED): $total inputs replayed: $(IFS=,; echo "${parts[*]}" | sed 's/,/, /g')"
echo "$line"
[ -n "${LCOW_TORTURE_SUMMARY:-}" ] && echo "$line" >>"$LCOW_TORTURE_SUMMARY"
exit $rc
