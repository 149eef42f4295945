#!/usr/bin/env bash
# Requests/s and latency p50/p95/p99 of /v1/search and /v1/ask at concurrency 1, 8 and 32 against `rag serve`
# on the sample corpus. Usage: bench/serve-load.sh BUILD_DIR [GENERATOR.gguf] [SECONDS]
# Without a generator /v1/ask gives extractive answers (retrieval + sentence selection); with one it generates
# up to 32 tokens per answer. The server runs with --workers 4 --queue 64 so that 32 clients are not refused.
set -euo pipefail
build=${1:?usage: bench/serve-load.sh BUILD_DIR [GENERATOR.gguf] [SECONDS]}
generator=${2:-}
seconds=${3:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
"$build/rag" ingest "$here/data/sample" --data "$work/data" >/dev/null 2>&1
args=(--data "$work/data" --port 0 --workers 4 --queue 64)
[ -n "$generator" ] && args+=(--generate-model "$generator" --max-tokens 32)
RAG_LOG_LEVEL=warn "$build/rag" serve "${args[@]}" > "$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/out")
echo "rag serve on port $port, generator: ${generator:-none}, $(nproc) cores, ${seconds}s per level"
"$build/bench/serve-load" --port "$port" --path /v1/search --body '{"query": "expense policy travel"}' --seconds "$seconds"
"$build/bench/serve-load" --port "$port" --path /v1/ask --body '{"question": "How many days do I have to submit expenses?", "max_tokens": 32}' \
  --seconds "$seconds" | tail -n +2
