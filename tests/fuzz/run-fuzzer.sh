#!/bin/sh
# run-fuzzer.sh FUZZER CORPUS WORKDIR SECONDS: fuzzes for a bounded time on a
# copy of the checked-in corpus (new inputs stay in the build tree) and prints
# how many corpus files it started from.
set -eu
fuzzer=$1 corpus=$2 work=$3 seconds=$4
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
cp "$corpus"/* "$work/corpus/" 2>/dev/null || true
echo "fuzz: $(basename "$fuzzer"): $(ls "$work/corpus" | wc -l) seed inputs, ${seconds}s"
exec "$fuzzer" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus"
