#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this):
#   1. installs the dependencies (scripts/deps.sh);
#   2. a release build with -Wall -Wextra -Werror, all tests;
#   3. a Debug build under AddressSanitizer + UndefinedBehaviorSanitizer,
#      all tests again (unit, fake-time simulations, integration);
#   4. a clang build of the libFuzzer targets, each run for a bounded time.
# Environment: FUZZ_SECONDS (default 30 per target), MERIDIAN_SEED (replays a
# simulation seed), JOBS (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
"$root/scripts/deps.sh"

jobs=${JOBS:-$(nproc)}
fuzz_seconds=${FUZZ_SECONDS:-30}
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-600}

step() { printf '\n==> %s\n' "$*"; }

step "release build, -Werror"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMERIDIAN_WERROR=ON >/dev/null
cmake --build build/release -j"$jobs"
step "tests (release)"
(cd build/release && ctest --output-on-failure -j"$jobs")

step "Debug + ASan + UBSan build, -Werror"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DMERIDIAN_SANITIZE=ON -DMERIDIAN_WERROR=ON >/dev/null
cmake --build build/asan -j"$jobs"
step "tests (ASan + UBSan)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd build/asan && ctest --output-on-failure -j"$jobs")

step "fuzz targets (clang, libFuzzer), ${fuzz_seconds}s each"
CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DMERIDIAN_FUZZ=ON -DMERIDIAN_WERROR=ON >/dev/null
targets=(fuzz_packet fuzz_state fuzz_seal fuzz_rpc fuzz_announce fuzz_pgoutput fuzz_replcopy)
cmake --build build/fuzz -j"$jobs" --target "${targets[@]}"
for t in "${targets[@]}"; do
	corpus="$root/build/fuzz/corpus-$t"
	mkdir -p "$corpus"
	seeds="$root/tests/fuzz/corpus/${t#fuzz_}"
	[ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
	echo "-- $t"
	"build/fuzz/tests/$t" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
		-artifact_prefix="$root/build/fuzz/$t-" "$corpus" 2>&1 | tail -n 12
done

step "all tests passed"
