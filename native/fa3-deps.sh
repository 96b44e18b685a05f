#!/usr/bin/env bash
# Exports the third-party sources that atelier:FlashAttention's CUDA kernel (native/fa3/, built into the
# op library by native/library.mjs when they are here) and bench/gpu/fa3-bench.cu compile against into
# the git-ignored .gpu/fa3/ (nothing of them is ever committed):
#   .gpu/fa3/hopper/          FlashAttention-3's hopper/ tree at the mirror's HEAD
#   .gpu/fa3/cutlass/include  CUTLASS include/ at the commit FlashAttention pins as csrc/cutlass
#   .gpu/fa3/SOURCES          the two commits, one "name commit" line each
# Idempotent: does nothing when .gpu/fa3/SOURCES already names the same commits (FA3_DEPS_FORCE=1
# exports again). Run from anywhere; paths are relative to the checkout root.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.gpu/fa3"
fa_git=${FA3_FLASH_ATTN_GIT:-/work/.mirror/Dao-AILab+flash-attention/repo}
cutlass_git=${FA3_CUTLASS_GIT:-/work/.mirror/NVIDIA+cutlass/repo}
fa_rev=${FA3_FLASH_ATTN_REV:-HEAD}

# .gpu/ must stay out of git: we export third-party code there.
if ! git -C "$root" check-ignore -q .gpu/fa3/hopper/flash.h; then
  echo "fa3-deps: .gpu/fa3 is not git-ignored; refusing to export third-party code into the tree" >&2
  exit 1
fi

# (git archive may print "error: invalid object ... for 'assets/...'": the mirrors lack some large
# blobs outside the exported paths; harmless, the exit status is what counts.)
fa_commit=$(git --git-dir="$fa_git" rev-parse --verify "$fa_rev^{commit}")
# The CUTLASS commit FlashAttention pins (gitlink csrc/cutlass at that FlashAttention commit).
cutlass_commit=$(git --git-dir="$fa_git" ls-tree "$fa_commit" csrc/cutlass | awk '$2 == "commit" { print $3 }')
if [ -z "$cutlass_commit" ]; then
  echo "fa3-deps: no csrc/cutlass gitlink at flash-attention $fa_commit" >&2
  exit 1
fi
git --git-dir="$cutlass_git" cat-file -e "$cutlass_commit^{commit}" || {
  echo "fa3-deps: CUTLASS commit $cutlass_commit is not in $cutlass_git" >&2
  exit 1
}

want=$(printf 'flash-attention %s\ncutlass %s\n' "$fa_commit" "$cutlass_commit")
if [ "${FA3_DEPS_FORCE:-0}" != 1 ] && [ -f "$dest/SOURCES" ] && [ "$(cat "$dest/SOURCES")" = "$want" ] &&
   [ -f "$dest/hopper/flash_fwd_launch_template.h" ] && [ -f "$dest/cutlass/include/cute/tensor.hpp" ]; then
  echo "fa3-deps: up to date ($(echo "$want" | tr '\n' ' '))"
  exit 0
fi

mkdir -p "$dest"
rm -rf "$dest/hopper" "$dest/cutlass" "$dest/SOURCES"
echo "fa3-deps: exporting flash-attention $fa_commit hopper/"
git --git-dir="$fa_git" archive "$fa_commit" hopper | tar -x -C "$dest"
echo "fa3-deps: exporting cutlass $cutlass_commit include/ tools/util/include/"
mkdir -p "$dest/cutlass"
git --git-dir="$cutlass_git" archive "$cutlass_commit" include tools/util/include | tar -x -C "$dest/cutlass"
# Written last: its presence with these commits is what makes a later run a no-op.
printf '%s\n' "$want" > "$dest/SOURCES"
echo "fa3-deps: done"
cat "$dest/SOURCES"
