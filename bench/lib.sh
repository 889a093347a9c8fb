# bench/lib.sh - what the benchmark scripts share.  Sourced after they set
# ROOT (the repository).

# bench_build TARGET...: a Release build (tests off) of the TARGETs in
# $ROOT/build-bench; prints that directory, or fails.
bench_build() {
	local b=$ROOT/build-bench
	cmake -S "$ROOT" -B "$b" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null &&
		cmake --build "$b" -j2 --target "$@" >/dev/null && echo "$b"
}
