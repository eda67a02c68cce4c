#!/usr/bin/env bash
# Whole-process comparison on one warm RocksDB database (issue 20): `dbfsck scan` of the
# database directory against the floor — reading and hashing the same live tables and WALs on
# every core (`xxhsum -H3`, one process per core) — and against `sst_dump --command=verify
# --verify_checksum` over the same tables (one process per core too, so it is not handicapped
# by running on one). Best of 5, warm cache. Prints wall times and the ratios. A benchmark, never
# a test.
#
#   benches/compare-rocksdb.sh              # NUM=20000000 keys of 100 bytes (about 2.3 GB)
#
# Needs rocksdb-tools (db_bench, sst_dump) and xxhash; everything made is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
need xxhsum xxhash "the floor"
need db_bench rocksdb-tools
cargo build -q --release -p dbfsck
DBFSCK=$PWD/target/release/dbfsck
TOP=$(mktemp -d /tmp/dbfsck-rocksdbcmp-XXXXXX)
trap 'rm -rf "$TOP"' EXIT
DB=$TOP/db
db_bench --benchmarks=fillrandom --num="${NUM:-20000000}" --value_size=100 \
  --compression_type="${COMPRESSION:-snappy}" --db="$DB" >/dev/null 2>&1
CORES=$(nproc)
# The files dbfsck verifies: the live set (its JSON names them as scanned, not skipped).
"$DBFSCK" scan "$DB" --output json > "$TOP/report.json" || true
python3 - "$TOP/report.json" "$DB" > "$TOP/files" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
skipped = {s["path"] for s in r["skipped"]}
for name in sorted(os.listdir(sys.argv[2])):
    p = os.path.join(sys.argv[2], name)
    if os.path.isfile(p) and p not in skipped and (name.endswith((".sst", ".log")) or name.startswith("MANIFEST-")):
        print(p)
PY
grep '\.sst$' "$TOP/files" > "$TOP/tables"
BYTES=$(xargs cat < "$TOP/files" | wc -c)
echo "database: $(wc -l < "$TOP/tables") live tables, $(wc -l < "$TOP/files") files scanned, $BYTES bytes; $CORES cores"
for f in $(cat "$TOP/files"); do cat "$f" > /dev/null; done
floor=$(best -- sh -c "xargs -P $CORES -n 1 xxhsum -H3 < $TOP/files")
mmap=$(best -- "$DBFSCK" scan "$DB" --quiet)
pread=$(best -- "$DBFSCK" scan "$DB" --quiet --no-mmap)
one=$(best 3 -- "$DBFSCK" scan "$DB" --quiet --threads 1)
sst=$(best 3 -- sh -c "xargs -P $CORES -I{} sst_dump --file={} --command=verify --verify_checksum < $TOP/tables")
ratio() { echo "scale=2; $1 / $2" | bc -l; }
printf '%-52s %8.3f s\n' "floor: xxhsum -H3, one process per core" "$floor"
printf '%-52s %8.3f s  %sx floor\n' "dbfsck scan (default)" "$mmap" "$(ratio "$mmap" "$floor")"
printf '%-52s %8.3f s  %sx floor\n' "dbfsck scan --no-mmap" "$pread" "$(ratio "$pread" "$floor")"
printf '%-52s %8.3f s  (1 -> %s threads: %sx)\n' "dbfsck scan --threads 1" "$one" "$CORES" "$(ratio "$one" "$mmap")"
printf '%-52s %8.3f s  %sx floor (tables only; stops at each table'"'"'s first bad block)\n' "sst_dump --verify_checksum, one process per core" "$sst" "$(ratio "$sst" "$floor")"
