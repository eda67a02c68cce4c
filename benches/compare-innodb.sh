#!/usr/bin/env bash
# Whole-process comparison on one warm MariaDB data directory: innochecksum (the reference tool,
# one file per run, single-threaded) over every tablespace, the floor (xxhsum -H3 over the same
# files, one process per core: bound by the largest file, which one process hashes alone), and
# dbfsck scan --format innodb with all threads and with one. Prints wall times, GB/s and ratios.
#
#   benches/compare-innodb.sh [DATADIR]
#
# Without DATADIR it builds one in a temp directory (run as root, mariadb-server installed):
# tables in full_crc32 and crc32 format with ${ROWS:-1500000} rows each (about 1 GB in all), the
# server stopped cleanly, and removes it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
need xxhsum xxhash "the floor"
cargo build -q --release -p dbfsck
DBFSCK=$PWD/target/release/dbfsck

if [ $# -ge 1 ]; then
  DATA=$1
else
  TOP=$(mktemp -d /tmp/dbfsck-cmp-innodb-XXXXXX); mkdir "$TOP/tmp"; chown -R mysql:mysql "$TOP"; chmod 755 "$TOP"
  trap '[ -f "$TOP/pid" ] && kill -9 "$(cat "$TOP/pid")" 2>/dev/null; rm -rf "$TOP"' EXIT
  DATA=$TOP/data
  runuser -u mysql -- mariadb-install-db --no-defaults --datadir="$DATA" --auth-root-authentication-method=normal --skip-test-db >/dev/null 2>&1
  runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$DATA" --socket="$TOP/sock" --skip-networking \
    --pid-file="$TOP/pid" --log-error="$TOP/err.log" --tmpdir="$TOP/tmp" --innodb-buffer-pool-size=512M \
    --innodb-log-file-size=512M --innodb-flush-log-at-trx-commit=0 &
  for _ in $(seq 100); do [ -S "$TOP/sock" ] && break; sleep 0.2; done
  M="mariadb --no-defaults -S $TOP/sock -uroot"
  rows=${ROWS:-1500000}
  $M -e "create database bench; use bench;
    create table fc (id int primary key, a varchar(250), b int, key(b)) engine=innodb;
    insert into fc select seq, repeat(md5(seq), 7), seq from seq_1_to_$rows;
    set global innodb_checksum_algorithm=crc32;
    create table c32 (id int primary key, a varchar(250), b int, key(b)) engine=innodb;
    insert into c32 select seq, repeat(md5(seq), 7), seq from seq_1_to_$rows;
    shutdown;"
  while [ -f "$TOP/pid" ]; do sleep 0.2; done
fi

FILES=$(find "$DATA" -name '*.ibd' -o -name 'ibdata*' -o -name 'undo[0-9]*' | sort)
BYTES=$(du -cb $FILES | tail -1 | cut -f1)
cat $FILES > /dev/null   # warm the cache
# Both tools must pass the clean data, or the times compare nothing. innochecksum judges the
# doublewrite slots in ibdata1 (images of other tablespaces' pages) as ibdata1's own pages and
# fails them (MariaDB 10.11.19): it is run over ibdata* with --allow-mismatches, so it reads
# the whole file there too.
ic() { case "$1" in */ibdata*) innochecksum --allow-mismatches=1000000 "$1" ;; *) innochecksum "$1" ;; esac; }
for f in $FILES; do ic "$f" > /dev/null || { echo "innochecksum rejects $f" >&2; exit 1; }; done
"$DBFSCK" scan --format innodb --quiet "$DATA" || { echo "dbfsck reports damage in $DATA" >&2; exit 1; }


# shellcheck disable=SC2016
t_ic=$(best 3 -- sh -c 'for f in "$@"; do case "$f" in */ibdata*) innochecksum --allow-mismatches=1000000 "$f" ;; *) innochecksum "$f" ;; esac || exit 1; done' sh $FILES)
CPUS=$(nproc)
NFILES=$(echo "$FILES" | wc -l)
t_floor=$(best 3 -- sh -c "echo \"\$1\" | xargs -d '\n' -P $CPUS -n $(( (NFILES + CPUS - 1) / CPUS )) xxhsum -H3 > /dev/null" sh "$FILES")
t_all=$(best 3 -- "$DBFSCK" scan --format innodb --quiet "$DATA")
t_one=$(best 3 -- "$DBFSCK" scan --format innodb --quiet --threads 1 "$DATA")
rss=$( { /usr/bin/time -f %M "$DBFSCK" scan --format innodb --quiet "$DATA" >/dev/null; } 2>&1 | tail -1)

gbs() { echo "scale=2; $BYTES / $1 / 1000000000" | bc -l; }
printf 'data: %s bytes in %s files (warm cache), %s CPUs\n' "$BYTES" "$(echo "$FILES" | wc -l)" "$(nproc)"
printf '%-34s %8.3f s  %6s GB/s\n' "innochecksum (every file)" "$t_ic" "$(gbs "$t_ic")"
printf '%-34s %8.3f s  %6s GB/s\n' "floor: xxhsum -H3, $CPUS processes" "$t_floor" "$(gbs "$t_floor")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan (all threads)" "$t_all" "$(gbs "$t_all")"
printf '%-34s %8.3f s  %6s GB/s\n' "dbfsck scan --threads 1" "$t_one" "$(gbs "$t_one")"
printf 'per core: dbfsck --threads 1 vs innochecksum %.2fx; all threads vs innochecksum %.2fx (target >= 2); 1 -> all threads %.2fx; dbfsck / floor %.2f; peak RSS %s KiB\n' \
  "$(echo "$t_ic / $t_one" | bc -l)" "$(echo "$t_ic / $t_all" | bc -l)" "$(echo "$t_one / $t_all" | bc -l)" "$(echo "$t_all / $t_floor" | bc -l)" "$rss"
