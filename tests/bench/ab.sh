#!/bin/sh
# ab.sh: the same procreg-bench workload against two procregd binaries,
# alternating rounds, for "did this change slow requests down?".  Prints
# one line per test and binary: the daemon CPU per operation of each round
# (the steadier figure on a shared machine), sorted.
#
#   OLD=/path/to/old/procregd NEW=./procregd tests/bench/ab.sh
# Knobs: ROUNDS=5 TESTS=whereis,register,send ARGS="-c 50 -P 16 -n 1000000
# --names 100000" SERVER_CPU=0 CLIENT_CPU=1
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/procreg-bench
OLD=${OLD:?set OLD to the procregd to compare against}
NEW=${NEW:-$ROOT/procregd}
ROUNDS=${ROUNDS:-5}
TESTS=${TESTS:-whereis,register,send}
ARGS=${ARGS:--c 50 -P 16 -n 1000000 --names 100000}
DIR=$(mktemp -d /tmp/procreg-ab.XXXXXX)
trap 'rm -rf "$DIR"' EXIT

r=1
while [ "$r" -le "$ROUNDS" ]; do
	for v in old new; do
		if [ $v = old ]; then D=$OLD; else D=$NEW; fi
		S=$DIR/$v.sock
		taskset -c "${SERVER_CPU:-0}" "$D" -s "$S" -q \
		    --max-names 2000000 &
		P=$!
		i=0
		while [ ! -S "$S" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		# shellcheck disable=SC2086
		PROCREG_SOCKET=$S taskset -c "${CLIENT_CPU:-1}" "$BENCH" $ARGS \
		    -t "$TESTS" --csv -q | grep -v '^target' |
		    sed "s/^/$v,/" >> "$DIR/all.csv"
		kill "$P"
		wait "$P" 2>/dev/null || true
	done
	r=$((r + 1))
done
# test, old|new: cpu_us_per_op (column 14 of procreg-bench's CSV, 15 here)
awk -F, '{ k = $3 " " $1; v[k] = v[k] " " $15 } END { for (k in v) print k ":" v[k] }' \
    "$DIR/all.csv" | sort
