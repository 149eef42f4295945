#!/usr/bin/env bash
# The whole test suite, as CI runs it: install packages, build, run every test (unit and end-to-end),
# then build the unit suites again under AddressSanitizer + UndefinedBehaviorSanitizer and run them, then
# run every libFuzzer target for 30 s (scripts/fuzz.sh; RAG_FUZZ_SECONDS changes it, 0 skips it).
# Long tests labelled `slow` are left out; run them with: ctest --test-dir build -L slow
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# Tests run side by side on few cores: OpenMP threads that spin while waiting would starve each other.
export OMP_WAIT_POLICY=passive

bash scripts/setup.sh

echo "== build (release)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
echo "== tests (release)"
ctest --test-dir build -LE slow --output-on-failure -j "$jobs" --timeout 600

echo "== build (asan+ubsan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRAG_SANITIZE=ON -DRAG_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs"
echo "== unit tests (asan+ubsan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -L unit --output-on-failure -j "$jobs" --timeout 900

fuzz_seconds=${RAG_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "== fuzz (clang, asan+ubsan, ${fuzz_seconds}s per target)"
  RAG_FUZZ_JOBS="$jobs" bash scripts/fuzz.sh "$fuzz_seconds"
fi
