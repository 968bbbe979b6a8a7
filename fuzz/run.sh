#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DKILN_FUZZ=ON), writes the seed corpus and runs each
# target for SECONDS (default 60) from it. Any crash, leak, sanitizer report, timeout (>10 s
# for one input) or out-of-memory (>2 GiB) fails the run with the target's log and the input
# that triggered it (build-fuzz/fuzz-out/artifacts/TARGET/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      targets: jpeg idx model checkpoint (default: all)
#
# Environment: KILN_FUZZ_BUILD (build directory, default build-fuzz), KILN_FUZZ_JOBS (targets run
# at once, default the number of cores). New inputs found accumulate in
# build-fuzz/fuzz-out/corpus/TARGET and seed the next run. Inputs that once crashed a target
# live in fuzz/regress/TARGET and are replayed every run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jpeg idx model checkpoint)
build="${KILN_FUZZ_BUILD:-$root/build-fuzz}"
jobs="${KILN_FUZZ_JOBS:-$(nproc)}"

CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON \
    -DKILN_BUILD_TESTS=OFF -DKILN_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target kiln_fuzz

out="$build/fuzz-out"
rm -rf "$out/seeds"
mkdir -p "$out"
"$build/fuzz/make-seeds" "$out/seeds"

# The targets never initialise OpenCL, so leak detection stays on.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_one() {
    local t=$1 art="$out/artifacts/$1"
    mkdir -p "$out/corpus/$t" "$art"
    rm -f "$art"/*
    local dirs=("$out/corpus/$t" "$out/seeds/$t")
    [ -d "$root/fuzz/regress/$t" ] && dirs+=("$root/fuzz/regress/$t")
    local rc=0
    "$build/fuzz/fuzz-$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -dict="$root/fuzz/$t.dict" -artifact_prefix="$art/" -print_final_stats=1 \
        "${dirs[@]}" >"$out/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$out/$t.rc"
}

running=0
for t in "${targets[@]}"; do
    [ -x "$build/fuzz/fuzz-$t" ] || { echo "fuzz/run.sh: unknown target '$t'" >&2; exit 2; }
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    echo "== fuzz-$t: ${secs} s"
    rm -f "$out/$t.rc"
    run_one "$t" &
    running=$((running + 1))
done
wait
status=0
for t in "${targets[@]}"; do
    rc=$(cat "$out/$t.rc" 2>/dev/null || echo "none")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -1)
    corpus=$(find "$out/corpus/$t" -type f | wc -l)
    found=$(find "$out/artifacts/$t" -type f | wc -l)
    echo "fuzz-$t: ${runs:-?} executions, $corpus inputs in the corpus, exit $rc, $found artifacts"
    if [ "$rc" != 0 ] || [ "$found" -ne 0 ]; then
        status=1
        # The report, without libFuzzer's progress lines before it.
        grep -v -E '^#[0-9]+' "$out/$t.log" | tail -n 80
        ls -l "$out/artifacts/$t"
    fi
done
if [ "$status" -eq 0 ]; then echo "fuzz: all targets clean"; else echo "fuzz: FAILED"; fi
exit "$status"
