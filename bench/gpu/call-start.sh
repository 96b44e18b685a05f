# Sourced at the top of a device call's script (gpu-step8.sh, gpu-autotune.sh, gpu-memory-recheck.sh): the clock and its
# helpers (`left [END]`: seconds until END or ENDS_BY; `at WHAT`: a timestamped heading), $OUT, the
# machine's runtime (device-env.sh; node must be unpacked already) and the files of $MODELS (default
# large; e.g. large,medium) in $W for the precisions in $WEIGHTS (default fp8; kept from an earlier
# call, written if missing).
T0=$(date +%s)
ENDS_BY=${ENDS_BY:-560}
left() { echo $((${1:-$ENDS_BY} - $(date +%s) + T0)); }
at() { echo "== $1 at $(($(date +%s) - T0)) s"; }
OUT=${OUT:-$PWD/.gpu/out}; mkdir -p "$OUT"
source .gpu/device-env.sh
source bench/gpu/runtime-split.sh
command -v node > /dev/null || { echo "no node on this machine: carry .gpu/runtime-a.tar.xz"; exit 3; }
W=$(cat /tmp/sd35-dir 2>/dev/null); W=${W:-/dev/shm/sd35}; echo "$W" > /tmp/sd35-dir
python3 bench/gpu/make_weights.py "$W" --models "${MODELS:-large}" --precisions "${WEIGHTS:-fp8}" --jobs 8 > "$OUT/weights.log" 2>&1
tail -1 "$OUT/weights.log"
