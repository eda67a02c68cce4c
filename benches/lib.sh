# Shared by the comparison scripts (sourced): timing helpers.

# best [RUNS=5] -- CMD…: the best wall time of RUNS runs of CMD, in seconds; CMD's output and
# failures are ignored (a tool that exits non-zero on damage is still timed).
best() {
  local runs=5
  if [ "${1:-}" != "--" ] && [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "${2:-}" = "--" ]; then runs=$1; shift 2; fi
  [ "${1:-}" = "--" ] && shift
  local best=999999 t0 t1
  for _ in $(seq "$runs"); do
    t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || true; t1=$(date +%s.%N)
    best=$(echo "if ($t1 - $t0 < $best) $t1 - $t0 else $best" | bc -l)
  done
  echo "$best"
}

# need TOOL PACKAGE [WHAT]: exit 2, saying which Debian package to install, when TOOL is missing.
need() {
  command -v "$1" > /dev/null || { echo "$1 not found${3:+ ($3)}: apt-get install $2" >&2; exit 2; }
}
