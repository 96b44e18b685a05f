#!/usr/bin/env python3
"""Writes real-size SD3.5 Large and Medium model files filled with random values, in ComfyUI's
layout, for the GPU benchmark (weights don't change speed; key names and shapes are the real ones,
so the same loaders run). Needs only numpy; see weight_plan.py for the files and random_fill.py
for the values.

  python3 bench/gpu/make_weights.py OUT                       # everything (~48 GB)
  python3 bench/gpu/make_weights.py OUT --models large --precisions fp8
  python3 bench/gpu/make_weights.py OUT --dry-run             # sizes and free space, writes nothing
  python3 bench/gpu/make_weights.py OUT --tiny                # small shapes, for a smoke test

Files already there with the planned header and size are kept (re-runs are cheap); --force rewrites.
An fp8 file holds its fp16 counterpart's values quantized (the same windows of the random pool:
file_seed), so fp16 and fp8 runs are one model, as the released files are, and the FP8 quality
report (quality-bench.ts) compares like with like.
OUT/large/ and OUT/medium/ are made as one-model ComfyUI folders of symlinks (atelier-bench.ts
takes --models OUT and loads OUT/<model>).
"""

from __future__ import annotations

import argparse
import json
import zlib
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import st_io  # noqa: E402
from random_fill import RandomPool  # noqa: E402
from sd35_shapes import REAL, TINY  # noqa: E402
from weight_plan import DTYPES, ENCODERS, MODELS, PRECISIONS, FilePlan, build_plan, parameter_count  # noqa: E402

GB = 1e9
SPACE_MARGIN = 2 * 1024**3  # leave the disk this much room


def fp16_counterpart(path: str) -> str:
    """The fp16 file whose values an fp8 file quantizes (itself for every other file)."""
    if path.endswith("_fp8_scaled.safetensors"):
        return path[: -len("_fp8_scaled.safetensors")] + ".safetensors"
    if path.endswith("t5xxl_fp8_e4m3fn.safetensors"):
        return path[: -len("t5xxl_fp8_e4m3fn.safetensors")] + "t5xxl_fp16.safetensors"
    return path


def file_seed(base: int, path: str) -> int:
    """The generator of a file's pool windows: fixed by the path (not by which files this run
    writes), the same for an fp8 file and its fp16 counterpart. Both files list the same tensors in
    the same order (the fp8 file's scale_weight and marker tensors draw nothing), so each fp8
    tensor is cut from the same pool values as the fp16 one: e4m3 of value·448/amax with
    scale_weight std·amax/448, or plain e4m3 (T5)."""
    return base + 1 + zlib.crc32(fp16_counterpart(path).encode())


def _list(value: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in items if v not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown} (known: {', '.join(known)})")
    return items


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="models folder to write (checkpoints/ and text_encoders/ inside)")
    p.add_argument("--models", default="large,medium", type=lambda v: _list(v, MODELS, "models"))
    p.add_argument("--precisions", default="fp16,fp8", type=lambda v: _list(v, PRECISIONS, "precisions"))
    p.add_argument(
        "--encoders",
        default="auto",
        help="auto (CLIP-L, CLIP-G and the T5 files of the chosen precisions), none, or a list of "
        + ", ".join(ENCODERS),
    )
    p.add_argument("--dtype", default="fp16", choices=sorted(DTYPES), help="16-bit storage of checkpoints and CLIP")
    p.add_argument("--std", type=float, default=0.02, help="standard deviation of the random weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="small shapes with the same structure (smoke tests)")
    p.add_argument("--jobs", type=int, default=4, help="files written at once")
    p.add_argument("--dry-run", action="store_true", help="print the plan and free space; write nothing")
    p.add_argument("--force", action="store_true", help="rewrite files that are already there")
    args = p.parse_args(argv)
    if args.encoders == "auto":
        args.encoders = None
    elif args.encoders == "none":
        args.encoders = ()
    else:
        args.encoders = _list(args.encoders, ENCODERS, "encoders")
    return args


def is_current(path: str, plan: FilePlan) -> bool:
    """True when the file on disk has exactly the planned header (names, dtypes, shapes) and size."""
    if not os.path.isfile(path) or os.path.getsize(path) != plan.size:
        return False
    try:
        entries, _, _ = st_io.read_header(path)
    except (OSError, ValueError):
        return False
    planned = {t.name: (t.dtype, t.shape) for t in plan.tensors}
    return planned == {n: (e.dtype, e.shape) for n, e in entries.items()}


def link_model_folders(out: str, plan: list[FilePlan], models: tuple[str, ...]) -> list[str]:
    """OUT/<model>/ as its own ComfyUI folder for atelier-bench.ts (--models OUT): symlinks to that
    model's checkpoints and to the shared text_encoders/, so nothing is written twice."""
    made = []
    for model in models:
        checkpoints = os.path.join(out, model, "checkpoints")
        os.makedirs(checkpoints, exist_ok=True)
        for f in plan:
            name = os.path.basename(f.path)
            if f.path.startswith("checkpoints/") and name.startswith(f"sd3.5_{model}"):
                _symlink(os.path.join("..", "..", "checkpoints", name), os.path.join(checkpoints, name))
        _symlink(os.path.join("..", "text_encoders"), os.path.join(out, model, "text_encoders"))
        made.append(os.path.join(out, model))
    return made


def _symlink(target: str, link: str) -> None:
    if os.path.islink(link):
        os.unlink(link)
    os.symlink(target, link)


def write_one(out: str, plan: FilePlan, pool: RandomPool, seed: int) -> tuple[FilePlan, float, int]:
    path = os.path.join(out, plan.path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    header, _ = st_io.plan_header([t.as_header for t in plan.tensors], plan.metadata)
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    start = time.perf_counter()
    written = st_io.write_file(tmp, header, chain.from_iterable(pool.chunks(t, rng) for t in plan.tensors))
    os.replace(tmp, path)
    return plan, time.perf_counter() - start, written


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    models_set = TINY if args.tiny else REAL
    plan = build_plan(models_set, args.models, args.precisions, args.encoders, args.dtype, args.std)
    os.makedirs(args.out, exist_ok=True)

    todo = [f for f in plan if args.force or not is_current(os.path.join(args.out, f.path), f)]
    print(f"{'file':<48} {'size GB':>9}  params")
    for f in plan:
        counts = ", ".join(f"{k} {v:,}" for k, v in parameter_count(f).items())
        state = "" if f in todo else "  (already there)"
        print(f"{f.path:<48} {f.size / GB:>9.3f}  {counts}{state}")
    need = sum(f.size for f in todo)
    # Files being rewritten free their space when replaced, but only after the new one is complete.
    free = shutil.disk_usage(args.out).free
    print(f"to write: {len(todo)} files, {need / GB:.2f} GB; free in {args.out}: {free / GB:.2f} GB")
    if args.dry_run:
        return 0
    if need + SPACE_MARGIN > free:
        print(
            f"error: not enough space in {args.out} ({need / GB:.2f} GB needed + {SPACE_MARGIN / GB:.1f} GB margin, "
            f"{free / GB:.2f} GB free). Write fewer files (--models, --precisions, --encoders) or choose another folder.",
            file=sys.stderr,
        )
        return 2

    started = time.perf_counter()
    pool = RandomPool(args.seed, args.std)
    pool.prepare([t for f in todo for t in f.tensors])
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as executor:
        # Largest first, so the longest file starts early and the others fill in around it.
        ordered = sorted(todo, key=lambda f: -f.size)
        futures = [executor.submit(write_one, args.out, f, pool, file_seed(args.seed, f.path)) for f in ordered]
        for future in futures:
            f, seconds, written = future.result()
            print(f"wrote {f.path}: {written / GB:.3f} GB in {seconds:.1f} s ({written / GB / max(seconds, 1e-9):.2f} GB/s)")
    elapsed = time.perf_counter() - started
    print(f"done: {need / GB:.2f} GB in {elapsed:.1f} s ({need / GB / max(elapsed, 1e-9):.2f} GB/s)")
    for folder in link_model_folders(args.out, plan, args.models):
        print(f"linked {folder}/ (checkpoints and text_encoders of that model, for atelier-bench.ts)")

    manifest = {
        "set": "tiny" if args.tiny else "real",
        "dtype": args.dtype,
        "std": args.std,
        "seed": args.seed,
        "fp8_scale_weight": float(pool.fp8_scale),
        "fp8_files": "the fp16 files' values quantized (the same pool windows: make_weights.file_seed)",
        "files": [{"path": f.path, "bytes": f.size, "params": parameter_count(f)} for f in plan],
        "write_seconds": round(elapsed, 2),
    }
    with open(os.path.join(args.out, "weights-manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
