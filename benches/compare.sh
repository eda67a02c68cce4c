#!/usr/bin/env bash
# Whole-process comparison, in one run on the same data, against the physical limits of this
# machine (issue 5). Prints wall times, GB/s, peak RSS and the ratios the targets are stated in.
#
#   benches/compare.sh                       # everything, in $WORK (default /tmp/dbfsck-compare)
#   SIZE=4GiB FILES=16 SMALL=100000 benches/compare.sh
#   NO_POSTGRES=1 NO_COLD=1 NO_SMALL=1 benches/compare.sh
#
# What it runs (best of 5 for warm runs, one run each for cold ones):
#   native: a SIZE dataset of FILES files (8 KiB pages, xxh3) made by dbfsck-gen;
#     cat FILES | cat · dbfsck scan (all threads; 1 thread; --no-mmap) · peak RSS;
#     one huge file of the same size, all threads vs 1;
#     cold cache (pages evicted with posix_fadvise(DONTNEED)): dbfsck scan, and dd iflag=direct
#     bs=4M over the same files;
#   small: SMALL files of 32 KiB (warm): per-byte cost against the large-file scan;
#   postgres: benches/compare-postgres.sh (pg_checksums --check vs dbfsck on a pgbench cluster;
#     needs root and PostgreSQL 15).
set -euo pipefail
cd "$(dirname "$0")/.."
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

best() {  # best wall time of 5 runs, in seconds
  local best=999999 t0 t1
  for _ in 1 2 3 4 5; do
    t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || true; t1=$(date +%s.%N)
    best=$(echo "if ($t1 - $t0 < $best) $t1 - $t0 else $best" | bc -l)
  done
  echo "$best"
}
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

mapfile -t NATIVE < <(find "$WORK/native" -name '*.dbfp' | sort)
NB=$(bytes_of "${NATIVE[@]}")
cat "${NATIVE[@]}" > /dev/null
echo "machine: $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
echo "native: $NB bytes in ${#NATIVE[@]} files (8 KiB pages, xxh3), warm cache"
t_cat=$(best sh -c 'cat "$@" | cat > /dev/null' sh "${NATIVE[@]}")
t_all=$(best "$DBFSCK" scan --quiet "$WORK/native")
t_one=$(best "$DBFSCK" scan --quiet --threads 1 "$WORK/native")
t_pread=$(best "$DBFSCK" scan --quiet --no-mmap "$WORK/native")
t_pread_one=$(best "$DBFSCK" scan --quiet --no-mmap --threads 1 "$WORK/native")
rss_mmap=$(rss "$DBFSCK" scan --quiet "$WORK/native")
rss_pread=$(rss "$DBFSCK" scan --quiet --no-mmap "$WORK/native")
row "cat files | cat" "$t_cat" "$NB"
row "dbfsck scan (all threads, mmap)" "$t_all" "$NB"
row "dbfsck scan --threads 1" "$t_one" "$NB"
row "dbfsck scan --no-mmap (all threads)" "$t_pread" "$NB"
row "dbfsck scan --no-mmap --threads 1" "$t_pread_one" "$NB"

HUGE=$(find "$WORK/huge" -name '*.dbfp')
HB=$(bytes_of "$HUGE")
cat "$HUGE" > /dev/null
t_huge_all=$(best "$DBFSCK" scan --quiet "$WORK/huge")
t_huge_one=$(best "$DBFSCK" scan --quiet --threads 1 "$WORK/huge")
row "one huge file, all threads" "$t_huge_all" "$HB"
row "one huge file, --threads 1" "$t_huge_one" "$HB"

echo "targets (warm):"
printf '  dbfsck / cat wall time        %5s   (target <= 0.6)\n' "$(ratio "$t_all" "$t_cat")"
printf '  1 -> all threads, mmap/pread  %5sx / %sx  (target >= 1.8 on 2 CPUs)\n' \
  "$(ratio "$t_one" "$t_all")" "$(ratio "$t_pread_one" "$t_pread")"
printf '  one huge file 1 -> all        %5sx\n' "$(ratio "$t_huge_one" "$t_huge_all")"
printf '  peak RSS mmap / pread         %s / %s KiB  (target <= 65536)\n' "$rss_mmap" "$rss_pread"

if [ -z "${NO_COLD:-}" ]; then
  echo "cold cache (posix_fadvise DONTNEED before each run):"
  evict "${NATIVE[@]}"; t_cold=$(once "$DBFSCK" scan --quiet "$WORK/native")
  evict "${NATIVE[@]}"; t_cold_pread=$(once "$DBFSCK" scan --quiet --no-mmap "$WORK/native")
  evict "${NATIVE[@]}"
  t0=$(date +%s.%N)
  for f in "${NATIVE[@]}"; do dd if="$f" of=/dev/null bs=4M iflag=direct status=none; done
  t_dd=$(echo "$(date +%s.%N) - $t0" | bc -l)
  row "dd iflag=direct bs=4M" "$t_dd" "$NB"
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
  printf '  per-byte cost small / large    %5sx  (target <= 3)\n' "$(ratio "$per_small" "$per_large")"
fi

if [ -z "${NO_POSTGRES:-}" ] && [ -x /usr/lib/postgresql/15/bin/pg_checksums ] && [ "$(id -u)" = 0 ]; then
  echo "postgres:"
  benches/compare-postgres.sh | sed 's/^/  /'
fi
