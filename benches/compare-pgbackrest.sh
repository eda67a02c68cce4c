#!/usr/bin/env bash
# Whole-process comparison on one warm pgBackRest repository (issue 19): `pgbackrest verify`
# (the reference: it checks each stored file's SHA-1 and size and each archived segment's, on
# --process-max cores) against `dbfsck scan` of the same repository (the same, plus every file
# decompressed and its SHA-1, every page, every WAL record, and the restore verdict). Prints wall
# times and the ratio. A benchmark, never a test.
#
#   benches/compare-pgbackrest.sh            # SCALE=85 (about 1.3 GB), COMPRESS=gz
#
# Run as root with PostgreSQL 15 and pgBackRest installed; everything made is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
BIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cargo build -q --release -p dbfsck
DBFSCK=$PWD/target/release/dbfsck
TOP=$(mktemp -d /tmp/dbfsck-pgbrcmp-XXXXXX); chown postgres "$TOP"
DATA=$TOP/data
trap 'runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$TOP"' EXIT
CONF=$TOP/pgbackrest.conf
cat > "$CONF" <<CONF
[global]
repo1-path=$TOP/repo
compress-type=${COMPRESS:-gz}
start-fast=y
log-path=$TOP/log
lock-path=$TOP/lock
log-level-console=warn
repo1-retention-full=9
process-max=$(nproc)
[main]
pg1-path=$DATA
pg1-socket-path=$TOP
CONF
chown postgres "$CONF"
PGBR() { runuser -u postgres -- pgbackrest --config="$CONF" --stanza=main "$@"; }
runuser -u postgres -- "$BIN/initdb" -k -D "$DATA" -A trust -U postgres >/dev/null
runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -o "-k $TOP -c listen_addresses='' -c archive_mode=on -c archive_command='pgbackrest --config=$CONF --stanza=main archive-push %p'" -l "$TOP/pglog" -w start >/dev/null
runuser -u postgres -- "$BIN/pgbench" -h "$TOP" -U postgres -i -q -s "${SCALE:-85}" postgres >/dev/null 2>&1
PGBR stanza-create >/dev/null
PGBR --type=full backup >/dev/null 2>&1
runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
find "$TOP/repo" -type f -exec cat {} + > /dev/null   # warm the cache
BYTES=$(du -cb "$TOP/repo" | tail -1 | cut -f1)
t_v=$(best PGBR verify)
t_d=$(best "$DBFSCK" scan --quiet "$TOP/repo")
t_one=$(best "$DBFSCK" scan --quiet --threads 1 "$TOP/repo")
printf 'pgBackRest repository (%s), %s bytes stored, %s CPUs (warm)\n' "${COMPRESS:-gz}" "$BYTES" "$(nproc)"
printf '  %-48s %8.3f s\n' "pgbackrest verify --process-max=$(nproc)" "$t_v" \
  "dbfsck scan (decompress, SHA-1, pages, WAL, restore)" "$t_d" "dbfsck scan --threads 1" "$t_one"
printf '  dbfsck vs pgbackrest verify: %.2fx\n' "$(echo "$t_v / $t_d" | bc -l)"
