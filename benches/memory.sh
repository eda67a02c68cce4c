#!/usr/bin/env bash
# Peak memory against the amount of damage (issue 15 case 7): a native file with a valid
# header and a few written pages followed by a sparse tail — every page of it all zero — is
# scanned (human, JSON, JSON Lines) and repaired (--repair --force: every zeroed page replaced
# by a quarantine marker, behind the undo log), and the undo is run; each prints its peak RSS
# (/usr/bin/time -v). Memory must stay flat whatever the size: under 256 MiB at 16 GiB.
#
#   benches/memory.sh            # SIZES="1GiB 16GiB" WORK=/tmp/dbfsck-memory
#
# Needs about SIZE of free disk for the repair (markers are written on every page).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1GiB 16GiB"}
WORK=${WORK:-/tmp/dbfsck-memory}
cargo build --release -q -p dbfsck -p dbfsck-bench
BIN=$PWD/target/release/dbfsck
GEN=$PWD/target/release/dbfsck-gen

bytes() { numfmt --from=iec "${1%iB}"; }
rss() { # command… → "peak RSS in MiB" on stdout, the command's output discarded
  /usr/bin/time -v "$@" >/dev/null 2>"$WORK/time.txt" || true
  awk '/Maximum resident set size/ { printf "%.1f", $6 / 1024 }' "$WORK/time.txt"
}

printf '%-8s %-34s %10s\n' size command "peak MiB"
for size in $SIZES; do
  rm -rf "$WORK"; mkdir -p "$WORK/data"
  "$GEN" --out "$WORK/data" --size 1MiB --files 1 --page-size 4096 --seed 1 >/dev/null
  f="$WORK/data/data-0000.dbfp"
  truncate -s "$(bytes "$size")" "$f"
  for out in human json jsonl; do
    printf '%-8s %-34s %10s\n' "$size" "scan --output $out" "$(rss "$BIN" scan --output "$out" "$f")"
  done
  printf '%-8s %-34s %10s\n' "$size" "scan --repair --force" \
    "$(rss "$BIN" scan --repair --force --undo-log "$WORK/undo.log" --output json "$f")"
  ls -l "$WORK/undo.log" | awk '{ printf "         undo log: %d bytes\n", $5 }'
  printf '%-8s %-34s %10s\n' "$size" "undo" "$(rss "$BIN" undo "$WORK/undo.log")"
done
rm -rf "$WORK"
