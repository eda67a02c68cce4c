#!/usr/bin/env bash
# Whole-process comparison on one warm PostgreSQL cluster: pg_checksums --check (the reference
# tool, single-threaded), the floor (xxhsum -H3 over the same files, one process per core: bound
# by the largest file, since a process hashes a file alone — dbfsck cuts big files into chunks,
# so it can beat this floor on pgbench's one large table), and dbfsck scan --format postgres
# (maps and --no-mmap) with all threads and with one. Prints wall times and ratios.
#
#   benches/compare-postgres.sh [PGDATA]
#
# Without PGDATA it builds a cluster with pgbench (scale ${SCALE:-85}, about 1.3 GB) in a temp
# directory as the postgres user (run as root), and removes it afterwards.
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
  TOP=$(mktemp -d /tmp/dbfsck-cmp-XXXXXX); chown postgres "$TOP"
  trap 'runuser -u postgres -- "$BIN/pg_ctl" -D "$TOP/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$TOP"' EXIT
  DATA=$TOP/data
  runuser -u postgres -- "$BIN/initdb" -k -D "$DATA" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -o "-k $TOP -c listen_addresses='' -c fsync=off" -l "$TOP/log" -w start >/dev/null
  runuser -u postgres -- "$BIN/pgbench" -h "$TOP" -U postgres -i -q -s "${SCALE:-85}" postgres >/dev/null 2>&1
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
fi

FILES=$(find "$DATA/base" "$DATA/global" -type f ! -name 'pg_*' ! -name 'PG_VERSION')
BYTES=$(du -cb $FILES | tail -1 | cut -f1)
cat $FILES > /dev/null   # warm the cache


t_pg=$(best runuser -u postgres -- "$BIN/pg_checksums" --check -D "$DATA")
CPUS=$(nproc)
NFILES=$(echo "$FILES" | wc -l)
t_floor=$(best sh -c "echo \"\$1\" | xargs -d '\n' -P $CPUS -n $(( (NFILES + CPUS - 1) / CPUS )) xxhsum -H3 > /dev/null" sh "$FILES")
t_all=$(best "$DBFSCK" scan --format postgres --quiet "$DATA")
# The files pg_checksums reads, and only those: a data directory scan also verifies pg_wal/.
t_same=$(best "$DBFSCK" scan --format postgres --quiet "$DATA/base" "$DATA/global")
t_one=$(best "$DBFSCK" scan --format postgres --quiet --threads 1 "$DATA")
t_pread=$(best "$DBFSCK" scan --format postgres --quiet --no-mmap "$DATA")
rss=$( { /usr/bin/time -f %M "$DBFSCK" scan --format postgres --quiet "$DATA" >/dev/null; } 2>&1 | tail -1)

gbs() { echo "scale=2; $BYTES / $1 / 1000000000" | bc -l; }
printf 'data: %s bytes in %s files (warm cache), %s CPUs\n' "$BYTES" "$(echo "$FILES" | wc -l)" "$(nproc)"
printf '%-34s %8.3f s  %6s GB/s\n' "pg_checksums --check" "$t_pg" "$(gbs "$t_pg")"
printf '%-34s %8.3f s  %6s GB/s\n' "floor: xxhsum -H3, $CPUS processes" "$t_floor" "$(gbs "$t_floor")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan (all threads)" "$t_all" "$(gbs "$t_all")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan base/ global/" "$t_same" "$(gbs "$t_same")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan --no-mmap" "$t_pread" "$(gbs "$t_pread")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan --threads 1" "$t_one" "$(gbs "$t_one")"
WALB=$(du -cb "$DATA/pg_wal" | tail -1 | cut -f1)
printf 'the data directory scan also verifies pg_wal/ (%s bytes), which pg_checksums never reads\n' "$WALB"
printf 'on the same files: dbfsck vs pg_checksums %.2fx faster (target >= 3), dbfsck / floor %.2f (target <= 1.20)\n' \
  "$(echo "$t_pg / $t_same" | bc -l)" "$(echo "$t_same / $t_floor" | bc -l)"
printf 'whole data directory: vs pg_checksums %.2fx; 1 -> all threads: %.2fx; peak RSS %s KiB\n' \
  "$(echo "$t_pg / $t_all" | bc -l)" "$(echo "$t_one / $t_all" | bc -l)" "$rss"
