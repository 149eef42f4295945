#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, ASan+UBSan, in build-fuzz/) and runs each for SECONDS
# (default 30), one process each, one after another. Fails if any target finds a crash, a sanitizer report,
# a timeout or an out-of-memory; the reproducer's path is printed (rerun it with: build-fuzz/tests/fuzz/fuzz-T
# FILE). The corpus grows in build-fuzz/fuzz-corpus/T across runs; seeds are regenerated every run.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. bash scripts/fuzz.sh 300 gguf tokenizer-bpe
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
build=${RAG_FUZZ_BUILD:-build-fuzz}
jobs=${RAG_FUZZ_JOBS:-$(nproc)}
all=(pdf html markdown text gguf tokenizer-wordpiece tokenizer-bpe tokenizer-spm manifest http-request)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

echo "== build (fuzz: clang, libFuzzer, asan+ubsan) in $build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_COMPILER=clang -DRAG_FUZZ=ON -DRAG_BUILD_TESTS=OFF -DRAG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target fuzz

seeds="$build/fuzz-seeds"
rm -rf "$seeds"
"$build/tests/fuzz/make-fuzz-seeds" "$seeds"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t/"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "== fuzz $t for ${seconds}s"
  status=0
  "$build/tests/fuzz/fuzz-$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" "$seeds/$t" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz $t: FAILED (exit $status) after ${runs:-?} runs; reproducer: ${reproducer:-none written}; log: $log"
    failed+=("$t")
    summary+=("$t: FAILED, reproducer ${reproducer:-none}")
  else
    echo "fuzz $t: ok, ${runs:-?} runs, corpus $(ls "$corpus" | wc -l) inputs"
    summary+=("$t: ok, ${runs:-?} runs")
  fi
done

echo "== fuzz summary (${seconds}s each)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) found a problem: ${failed[*]}"
  exit 1
fi
