#!/usr/bin/env bash
# Whole-process comparison on the WAL of one crashed pgbench cluster, warm cache: pg_waldump
# --stats (the reference reader: one core, stops at the first bad record), the floor (xxhsum -H3
# over the same segments, one process per core) and dbfsck scan of pg_wal/ (every record's CRC,
# the join and the recovery verdict) with all threads and with one. Prints wall times and ratios.
#
#   benches/compare-wal.sh [PGDATA]
#
# Without PGDATA it builds a cluster in a temp directory as the postgres user (run as root):
# pgbench -i at scale ${SCALE:-20}, then ${SECONDS_LOAD:-20} s of pgbench, then a crash
# (pg_ctl stop -m immediate); it removes it afterwards. Target (issue 18): >= 4x pg_waldump on
# 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
need xxhsum xxhash "the floor"
BIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cargo build -q --release -p dbfsck
DBFSCK=$PWD/target/release/dbfsck

if [ $# -ge 1 ]; then
  DATA=$1
else
  TOP=$(mktemp -d /tmp/dbfsck-walcmp-XXXXXX); chown postgres "$TOP"
  trap 'runuser -u postgres -- "$BIN/pg_ctl" -D "$TOP/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$TOP"' EXIT
  DATA=$TOP/data
  runuser -u postgres -- "$BIN/initdb" -k -D "$DATA" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -o "-k $TOP -c listen_addresses='' -c fsync=off -c max_wal_size=4GB" -l "$TOP/log" -w start >/dev/null
  runuser -u postgres -- "$BIN/pgbench" -h "$TOP" -U postgres -i -q -s "${SCALE:-20}" postgres >/dev/null 2>&1
  runuser -u postgres -- "$BIN/pgbench" -h "$TOP" -U postgres -n -c 2 -T "${SECONDS_LOAD:-20}" postgres >/dev/null 2>&1
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null
fi

WAL=$DATA/pg_wal
SEGS=$(find "$WAL" -maxdepth 1 -type f -name '????????????????????????' | sort)
NSEGS=$(echo "$SEGS" | wc -l)
BYTES=$(du -cb $SEGS | tail -1 | cut -f1)
FIRST=$(basename "$(echo "$SEGS" | head -1)")
# The first segment's first byte, as an LSN (16 MiB segments).
START=$(printf '%X/%X' $((16#${FIRST:8:8})) $(( 16#${FIRST:16:8} * 16777216 )))
cat $SEGS > /dev/null   # warm the cache


CPUS=$(nproc)
t_dump=$(best "$BIN/pg_waldump" --stats -p "$WAL" -s "$START")
t_floor=$(best sh -c "echo \"\$1\" | xargs -d '\n' -P $CPUS -n $(( (NSEGS + CPUS - 1) / CPUS )) xxhsum -H3 > /dev/null" sh "$SEGS")
t_all=$(best "$DBFSCK" scan --format postgres --quiet "$WAL")
t_one=$(best "$DBFSCK" scan --format postgres --quiet --threads 1 "$WAL")
rss=$( { /usr/bin/time -f %M "$DBFSCK" scan --format postgres --quiet "$WAL" >/dev/null; } 2>&1 | tail -1)
records=$( { "$BIN/pg_waldump" --stats -p "$WAL" -s "$START" 2>/dev/null || true; } | awk '/^Total/ {print $2}')

gbs() { echo "scale=2; $BYTES / $1 / 1000000000" | bc -l; }
printf 'WAL: %s bytes in %s segments, %s records (warm cache), %s CPUs\n' "$BYTES" "$NSEGS" "$records" "$CPUS"
printf '%-34s %8.3f s  %6s GB/s\n' "pg_waldump --stats" "$t_dump" "$(gbs "$t_dump")"
printf '%-34s %8.3f s  %6s GB/s\n' "floor: xxhsum -H3, $CPUS processes" "$t_floor" "$(gbs "$t_floor")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan pg_wal (all threads)" "$t_all" "$(gbs "$t_all")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan --threads 1" "$t_one" "$(gbs "$t_one")"
printf 'dbfsck vs pg_waldump: %.2fx faster (target >= 4); 1 -> all threads: %.2fx; dbfsck / floor: %.2f; peak RSS %s KiB\n' \
  "$(echo "$t_dump / $t_all" | bc -l)" "$(echo "$t_one / $t_all" | bc -l)" "$(echo "$t_all / $t_floor" | bc -l)" "$rss"
