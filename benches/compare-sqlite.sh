#!/usr/bin/env bash
# Whole-process comparison on one warm SQLite database (issue 21): `dbfsck scan` against the
# floor — reading and hashing the same bytes on every core (`xxhsum -H3` over the file cut in
# one piece per core) — and against SQLite's own checks, `PRAGMA quick_check` and `PRAGMA
# integrity_check` (the sqlite3 CLI; single-threaded, as SQLite is). Best of 3 (integrity_check:
# one run), warm cache. Prints wall times, peak RSS and the ratios. A benchmark, never a test.
#
#   benches/compare-sqlite.sh                 # ROWS=2000000 rows of ~1 KiB with an index (~2.3 GB)
#   ROWS=500000 PAGE_SIZE=8192 benches/compare-sqlite.sh
#
# Needs sqlite3, python3 and xxhash; everything made is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
need xxhsum xxhash "the floor"
need sqlite3 sqlite3
cargo build -q --release -p dbfsck
DBFSCK=$PWD/target/release/dbfsck
TOP=$(mktemp -d /tmp/dbfsck-sqlitecmp-XXXXXX)
trap 'rm -rf "$TOP"' EXIT
DB=$TOP/big.db
python3 - "$DB" "${ROWS:-2000000}" "${PAGE_SIZE:-4096}" <<'PY'
import random, sqlite3, sys
path, rows, ps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(path, isolation_level=None)
c.execute(f"pragma page_size={ps}")
c.execute("pragma journal_mode=off")
c.execute("pragma synchronous=off")
c.execute("create table t(a integer primary key, k text, v blob)")
r = random.Random(21)
batch = 20000
for start in range(0, rows, batch):
    c.execute("begin")
    c.executemany("insert into t(k, v) values(?, ?)",
                  ((f"{r.random():.12f}", r.randbytes(r.randint(600, 1400))) for _ in range(min(batch, rows - start))))
    c.execute("commit")
c.execute("create index tk on t(k)")
c.close()
PY
CORES=$(nproc)
BYTES=$(stat -c %s "$DB")
echo "database: $BYTES bytes, $(sqlite3 "$DB" 'pragma page_count') pages of ${PAGE_SIZE:-4096} bytes; $CORES cores"
cat "$DB" > /dev/null
# The floor: the file hashed in one piece per core (xxhsum reads a piece through dd).
PIECE=$(( (BYTES + CORES - 1) / CORES / 1048576 + 1 ))
floor_cmd="seq 0 $((CORES - 1)) | xargs -P $CORES -I{} sh -c 'dd if=$DB bs=1M skip=\$(( {} * $PIECE )) count=$PIECE status=none | xxhsum -H3 > /dev/null'"
floor=$(best 3 -- sh -c "$floor_cmd")
floor1=$(best 3 -- xxhsum -H3 "$DB")
mmap=$(best 3 -- "$DBFSCK" scan "$DB" --quiet)
pread=$(best 3 -- "$DBFSCK" scan "$DB" --quiet --no-mmap)
one=$(best 3 -- "$DBFSCK" scan "$DB" --quiet --threads 1)
quick=$(best 3 -- sqlite3 "$DB" 'pragma quick_check')
integrity=$(best 1 -- sqlite3 "$DB" 'pragma integrity_check')
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
printf '%-44s %8.3f s\n' "floor: xxhsum -H3, one piece per core" "$floor"
printf '%-44s %8.3f s  (one core; the pieces above go through a pipe)\n' "xxhsum -H3 over the whole file" "$floor1"
printf '%-44s %8.3f s  %sx floor\n' "dbfsck scan (default)" "$mmap" "$(ratio "$mmap" "$floor")"
printf '%-44s %8.3f s  %sx floor\n' "dbfsck scan --no-mmap" "$pread" "$(ratio "$pread" "$floor")"
printf '%-44s %8.3f s  (1 -> %s threads: %sx)\n' "dbfsck scan --threads 1" "$one" "$CORES" "$(ratio "$one" "$mmap")"
printf '%-44s %8.3f s  %sx dbfsck\n' "sqlite3 'pragma quick_check'" "$quick" "$(ratio "$quick" "$mmap")"
printf '%-44s %8.3f s  %sx dbfsck\n' "sqlite3 'pragma integrity_check'" "$integrity" "$(ratio "$integrity" "$mmap")"
if [ -x /usr/bin/time ]; then
  echo "peak RSS: dbfsck --no-mmap $(rss "$DBFSCK" scan "$DB" --quiet --no-mmap) KiB, quick_check $(rss sqlite3 "$DB" 'pragma quick_check') KiB"
fi
