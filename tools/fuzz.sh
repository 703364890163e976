#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/fuzz.sh [MINUTES] [HARNESS...]: build the libFuzzer harnesses (clang, ASan+UBSan) in
# build-fuzz/ and run each, one after the other, for MINUTES minutes (default 5) from its
# committed seeds (tests/fuzz/<harness>/, read-only) plus a scratch corpus that persists
# between runs (build-fuzz/fuzz-runs/<harness>/corpus/, where new inputs go).
# HARNESS is fuzz_<name> or <name> (default: all). Per harness it prints the executions,
# libFuzzer's final coverage (cov: edges, ft: features) and the crashes; a crash (also a
# timeout, out-of-memory or leak) leaves its input and log in build-fuzz/fuzz-runs/<harness>/
# and makes the script exit 1 after the remaining harnesses ran. Reproduce one with
#   build-fuzz/tests/<harness> build-fuzz/fuzz-runs/<harness>/crash-<sha1>
# Environment: R2P2_FUZZ_BUILD (build directory, default build-fuzz), R2P2_FUZZ_JOBS
# (build parallelism, default nproc).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${R2P2_FUZZ_BUILD:-$SRC/build-fuzz}
JOBS=${R2P2_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
USAGE="usage: tools/fuzz.sh [MINUTES] [HARNESS...]"

# harness  max_len  seeds (under tests/)
HARNESSES="
fuzz_engine     4096  fuzz/corpus
fuzz_config     4096  fuzz/fuzz_config
fuzz_stek       2048  fuzz/fuzz_stek
fuzz_sealed     1024  fuzz/fuzz_sealed
fuzz_tls_server 4096  fuzz/fuzz_tls_server
fuzz_lane       2048  fuzz/fuzz_lane
fuzz_ctl        1024  fuzz/fuzz_ctl
fuzz_xdp_parse  512   fuzz/fuzz_xdp_parse
"

log() { printf '[fuzz.sh] %s\n' "$*"; }
die() { printf '[fuzz.sh] error: %s\n' "$*" >&2; exit 2; }

MINUTES=5
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
	MINUTES=$1
	shift
fi
case "${1:-}" in -h | --help) echo "$USAGE"; exit 0 ;; esac
[ "$MINUTES" -ge 1 ] || die "MINUTES must be at least 1"

selected=()
if [ $# -eq 0 ]; then
	while read -r name _; do [ -n "$name" ] && selected+=("$name"); done <<<"$HARNESSES"
else
	for h in "$@"; do
		h=fuzz_${h#fuzz_}
		grep -q "^$h " <<<"$HARNESSES" || die "unknown harness '$h' ($USAGE)"
		selected+=("$h")
	done
fi

command -v clang >/dev/null || die "clang is missing: run ./tools/dev.sh build"
log "building ${selected[*]} in $BUILD"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	-DR2P2_SANITIZE=ON -DR2P2_FUZZ=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${selected[@]}" >/dev/null

results=()
failed=0
for h in "${selected[@]}"; do
	read -r _ max_len seeds < <(grep "^$h " <<<"$HARNESSES")
	run=$BUILD/fuzz-runs/$h
	mkdir -p "$run/corpus"
	touch "$run/.start" # artifacts newer than this come from this run
	log "$h: $MINUTES min, max_len $max_len, seeds tests/$seeds, scratch ${run#"$SRC"/}/corpus"
	rc=0
	# -timeout: an input that runs 30 s is a finding too; one process, so the run is
	# deterministic in what it tries given the seed and the corpus.
	(cd "$run" && "$BUILD/tests/$h" -max_total_time=$((MINUTES * 60)) -max_len="$max_len" \
		-timeout=30 -print_final_stats=1 -artifact_prefix="$run/" \
		corpus "$SRC/tests/$seeds") >"$run/fuzz.log" 2>&1 || rc=$?
	last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$run/fuzz.log" | tail -n1 || true)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/fuzz.log" | tail -n1)
	[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
	crashes=$(find "$run" -maxdepth 1 \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \
		-o -name 'leak-*' \) -newer "$run/.start" 2>/dev/null | wc -l)
	if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
		crashes=1 # died without an artifact (e.g. a sanitizer report at exit)
	fi
	if [ "$crashes" -ne 0 ]; then
		failed=1
		log "$h: CRASH (exit $rc); log: $run/fuzz.log"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix)' "$run/fuzz.log" | head -n 5 || true
	fi
	results+=("$(printf '%-16s %12s %6s %7s %7s %8s' "$h" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
		"${corp:-?}" "$crashes")")
done

echo
printf '%-16s %12s %6s %7s %7s %8s\n' harness executions cov ft corpus crashes
printf '%s\n' "${results[@]}"
echo "($MINUTES min per harness; cov/ft: libFuzzer's final edge and feature counts;"
echo " corpus: inputs in libFuzzer's corpus at the end, seeds included)"
exit "$failed"
