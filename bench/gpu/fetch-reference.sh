#!/usr/bin/env bash
# Copies the official SD3.5 reference implementation (Stability-AI/sd3.5, pinned commit) into
# .gpu/ref/, a git-ignored folder that is carried to the GPU machine for torch_bench.py.
# Its code must never be committed to this repository: it is read at run time only.
#
#   bash bench/gpu/fetch-reference.sh [dest]        # default dest: .gpu/ref
#
# SD35_MIRROR points at a bare git mirror of github.com/Stability-AI/sd3.5.
set -euo pipefail

MIRROR=${SD35_MIRROR:-/work/.mirror/Stability-AI+sd3.5/repo}
# "Adds controlnet images, updates README (#21)", 2024-11-26: the version the golden vectors were made with.
COMMIT=fbf8f483f992d8d6ad4eaaeb23b1dc5f523c3b3a
DEST=${1:-.gpu/ref}
# sd3_impls imports dit_embedder; torch_bench imports sd3_infer for load_into and the encoder configs.
FILES=(mmditx.py sd3_impls.py other_impls.py sd3_infer.py dit_embedder.py LICENSE-CODE)

mkdir -p "$DEST"
for file in "${FILES[@]}"; do
  git -C "$MIRROR" show "$COMMIT:$file" >"$DEST/$file"
done
echo "$COMMIT" >"$DEST/COMMIT"
echo "reference $COMMIT -> $DEST (${FILES[*]})"
