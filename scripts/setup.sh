#!/usr/bin/env bash
# Installs the Debian 12 packages rag builds, tests and benchmarks with. Idempotent: packages already
# present are skipped, and apt-get runs only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build
  libxapian-dev libfaiss-dev libsqlite3-dev libpoppler-cpp-dev nlohmann-json3-dev libcpp-httplib-dev
  libopenblas-dev libomp-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcairo2-dev libxxhash-dev
  clang libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes for scripts/fuzz.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
