#!/usr/bin/env bash
# Whole-process comparison on one warm base backup (issue 19): pg_verifybackup (the reference:
# one core; with and without parsing the WAL, -n) against dbfsck scan of the same backup (every
# page, the manifest's sizes and checksums, the WAL it needs), with a CRC32C manifest (the
# default) and a SHA256 one. Prints wall times and ratios. A benchmark, never a test.
#
#   benches/compare-backup.sh [PGDATA]
#
# PGDATA: a stopped cluster to back up (it is started on a socket in a temp dir for
# pg_basebackup, then stopped). Without it a pgbench cluster of scale ${SCALE:-85} (about 1.3 GB)
# is built. Run as root with PostgreSQL 15 installed; everything made is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
BIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cargo build -q --release -p dbfsck
DBFSCK=$PWD/target/release/dbfsck
TOP=$(mktemp -d /tmp/dbfsck-bkcmp-XXXXXX); chown postgres "$TOP"
if [ $# -ge 1 ]; then DATA=$1; else DATA=$TOP/data; fi
trap 'runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true; rm -rf "$TOP"' EXIT
if [ $# -eq 0 ]; then
  runuser -u postgres -- "$BIN/initdb" -k -D "$DATA" -A trust -U postgres >/dev/null
fi
runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -o "-k $TOP -c listen_addresses=''" -l "$TOP/log" -w start >/dev/null
if [ $# -eq 0 ]; then
  runuser -u postgres -- "$BIN/pgbench" -h "$TOP" -U postgres -i -q -s "${SCALE:-85}" postgres >/dev/null 2>&1
fi
for m in CRC32C SHA256; do
  runuser -u postgres -- "$BIN/pg_basebackup" -h "$TOP" -U postgres -D "$TOP/backup-$m" -c fast --manifest-checksums=$m
done
runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null

for m in CRC32C SHA256; do
  B=$TOP/backup-$m
  find "$B" -type f -exec cat {} + > /dev/null   # warm the cache
  BYTES=$(du -cb "$B" | tail -1 | cut -f1)
  t_vb=$(best runuser -u postgres -- "$BIN/pg_verifybackup" "$B")
  t_vbn=$(best runuser -u postgres -- "$BIN/pg_verifybackup" -n "$B")
  t_db=$(best "$DBFSCK" scan --quiet "$B")
  t_one=$(best "$DBFSCK" scan --quiet --threads 1 "$B")
  printf '%s manifest, %s bytes, %s CPUs (warm)\n' "$m" "$BYTES" "$(nproc)"
  printf '  %-40s %8.3f s\n' "pg_verifybackup" "$t_vb" "pg_verifybackup -n (no WAL)" "$t_vbn" \
    "dbfsck scan (pages, manifest, WAL)" "$t_db" "dbfsck scan --threads 1" "$t_one"
  printf '  dbfsck vs pg_verifybackup: %.2fx faster\n' "$(echo "$t_vb / $t_db" | bc -l)"
done
