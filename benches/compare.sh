#!/usr/bin/env bash
# Whole-process comparison, in one run on the same data, against the floor of this machine
# (issue 17): reading every byte into user space and hashing it on every core, `xxhsum -H3`
# (Debian package xxhash) with one process per core over the same files. Prints wall times,
# GB/s, peak RSS and the ratios the targets are stated in. A benchmark, never a test: `.ci/run`
# does not run it.
#
#   benches/compare.sh                       # everything, in $WORK (default /tmp/dbfsck-compare)
#   SIZE=4GiB FILES=16 SMALL=100000 benches/compare.sh
#   NO_POSTGRES=1 NO_INNODB=1 NO_COLD=1 NO_SMALL=1 benches/compare.sh
#   HOG_GIB=17 benches/compare.sh            # the same with a process holding 17 GiB of RAM,
#                                            # so the page cache is being reclaimed meanwhile
#
# What it runs (best of 5 for warm runs, one run each for cold ones):
#   native: a SIZE dataset of FILES files (8 KiB pages, xxh3) made by dbfsck-gen;
#     the floor (xxhsum -H3, one process per core) · b3sum when installed (a peer hasher:
#     BLAKE3, mmap + all cores) · dbfsck scan (default; --mmap; --no-mmap; 1 thread each) ·
#     peak RSS; one huge file of the same size, all threads vs 1;
#     cold cache (pages evicted with posix_fadvise(DONTNEED)): dbfsck scan, and dd iflag=direct
#     bs=4M with one reader per core over the same files;
#   small: SMALL files of 32 KiB (warm): per-byte cost against the large-file scan;
#   postgres: benches/compare-postgres.sh (pg_checksums --check and its floor vs dbfsck on a
#     pgbench cluster; needs root and PostgreSQL 15).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
need xxhsum xxhash "the floor"
SIZE=${SIZE:-4GiB}
FILES=${FILES:-16}
SMALL=${SMALL:-100000}
WORK=${WORK:-/tmp/dbfsck-compare}
cargo build -q --release -p dbfsck -p dbfsck-bench
DBFSCK=$PWD/target/release/dbfsck
GEN=$PWD/target/release/dbfsck-gen
mkdir -p "$WORK"

gen() {  # gen DIR ARGS… : make a dataset once
  local dir=$1; shift
  [ -e "$dir/.done" ] || { rm -rf "$dir"; "$GEN" --out "$dir" "$@" > /dev/null; touch "$dir/.done"; }
}
gen "$WORK/native" --size "$SIZE" --files "$FILES" --page-size 8192 --checksum xxh3 --seed 1
gen "$WORK/huge" --size "$SIZE" --files 1 --page-size 8192 --checksum xxh3 --seed 2

once() {
  local t0 t1
  t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || true; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
evict() {  # drop the files' pages from the page cache
  python3 -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$@"
}
bytes_of() { du -cb "$@" | tail -1 | cut -f1; }
gbs() { echo "scale=2; $1 / $2 / 1000000000" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
row() { printf '  %-40s %8.3f s  %6s GB/s\n' "$1" "$2" "$(gbs "$3" "$2")"; }
rss() { /usr/bin/time -f %M -o "$WORK/rss" "$@" > /dev/null 2>&1 || true; tail -1 "$WORK/rss"; }
CPUS=$(nproc)
floor() {  # floor FILES… : xxhsum -H3 over the files, one process per core
  printf '%s\0' "$@" | xargs -0 -P "$CPUS" -n "$(( ($# + CPUS - 1) / CPUS ))" xxhsum -H3 > /dev/null
}
if [ -n "${HOG_GIB:-}" ]; then
  # Holds HOG_GIB GiB of anonymous memory (touched page by page) for the whole run.
  python3 -c 'import sys, time
a = bytearray(int(sys.argv[1]) << 30)
for i in range(0, len(a), 4096): a[i] = 1
time.sleep(86400)' "$HOG_GIB" &
  HOG=$!
  trap 'kill $HOG 2>/dev/null' EXIT
  sleep 1; while [ "$(awk '/VmRSS/ {print $2}' /proc/$HOG/status)" -lt $(( HOG_GIB * 1000000 )) ]; do sleep 1; done
  echo "memory hog: $HOG_GIB GiB held by pid $HOG"
fi

mapfile -t NATIVE < <(find "$WORK/native" -name '*.dbfp' | sort)
NB=$(bytes_of "${NATIVE[@]}")
cat "${NATIVE[@]}" > /dev/null
echo "machine: $CPUS CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
echo "native: $NB bytes in ${#NATIVE[@]} files (8 KiB pages, xxh3), warm cache"
t_floor=$(best floor "${NATIVE[@]}")
t_all=$(best "$DBFSCK" scan --quiet "$WORK/native")
t_all_one=$(best "$DBFSCK" scan --quiet --threads 1 "$WORK/native")
t_mmap=$(best "$DBFSCK" scan --quiet --mmap "$WORK/native")
t_one=$(best "$DBFSCK" scan --quiet --mmap --threads 1 "$WORK/native")
t_pread=$(best "$DBFSCK" scan --quiet --no-mmap "$WORK/native")
t_pread_one=$(best "$DBFSCK" scan --quiet --no-mmap --threads 1 "$WORK/native")
rss_all=$(rss "$DBFSCK" scan --quiet "$WORK/native")
rss_mmap=$(rss "$DBFSCK" scan --quiet --mmap "$WORK/native")
rss_pread=$(rss "$DBFSCK" scan --quiet --no-mmap "$WORK/native")
row "floor: xxhsum -H3, $CPUS processes" "$t_floor" "$NB"
if command -v b3sum > /dev/null; then
  t_b3=$(best b3sum "${NATIVE[@]}")
  row "b3sum (BLAKE3, mmap, all cores)" "$t_b3" "$NB"
fi
row "dbfsck scan (default)" "$t_all" "$NB"
row "dbfsck scan --threads 1" "$t_all_one" "$NB"
row "dbfsck scan --mmap" "$t_mmap" "$NB"
row "dbfsck scan --mmap --threads 1" "$t_one" "$NB"
row "dbfsck scan --no-mmap" "$t_pread" "$NB"
row "dbfsck scan --no-mmap --threads 1" "$t_pread_one" "$NB"

HUGE=$(find "$WORK/huge" -name '*.dbfp')
HB=$(bytes_of "$HUGE")
cat "$HUGE" > /dev/null
t_huge_all=$(best "$DBFSCK" scan --quiet "$WORK/huge")
t_huge_one=$(best "$DBFSCK" scan --quiet --threads 1 "$WORK/huge")
row "one huge file, all threads" "$t_huge_all" "$HB"
row "one huge file, --threads 1" "$t_huge_one" "$HB"

echo "targets (warm; ratios to the floor):"
printf '  default / floor               %5s   (target <= 1.10)\n' "$(ratio "$t_all" "$t_floor")"
printf '  --mmap / floor                %5s   (target <= 1.25)\n' "$(ratio "$t_mmap" "$t_floor")"
printf '  --no-mmap / floor             %5s   (target <= 1.25)\n' "$(ratio "$t_pread" "$t_floor")"
printf '  one huge file / floor         %5s\n' "$(ratio "$t_huge_all" "$t_floor")"
printf '  1 -> all threads, default/mmap/pread  %5sx / %sx / %sx  (target >= 1.8 on 2 CPUs)\n' \
  "$(ratio "$t_all_one" "$t_all")" "$(ratio "$t_one" "$t_mmap")" "$(ratio "$t_pread_one" "$t_pread")"
printf '  one huge file 1 -> all        %5sx\n' "$(ratio "$t_huge_one" "$t_huge_all")"
printf '  peak RSS default / mmap / pread  %s / %s / %s KiB  (target <= 65536)\n' "$rss_all" "$rss_mmap" "$rss_pread"

if [ -z "${NO_COLD:-}" ]; then
  echo "cold cache (posix_fadvise DONTNEED before each run):"
  evict "${NATIVE[@]}"; t_cold=$(once "$DBFSCK" scan --quiet "$WORK/native")
  evict "${NATIVE[@]}"; t_cold_pread=$(once "$DBFSCK" scan --quiet --no-mmap "$WORK/native")
  evict "${NATIVE[@]}"
  t0=$(date +%s.%N)
  printf '%s\0' "${NATIVE[@]}" | xargs -0 -P "$CPUS" -I{} dd if={} of=/dev/null bs=4M iflag=direct status=none
  t_dd=$(echo "$(date +%s.%N) - $t0" | bc -l)
  row "dd iflag=direct bs=4M, $CPUS readers" "$t_dd" "$NB"
  row "dbfsck scan (mmap)" "$t_cold" "$NB"
  row "dbfsck scan --no-mmap" "$t_cold_pread" "$NB"
  printf '  dbfsck / dd bandwidth         %5s / %s  (target >= 0.9)\n' \
    "$(ratio "$t_dd" "$t_cold")" "$(ratio "$t_dd" "$t_cold_pread")"
fi

if [ -z "${NO_SMALL:-}" ]; then
  gen "$WORK/small" --size $((SMALL * 32768)) --files "$SMALL" --page-size 8192 --checksum xxh3 --seed 3
  SB=$(find "$WORK/small" -name '*.dbfp' -print0 | du -cb --files0-from=- | tail -1 | cut -f1)
  find "$WORK/small" -name '*.dbfp' -print0 | xargs -0 cat > /dev/null
  t_small=$(best "$DBFSCK" scan --quiet "$WORK/small")
  echo "small files: $SMALL files of 32 KiB, $SB bytes, warm cache"
  row "dbfsck scan (all threads)" "$t_small" "$SB"
  per_small=$(echo "$t_small / $SB" | bc -l)
  per_large=$(echo "$t_all / $NB" | bc -l)
  printf '  per-byte cost small / large    %5sx  (target <= 2)\n' "$(ratio "$per_small" "$per_large")"
fi

if [ -z "${NO_POSTGRES:-}" ] && [ -x /usr/lib/postgresql/15/bin/pg_checksums ] && [ "$(id -u)" = 0 ]; then
  echo "postgres:"
  benches/compare-postgres.sh | sed 's/^/  /'
fi
