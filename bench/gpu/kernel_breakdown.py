#!/usr/bin/env python3
"""Sorts kernel-times.c's CSVs (GPU ns and launches per kernel name) into where a denoising step
goes: GEMM (cuBLAS/cuBLASLt: nvjet, sm90_xmma, cutlass, gemm), attention (flash / fmha / cuDNN
SDPA), our custom ops (native/src: adaln_modulate, quantize_rows, joint_concat, epilogue),
convolutions (the VAE), and the rest (elementwise, norms, copies, reductions).

  python3 bench/gpu/kernel_breakdown.py OUT/kernels.*.csv [--steps N] [--json FILE]

--steps: denoising steps the profiled process ran in all (warm-up included), to print ms per step;
the text encoders and the VAE are in the totals too (their share shows as conv and small GEMMs).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys

CATEGORIES = [
    ("attention", re.compile(r"flash|fmha|sdpa|attention|attn|cudnn.*(mha|softmax)", re.I)),
    ("ours", re.compile(r"adaln_modulate|quantize_rows|joint_concat|atelier|\bepilogue\b", re.I)),
    ("gemm", re.compile(r"nvjet|xmma|cutlass|gemm|cublas|sm90_.*(h|s|e4m3)", re.I)),
    ("conv", re.compile(r"conv|implicit_?gemm|winograd|fprop|dgrad", re.I)),
]


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "rest"


def read(paths: list[str]) -> list[tuple[str, int, int]]:
    rows: dict[str, list[int]] = {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                acc = rows.setdefault(r["name"], [0, 0])
                acc[0] += int(r["ns"])
                acc[1] += int(r["launches"])
    return sorted(((n, v[0], v[1]) for n, v in rows.items()), key=lambda r: -r[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="+")
    p.add_argument("--steps", type=int, help="denoising steps run in all, for ms per step")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--json")
    a = p.parse_args()
    rows = read(a.csv)
    total = sum(r[1] for r in rows) or 1
    per = 1e6 * (a.steps or 1)
    unit = "ms/step" if a.steps else "ms"
    sums: dict[str, list[int]] = {}
    for name, ns, n in rows:
        acc = sums.setdefault(category(name), [0, 0])
        acc[0] += ns
        acc[1] += n
    print(f"{'category':<10} {unit:>10} {'share':>7} {'launches':>10}")
    for label, (ns, n) in sorted(sums.items(), key=lambda kv: -kv[1][0]):
        print(f"{label:<10} {ns / per:>10.2f} {100 * ns / total:>6.1f}% {n:>10}")
    print(f"{'total':<10} {total / per:>10.2f}")
    print(f"\ntop {a.top} kernels")
    for name, ns, n in rows[: a.top]:
        print(f"{ns / per:>9.3f} {unit}  {n:>8}×  {category(name):<9}  {name[:110]}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "steps": a.steps,
                    "categories": {k: {"ns": v[0], "launches": v[1]} for k, v in sums.items()},
                    "kernels": [{"name": n, "ns": ns, "launches": c, "category": category(n)} for n, ns, c in rows],
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
