# Sourced after .gpu/device-env.sh on the GPU machine (call-start.sh does): unpacks a runtime part
# that was split to be carried in two calls, once both halves are there. The checkout grew past
# 30 MiB with the bundled demo model, so runtime-b (38 MB) no longer fits beside it in one call's
# 64 MiB; split it here with
#   split -n 2 -d -a 1 .gpu/runtime-b.tar.xz .gpu/runtime-b.tar.xz.part
# and carry .gpu/runtime-b.tar.xz.part0 and .part1 in two calls of the same machine session.
for _first in .gpu/runtime-*.tar.xz.part0; do
  [ -f "$_first" ] || continue
  _base=${_first%.part0}
  [ -f "$_base.part1" ] || continue
  _stamp="${ATELIER_GPU:-/opt/atelier-gpu}/.$(basename "$_base").split.$(stat -c %s "$_first")"
  [ -f "$_stamp" ] || { cat "$_base.part0" "$_base.part1" | tar -xJ -C "${ATELIER_GPU:-/opt/atelier-gpu}" && touch "$_stamp"; }
done
unset _first _base _stamp
