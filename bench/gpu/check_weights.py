#!/usr/bin/env python3
"""Checks a models folder written by make_weights.py against the plan: every planned file has
exactly the planned tensors (names, dtypes, shapes), its offsets tile the data like a valid
safetensors file, norms are the identity and sampled values are finite with the planned spread.
With --counts, prints the real-size parameter counts and file sizes without reading anything.

  python3 bench/gpu/check_weights.py OUT [--tiny] [--models ...] [--precisions ...] [--encoders ...]
  python3 bench/gpu/check_weights.py --counts
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import st_io  # noqa: E402
from make_weights import parse_args  # noqa: E402
from sd35_shapes import ONES, REAL, TINY, ZEROS  # noqa: E402
from weight_plan import NORMAL, SCALED, FilePlan, build_plan, parameter_count  # noqa: E402


def decode(entry: st_io.HeaderEntry, raw: np.ndarray) -> np.ndarray:
    if entry.dtype == "BF16":
        return st_io.from_bf16(raw)
    if entry.dtype == "F8_E4M3":
        return st_io.from_e4m3fn(raw)
    return raw.astype(np.float32)


def check_file(root: str, plan: FilePlan, std: float) -> list[str]:
    path = os.path.join(root, plan.path)
    if not os.path.isfile(path):
        return [f"{plan.path}: missing"]
    problems: list[str] = []
    try:
        st_io.validate(path)
    except ValueError as e:
        problems.append(str(e))
    entries, _, start = st_io.read_header(path)
    planned = {t.name: t for t in plan.tensors}
    for name in sorted(set(planned) - set(entries)):
        problems.append(f"{plan.path}: no tensor {name}")
    for name in sorted(set(entries) - set(planned)):
        problems.append(f"{plan.path}: unexpected tensor {name}")
    for name, t in planned.items():
        e = entries.get(name)
        if e is None:
            continue
        if (e.dtype, e.shape) != (t.dtype, t.shape):
            problems.append(f"{plan.path}: {name} is {e.dtype}{list(e.shape)}, planned {t.dtype}{list(t.shape)}")
            continue
        # Values: norms exactly the identity; random tensors finite, spread as planned (sampled).
        if t.source in (ONES, ZEROS) or (t.source in (NORMAL, SCALED) and e.end - e.begin <= 1 << 20):
            values = decode(e, st_io.read_array(path, e, start))
            if t.source == SCALED:
                scale_entry = entries[name[: -len(".weight")] + ".scale_weight"]
                values = values * st_io.read_array(path, scale_entry, start).astype(np.float32)
            if t.source == ONES and not np.all(values == 1):
                problems.append(f"{plan.path}: {name} is not all ones")
            elif t.source == ZEROS and np.any(values != 0):
                problems.append(f"{plan.path}: {name} is not all zeros")
            elif t.source in (NORMAL, SCALED) and values.size >= 4096:
                if not np.all(np.isfinite(values)):
                    problems.append(f"{plan.path}: {name} has non-finite values")
                elif not 0.7 * std < float(values.std()) < 1.3 * std:
                    problems.append(f"{plan.path}: {name} has std {values.std():.4f}, planned {std}")
    return problems


def print_counts() -> None:
    for f in build_plan(REAL):
        counts = ", ".join(f"{k} {v:,}" for k, v in parameter_count(f).items())
        print(f"{f.path:<48} {f.size:>15,} bytes  {counts}")


def main(argv: list[str]) -> int:
    if argv == ["--counts"]:
        print_counts()
        return 0
    args = parse_args(argv)
    plan = build_plan(TINY if args.tiny else REAL, args.models, args.precisions, args.encoders, args.dtype, args.std)
    problems = [p for f in plan for p in check_file(args.out, f, args.std)]
    for p in problems:
        print(p)
    print(f"{len(plan)} files checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
