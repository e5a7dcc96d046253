#!/bin/sh
# compare.sh: procregd against redis-server and the bare libevent echo
# floor, same client (procreg-bench), same workload shapes; and, when
# dbus-broker is installed, whereis against a private dbus-broker bus's
# GetNameOwner.  Servers are pinned to SERVER_CPU, every client to
# CLIENT_CPU.  Run from the top of the tree (make bench does): it needs
# ./procregd, ./procreg-bench, tests/bench/echo-floor and redis-server;
# strace and dbus-broker-launch are used when present.
#
# Knobs (environment):
#   NAMES=1000000        table size for whereis/GET (names held meanwhile)
#   DBUS_NAMES=$NAMES    names owned on the bus for GetNameOwner (0 skips
#                        dbus-broker)
#   REQ_C1=50000         operations per test at -c 1 -P 1
#   REQ_C50=500000       operations per test at -c 50 -P 1
#   REQ_C50P16=2000000   operations per test at -c 50 -P 16
#   SCALE=1              0 skips memory, 1k-vs-1M, 10k conns, purges
#   STRACE_REQ=20000     requests counted under strace -c (0 skips)
#   PURGE_NAMES=100000 PURGE_MONITORS=10000 BIG_PURGE=1000000 CONNS=10000
#   SERVER_CPU=0 CLIENT_CPU=1 OUT=DIR (keep raw CSV and logs there)
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/procreg-bench
PROCREGD=$ROOT/procregd
ECHO=$ROOT/tests/bench/echo-floor
NAMES=${NAMES:-1000000}
DBUS_NAMES=${DBUS_NAMES:-$NAMES}
REQ_C1=${REQ_C1:-50000}
REQ_C50=${REQ_C50:-500000}
REQ_C50P16=${REQ_C50P16:-2000000}
SCALE=${SCALE:-1}
STRACE_REQ=${STRACE_REQ:-20000}
PURGE_NAMES=${PURGE_NAMES:-100000}
PURGE_MONITORS=${PURGE_MONITORS:-10000}
BIG_PURGE=${BIG_PURGE:-1000000}
CONNS=${CONNS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

for f in "$BENCH" "$PROCREGD" "$ECHO"; do
	[ -x "$f" ] || { echo "compare.sh: $f missing (make all)" >&2; exit 1; }
done
command -v redis-server >/dev/null ||
	{ echo "compare.sh: redis-server missing" >&2; exit 1; }

DIR=$(mktemp -d /tmp/procreg-bench.XXXXXX)
OUT=${OUT:-$DIR}
mkdir -p "$OUT"
CSV=$OUT/results.csv
: > "$CSV"
PIDS=""
HOLD_PID=""
DBUS_HOLD_PID=""
JOURNAL_PID=""

cleanup() {
	for p in $HOLD_PID $DBUS_HOLD_PID $PIDS; do
		kill "$p" 2>/dev/null || true
	done
	for p in $HOLD_PID $DBUS_HOLD_PID $PIDS; do
		wait "$p" 2>/dev/null || true
	done
	# last, so that dbus-broker's parting log line has a reader (it is
	# not our child: poll)
	i=0
	while [ -n "$DBUS_PID" ] && kill -0 "$DBUS_PID" 2>/dev/null &&
	    [ $i -lt 100 ]; do
		i=$((i + 1))
		sleep 0.05
	done
	[ -z "$JOURNAL_PID" ] || kill "$JOURNAL_PID" 2>/dev/null || true
	rm -f "$DIR"/*.sock
	[ "$OUT" = "$DIR" ] || rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_sock() {
	i=0
	while [ ! -S "$1" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || { echo "compare.sh: $1 never appeared" >&2; exit 1; }
		sleep 0.05
	done
}

client() { taskset -c "$CLIENT_CPU" "$BENCH" -q "$@"; }
bench_csv() { client --csv "$@" | grep -v '^target,' | tee -a "$CSV"; }

# --- servers ---------------------------------------------------------------
taskset -c "$SERVER_CPU" "$PROCREGD" -q -s "$DIR/p.sock" \
    --max-names 2000000 --max-conns 20000 2> "$OUT/procregd.log" &
PROCREG_PID=$!
PIDS="$PIDS $PROCREG_PID"
taskset -c "$SERVER_CPU" redis-server --port 0 --unixsocket "$DIR/r.sock" \
    --save '' --appendonly no --daemonize no --maxclients 20000 \
    > "$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS="$PIDS $REDIS_PID"
taskset -c "$SERVER_CPU" "$ECHO" -s "$DIR/e.sock" 2> "$OUT/echo.log" &
ECHO_PID=$!
PIDS="$PIDS $ECHO_PID"
wait_sock "$DIR/p.sock"
wait_sock "$DIR/r.sock"
wait_sock "$DIR/e.sock"
P="-s $DIR/p.sock --pid $PROCREG_PID"
R="--redis -s $DIR/r.sock --pid $REDIS_PID"
E="--echo -s $DIR/e.sock --pid $ECHO_PID"

rss() { echo $(( $(cut -d' ' -f2 "/proc/$1/statm") * $(getconf PAGESIZE) )); }
redis_mem() {
	redis-cli -s "$DIR/r.sock" info memory | tr -d '\r' |
	    sed -n 's/^used_memory://p'
}

# Wait until a holder (output file $1, pid $2, called $3) prints "ready",
# at most $4 rounds of 50 ms; 1 when it dies or never does.
wait_ready() {
	i=0
	until grep -q '^ready' "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt "$4" ] || { echo "compare.sh: $3 not ready" >&2; return 1; }
		kill -0 "$2" || { echo "compare.sh: $3 died" >&2; return 1; }
		sleep 0.05
	done
}

# Hold NAMES names (n0000000..) in procregd from a background client.
hold() {
	[ -z "$HOLD_PID" ] || { kill "$HOLD_PID"; wait "$HOLD_PID" || true; }
	taskset -c "$CLIENT_CPU" "$BENCH" -q $P --hold --names "$1" \
	    ${2:+--holders $2} > "$OUT/hold.out" &
	HOLD_PID=$!
	wait_ready "$OUT/hold.out" "$HOLD_PID" holder 1200 || exit 1
}
unhold() {
	[ -z "$HOLD_PID" ] || { kill "$HOLD_PID"; wait "$HOLD_PID" || true; }
	HOLD_PID=""
	sleep 0.5	# let the daemon purge them
}

# --- dbus-broker, a private bus (optional) ---------------------------------
# dbus-broker-launch wants a listening socket from socket activation and a
# journal socket to log to, and connects back to the bus it serves (as the
# user scope's bus, from DBUS_SESSION_BUS_ADDRESS).  Without systemd there
# is no journal socket: then (as root) the launcher runs in a mount
# namespace of its own with a tmpfs on /run and a datagram socket there
# whose messages go to $OUT/dbus-journal.log.  The config allows everything
# and lifts the per-user limits that the launcher turns into the broker's
# --max-bytes/--max-fds/--max-matches (max_names_per_connection is not
# among them: dbus-broker only has the per-user object quota, 16M).
DBUS_PID=""
DBUS_MEMLINE=""
D=""
dbus_start() {
	cat > "$DIR/bus.conf" <<-'CONF'
	<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
	 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
	<busconfig>
	  <type>session</type>
	  <auth>EXTERNAL</auth>
	  <policy context="default">
	    <allow send_destination="*"/>
	    <allow own="*"/>
	  </policy>
	  <limit name="max_connections_per_user">100000</limit>
	  <limit name="max_outgoing_bytes">1000000000</limit>
	  <limit name="max_outgoing_unix_fds">64</limit>
	  <limit name="max_match_rules_per_connection">1000</limit>
	</busconfig>
	CONF
	launch="systemd-socket-activate -E DBUS_SESSION_BUS_ADDRESS \
	    -l $DIR/d.sock dbus-broker-launch --scope user \
	    --config-file $DIR/bus.conf"
	if [ -S /run/systemd/journal/socket ]; then
		DBUS_SESSION_BUS_ADDRESS=unix:path=$DIR/d.sock \
		    taskset -c "$SERVER_CPU" $launch > "$OUT/dbus.log" 2>&1 &
	elif [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
		DBUS_SESSION_BUS_ADDRESS=unix:path=$DIR/d.sock \
		    taskset -c "$SERVER_CPU" unshare -m sh -c '
			mount -t tmpfs -o mode=755 tmpfs /run &&
			mkdir -p /run/systemd/journal || exit 1
			systemd-socket-activate -d \
			    -l /run/systemd/journal/socket \
			    sh -c "exec cat <&3" > "$1/dbus-journal.log" 2>&1 &
			echo $! > "$2/journal.pid"
			while [ ! -S /run/systemd/journal/socket ]; do
				sleep 0.05
			done
			shift 2
			exec "$@"' sh "$OUT" "$DIR" $launch > "$OUT/dbus.log" 2>&1 &
	else
		echo "== dbus-broker: no journal socket and not root, skipped"
		return 1
	fi
	PIDS="$PIDS $!"
	launcher=$!
	wait_sock "$DIR/d.sock"
	[ ! -f "$DIR/journal.pid" ] || JOURNAL_PID=$(cat "$DIR/journal.pid")
	# the first connection execs the launcher, which starts the broker
	client --dbus -s "$DIR/d.sock" --names 1 -t none || return 1
	DBUS_PID=$(pgrep -P "$launcher" -x dbus-broker) || return 1
	PIDS="$PIDS $DBUS_PID"
	D="--dbus -s $DIR/d.sock --pid $DBUS_PID"
	echo "== $(dbus-broker --version | head -1) on a private bus," \
	    "pid $DBUS_PID; GetNameOwner among $DBUS_NAMES owned names"
	# Own the names from a connection that stays.
	rss0=$(rss "$DBUS_PID")
	t0=$(date +%s.%N)
	taskset -c "$CLIENT_CPU" "$BENCH" -q $D --hold --names "$DBUS_NAMES" \
	    > "$OUT/dbus-hold.out" &
	DBUS_HOLD_PID=$!
	wait_ready "$OUT/dbus-hold.out" "$DBUS_HOLD_PID" "dbus holder" 2400 ||
	    return 1
	t1=$(date +%s.%N)
	rss1=$(rss "$DBUS_PID")
	DBUS_MEMLINE=$(awk -v n="$DBUS_NAMES" -v a="$rss0" -v b="$rss1" \
	    -v t0="$t0" -v t1="$t1" 'BEGIN {
		printf "dbus-broker at %d owned names: RSS +%.1f B/name " \
		    "(RequestName'"'"'d in %.2f s)\n", n, (b - a) / n, t1 - t0 }')
	echo "== $DBUS_MEMLINE"
}

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs;" \
    "servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU"
echo "== procregd $("$PROCREGD" --version 2>&1 | head -1);" \
    "$(redis-server --version | cut -d' ' -f1-3)"

# --- memory per name at NAMES names ----------------------------------------
rss0=$(rss "$PROCREG_PID")
t0=$(date +%s.%N)
hold "$NAMES"
t1=$(date +%s.%N)
rss1=$(rss "$PROCREG_PID")
r_used0=$(redis_mem)
r_rss0=$(rss "$REDIS_PID")
t2=$(date +%s.%N)
client $R --names "$NAMES" -t none
t3=$(date +%s.%N)
r_used1=$(redis_mem)
r_rss1=$(rss "$REDIS_PID")
MEMLINE=$(awk -v n="$NAMES" -v a="$rss0" -v b="$rss1" -v c="$r_used0" \
    -v d="$r_used1" -v e="$r_rss0" -v f="$r_rss1" -v t0="$t0" -v t1="$t1" \
    -v t2="$t2" -v t3="$t3" 'BEGIN {
	printf "memory at %d names: procregd RSS +%.1f B/name (loaded in %.2f s); " \
	    "redis used_memory +%.1f B/key, RSS +%.1f B/key (loaded in %.2f s); " \
	    "ratio procreg/redis(used_memory) %.2f\n", n, (b - a) / n, t1 - t0,
	    (d - c) / n, (f - e) / n, t3 - t2, ((b - a) / n) / ((d - c) / n) }')
echo "== $MEMLINE"

if [ "$DBUS_NAMES" -gt 0 ] && command -v dbus-broker-launch >/dev/null &&
    command -v systemd-socket-activate >/dev/null; then
	dbus_start || { echo "== dbus-broker: did not start, skipped" \
	    "(see $OUT/dbus.log)"; D=""; }
fi

# --- the core table --------------------------------------------------------
for shape in "1 1 $REQ_C1" "50 1 $REQ_C50" "50 16 $REQ_C50P16"; do
	set -- $shape
	echo "== -c $1 -P $2 -n $3 (names $NAMES)"
	bench_csv $P -c "$1" -P "$2" -n "$3" --names "$NAMES" --preloaded \
	    -t whereis,whereis-miss,register,send
	bench_csv $R -c "$1" -P "$2" -n "$3" --names "$NAMES" --preloaded \
	    -t get,get-miss,setnx-del,publish
	bench_csv $E -c "$1" -P "$2" -n "$3" --names "$NAMES" -t whereis
	[ -z "$D" ] || bench_csv $D -c "$1" -P "$2" -n "$3" \
	    --names "$DBUS_NAMES" --preloaded -t getnameowner
	bench_csv $P -c "$1" -P "$2" -n "$(( $3 / 2 ))" -t monitor --names 0
done

# --- syscalls per request at depth 1 ---------------------------------------
SYSLINES=""
if [ "$STRACE_REQ" -gt 0 ] && command -v strace >/dev/null; then
	for t in procreg echo redis procreg-c50P16 echo-c50P16; do
		shape="-c 1 -P 1"
		nreq=$STRACE_REQ
		case $t in
		procreg) pid=$PROCREG_PID; args="$P -t whereis" ;;
		echo) pid=$ECHO_PID; args="$E -t whereis" ;;
		redis) pid=$REDIS_PID; args="$R -t get" ;;
		procreg-c50P16) pid=$PROCREG_PID; args="$P -t whereis"
			shape="-c 50 -P 16"; nreq=$((STRACE_REQ * 10)) ;;
		echo-c50P16) pid=$ECHO_PID; args="$E -t whereis"
			shape="-c 50 -P 16"; nreq=$((STRACE_REQ * 10)) ;;
		esac
		strace -c -f -p "$pid" -o "$OUT/strace-$t.txt" &
		spid=$!
		sleep 0.5
		client $args $shape -n "$nreq" --names "$NAMES" \
		    --preloaded > /dev/null
		kill -INT "$spid"
		wait "$spid" || true
		calls=$(awk '$NF == "total" { print $4 }' "$OUT/strace-$t.txt")
		detail=$(awk -v n="$nreq" '$1 ~ /^[0-9.]+$/ &&
		    $NF != "total" && $4 / n >= 0.01 {
			printf "%s%s %.2f", sep, $NF, $4 / n; sep = ", " }' \
		    "$OUT/strace-$t.txt")
		line=$(awk -v c="$calls" -v n="$nreq" -v t="$t" -v d="$detail" \
		    -v sh="$shape" 'BEGIN { printf "%-14s %.2f syscalls/request at %s (%s)", t, c / n, sh, d }')
		SYSLINES="$SYSLINES$line
"
	done
fi

# --- scale and purge -------------------------------------------------------
if [ "$SCALE" = 1 ]; then
	echo "== 10k concurrent connections, one whereis/GET each"
	bench_csv $P -t conns -c "$CONNS" -P 1 -n "$CONNS" --names "$NAMES" --preloaded
	bench_csv $R -t conns -c "$CONNS" -P 1 -n "$CONNS" --names "$NAMES" --preloaded
	echo "== $NAMES names held by 1000 connections vs 1000 names"
	hold "$NAMES" 1000
	client $P -c 50 -P 16 -n "$REQ_C50P16" --names "$NAMES" --preloaded \
	    -t whereis --csv | grep -v '^target,' | sed 's/^procreg,whereis,/procreg,whereis-1Mx1000conns,/' | tee -a "$CSV"
	unhold
	hold 1000
	client $P -c 50 -P 16 -n "$REQ_C50P16" --names 1000 --preloaded \
	    -t whereis --csv | grep -v '^target,' | sed 's/^procreg,whereis,/procreg,whereis-1k,/' | tee -a "$CSV"
	echo "== purge: $PURGE_NAMES names, $PURGE_MONITORS monitors"
	client $P -t purge --purge-names "$PURGE_NAMES" \
	    --purge-monitors "$PURGE_MONITORS" --purge-watchers 10 \
	    --names 1000 --preloaded --probe | tee "$OUT/purge-small.txt"
	echo "== purge: $BIG_PURGE names, $PURGE_MONITORS monitors, whereis probe"
	client $P -t purge --purge-names "$BIG_PURGE" \
	    --purge-monitors "$PURGE_MONITORS" --purge-watchers 10 \
	    --names 1000 --preloaded --probe | tee "$OUT/purge-big.txt"
	unhold
fi

# --- the table ---------------------------------------------------------------
echo
echo "== results (ops/s; latency in us; daemon CPU in us per op from /proc/PID/stat)"
awk -F, -v nconns="$CONNS" -v dnames="$DBUS_NAMES" '
{ k = $1 "," $2 "," $3 "," $4; ops[k] = $9; p50[k] = $10; p99[k] = $11;
  p999[k] = $12; cpu[k] = $14; dpct[k] = $15; cli[k] = $19 }
END {
	split("1,1 50,1 50,16", shapes, " ")
	split("whereis:get whereis-miss:get-miss register:setnx-del send:publish", pairs, " ")
	printf "%-7s %-22s %10s %10s %6s | %8s %8s | %8s %8s | %7s %7s %6s | %s\n",
	    "shape", "procreg vs redis", "procreg/s", "redis/s", "ratio",
	    "p50 pr", "p50 rd", "p99 pr", "p99 rd", "cpu pr", "cpu rd", "cpu r",
	    "busy% pr/rd/client"
	for (s = 1; s <= 3; s++) {
		split(shapes[s], cd, ",")
		sh = "c" cd[1] "P" cd[2]
		for (i = 1; i <= 4; i++) {
			split(pairs[i], tt, ":")
			a = "procreg," tt[1] "," cd[1] "," cd[2]
			b = "redis," tt[2] "," cd[1] "," cd[2]
			if (!(a in ops) || !(b in ops)) continue
			printf "%-7s %-22s %10.0f %10.0f %5.2fx | %8.1f %8.1f | %8.1f %8.1f | %7.3f %7.3f %5.2fx | %.0f/%.0f/%.0f\n",
			    sh, tt[1] " vs " tt[2], ops[a], ops[b],
			    ops[b] ? ops[a] / ops[b] : 0, p50[a], p50[b], p99[a],
			    p99[b], cpu[a], cpu[b], cpu[b] ? cpu[a] / cpu[b] : 0,
			    dpct[a], dpct[b], cli[a]
		}
		e = "echo,echo," cd[1] "," cd[2]
		a = "procreg,whereis," cd[1] "," cd[2]
		if (e in ops)
			printf "%-7s %-22s %10.0f %10s %5.2fx | %8.1f %8s | %8.1f %8s | %7.3f %7s %6s | %.0f/-/%.0f\n",
			    sh, "echo (whereis/echo)", ops[e], "", ops[a] / ops[e],
			    p50[e], "", p99[e], "", cpu[e], "", "", dpct[e], cli[e]
		d = "dbus,getnameowner," cd[1] "," cd[2]
		if ((a in ops) && (d in ops))
			printf "%-7s %-22s %10.0f %10.0f %5.2fx | %8.1f %8.1f | %8.1f %8.1f | %7.3f %7.3f %5.2fx | %.0f/%.0f/%.0f\n",
			    sh, "whereis vs dbus", ops[a], ops[d],
			    ops[d] ? ops[a] / ops[d] : 0, p50[a], p50[d], p99[a],
			    p99[d], cpu[a], cpu[d], cpu[d] ? cpu[a] / cpu[d] : 0,
			    dpct[a], dpct[d], cli[d]
		m = "procreg,monitor," cd[1] "," cd[2]
		if (m in ops)
			printf "%-7s %-22s %10.0f %10s %6s | %8.1f %8s | %8.1f %8s | %7.3f %7s %6s | %.0f/-/%.0f\n",
			    sh, "monitor (fired/s)", ops[m], "", "", p50[m], "",
			    p99[m], "", cpu[m], "", "", dpct[m], cli[m]
	}
	a = "procreg,whereis,1,1"; e = "echo,echo,1,1"
	if ((a in p50) && (e in p50))
		printf "\none-deep p50: whereis %.1f us vs echo floor %.1f us (%+.0f%%)\n",
		    p50[a], p50[e], 100 * (p50[a] / p50[e] - 1)
	if ("dbus,getnameowner,1,1" in ops)
		printf "\"whereis vs dbus\": dbus-broker GetNameOwner on a private bus, %d names owned (its columns in the redis places)\n", dnames
	a = "procreg,whereis-1Mx1000conns,50,16"; b = "procreg,whereis-1k,50,16"
	if ((a in ops) && (b in ops))
		printf "whereis c50P16: 1M names/1000 conns %.0f/s (%.3f us cpu) vs 1000 names %.0f/s (%.3f us cpu): %.2fx\n",
		    ops[a], cpu[a], ops[b], cpu[b], ops[a] / ops[b]
	a = "procreg,conns," nconns ",1"; b = "redis,conns-get," nconns ",1"
	if ((a in ops) && (b in ops))
		printf "10k conns, one whereis each: procreg p50 %.0f us p99 %.0f us, daemon %.1f us/req; redis GET p50 %.0f us p99 %.0f us, %.1f us/req\n",
		    p50[a], p99[a], cpu[a], p50[b], p99[b], cpu[b]
}' "$CSV"
echo "$MEMLINE"
[ -z "$DBUS_MEMLINE" ] || echo "$DBUS_MEMLINE"
[ -z "$SYSLINES" ] || printf '%s' "$SYSLINES"
if [ "$SCALE" = 1 ]; then
	grep -h 'purge' "$OUT/purge-small.txt" "$OUT/purge-big.txt" | sed 's/  */ /g'
fi
echo "raw CSV: $CSV"
