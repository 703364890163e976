#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test_qsim: r2p2-qsim (tools/qsim.c) agrees with queueing theory for fixed seeds (mean
# latency within 5% of M/M/1, M/D/1 by Pollaczek-Khinchine, M/M/3 by Erlang C), gives the
# same output for the same seed, and orders the policies as theory says: JBSQ(1) over
# one-worker servers is the single queue exactly, random over one server is too, and at 80%
# load the single queue <= JBSQ(2) <= random. Usage: test_qsim.sh PATH_TO_R2P2_QSIM
set -euo pipefail
QSIM=${1:?usage: test_qsim.sh PATH_TO_R2P2_QSIM}
FAILED=0

# num OUTPUT KEY: a number of the JSON line
num() { grep '^{' <<<"$1" | grep -o "\"$2\":[-0-9.e+]*" | cut -d: -f2; }
check() {
	local what=$1
	shift
	if "$@"; then
		echo "ok: $what"
	else
		echo "FAILED: $what"
		FAILED=1
	fi
}
# within X Y PCT: |X - Y| <= PCT% of Y
within() { awk -v x="$1" -v y="$2" -v p="$3" 'BEGIN { d = x - y; if (d < 0) d = -d; exit !(d <= y * p / 100) }'; }
le() { awk -v x="$1" -v y="$2" 'BEGIN { exit !(x <= y) }'; }

# M/M/1, mean service 100 us, load 0.5: mean sojourn 1 / (mu - lambda) = 200 us
out=$("$QSIM" -s 1 -d exp:100 --load 0.5 -N 400000 --seed 7 --json)
m=$(num "$out" mean_us)
check "M/M/1 at 0.5: mean $m us within 5% of 200" within "$m" 200 5
# M/D/1, 100 us, load 0.5: S + rho S / (2 (1 - rho)) = 150 us
out=$("$QSIM" -s 1 -d fixed:100 --load 0.5 -N 400000 --seed 7 --json)
m=$(num "$out" mean_us)
check "M/D/1 at 0.5: mean $m us within 5% of 150" within "$m" 150 5
# M/M/3 (the ideal of three one-worker servers), 1000 us, load 0.8: Erlang C
theory=$(awk 'BEGIN { k = 3; rho = 0.8; s = 1000; a = k * rho; t = 1; sum = 0
	for (i = 0; i < k; i++) { sum += t; t *= a / (i + 1) }
	tail = t * k / (k - a); c = tail / (sum + tail)
	printf "%.3f", s + c * s / (k * (1 - rho)) }')
out=$("$QSIM" -s 3 -d exp:1000 --load 0.8 -p single -N 400000 --seed 7 --json)
m=$(num "$out" mean_us)
check "M/M/3 at 0.8: mean $m us within 5% of Erlang C's $theory" within "$m" "$theory" 5

a=$("$QSIM" -d bimodal:100:1900:0.1 --load 0.7 -p p2c -N 20000 --seed 5)
b=$("$QSIM" -d bimodal:100:1900:0.1 --load 0.7 -p p2c -N 20000 --seed 5)
c=$("$QSIM" -d bimodal:100:1900:0.1 --load 0.7 -p p2c -N 20000 --seed 6)
check "the same seed gives the same output" test "$a" = "$b"
check "another seed gives another" test "$a" != "$c"

run() { num "$("$QSIM" -s 3 -d exp:1000 --load 0.8 -N 100000 --seed 11 --json "$@")" p99_us; }
single=$(run -p single)
j1=$(run -p jbsq:1)
j2=$(run -p jbsq:2)
rnd=$(run -p random)
check "JBSQ(1) over one-worker servers is the single queue ($j1 = $single)" test "$j1" = "$single"
ordered() { le "$single" "$j2" && le "$j2" "$rnd"; }
check "at 0.8: single ($single) <= JBSQ(2) ($j2) <= random ($rnd)" ordered
one=$(num "$("$QSIM" -s 1 -d exp:1000 --load 0.6 -N 50000 -p random --json)" p99_us)
ref=$(num "$("$QSIM" -s 1 -d exp:1000 --load 0.6 -N 50000 -p single --json)" p99_us)
check "random over one server is the single queue ($one = $ref)" test "$one" = "$ref"

rc=0
"$QSIM" --load 1 >/dev/null 2>&1 || rc=$?
check "a load of 1 is refused (exit $rc)" test "$rc" -eq 2
[ "$FAILED" -eq 0 ] || exit 1
echo "PASS: test_qsim"
