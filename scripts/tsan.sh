#!/usr/bin/env bash
# The stress test (tests/stress/: ingest and rebuild in a loop while client threads search and stream answers)
# under ThreadSanitizer: builds test_stress with -DRAG_TSAN=ON in build-tsan/ and runs it for SECONDS (default
# 60). Fails on any ThreadSanitizer report (halt_on_error) and on any failed check of the test.
#
#   bash scripts/tsan.sh [SECONDS]       RAG_TSAN_BUILD=DIR picks the build dir, RAG_TSAN_JOBS the build's -j
#
# libgomp, OpenBLAS, FAISS, Xapian and SQLite are not instrumented. TSan cannot see libgomp's barriers, so the
# threads of one OpenMP parallel region would be reported as racing on data the barriers order: OpenMP and
# OpenBLAS run single-threaded here. That leaves the code inside our parallel regions (nn/, generate/model.cpp)
# unchecked for races between its own OpenMP threads; everything between service, HTTP, retrieval, generator
# and writer threads is checked. What is suppressed, and why, is in tests/stress/tsan.supp.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${RAG_TSAN_BUILD:-build-tsan}
jobs=${RAG_TSAN_JOBS:-2}

echo "== build (tsan) in $build"
start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAG_TSAN=ON -DRAG_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target test_stress
echo "tsan: built in $(($(date +%s) - start)) s"

log="$build/tsan-stress.log"
export OMP_NUM_THREADS=1 OMP_THREAD_LIMIT=1 OPENBLAS_NUM_THREADS=1
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$PWD/tests/stress/tsan.supp ${TSAN_OPTIONS:-}"
echo "== stress under tsan for ${seconds}s (log: $log)"
start=$(date +%s)
status=0
RAG_STRESS_SECONDS="$seconds" "$build/tests/test_stress" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
echo "tsan: ran in $(($(date +%s) - start)) s"
if grep -q "WARNING: ThreadSanitizer" "$log"; then
  echo "tsan: FAILED: ThreadSanitizer reported (see $log)"
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "tsan: FAILED: test_stress exited $status (see $log)"
  exit 1
fi
echo "tsan: clean"
