#!/usr/bin/env python3
"""Where the GPU idles between kernels, from kernel-times.c's timeline CSV (start, end, name per kernel,
in start order, CUPTI's ns clock): the window's busy time (the union of the kernels) and idle time,
the idle split into long gaps (>= --long-us: between graph replays, the host's turn) and short ones
(inside a replay, between kernels), the longest gaps with the kernels around them, and the idle
before each kind of kernel (which launches wait).

  python3 bench/gpu/kernel_timeline.py OUT/kernels-medium-fp8.*.timeline.csv [--from-name NAME]
      [--long-us 50] [--top 15] [--json FILE]

--from-name: start the window at the first kernel whose name contains NAME (e.g. FlashAttnFwdSm90 to
skip what ran before the first step).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys


def short(name: str) -> str:
    """A kernel's family: the demangled-enough stem (nvjet tile names, our kernels, FA3)."""
    if "FlashAttnFwdSm90" in name:
        return "FlashAttention-3"
    m = re.search(r"(nvjet_sm90_\w+?)_(?:TN|NT|NN|TT)", name)
    if m:
        return m.group(1)
    # Ours: atelier::(anonymous)::<name> mangled as "..._cu_<8 hex><length><name>".
    m = re.search(r"atelier.*?_cu_[0-9a-f]{8}(\d+)(\w+)", name)
    if m:
        return "atelier:" + m.group(2)[: int(m.group(1))]
    m = re.search(r"onnxruntime\w*?(_?[A-Z]\w+?Kernel\w*?)(?:I|E|$)", name)
    if m:
        return "ort:" + m.group(1)
    return name[:60]


def read(path: str) -> list[tuple[int, int, str]]:
    """The spans in start order; a torn line (older kernel-times.c builds could write one when two
    writers overlapped) is skipped with a warning."""
    spans, torn = [], 0
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                spans.append((int(r["start"]), int(r["end"]), r["name"] or ""))
            except (TypeError, ValueError):
                torn += 1
    if torn:
        print(f"{path}: skipped {torn} torn line(s)", file=sys.stderr)
    spans.sort()
    return spans


def analyse(spans: list[tuple[int, int, str]], long_ns: int, top: int) -> dict:
    busy = idle = idle_long = idle_short = 0
    reach = spans[0][1] if spans else 0  # the latest end so far (kernels may overlap)
    gaps: list[tuple[int, str, str]] = []
    before: dict[str, list[int]] = {}
    if spans:
        busy += spans[0][1] - spans[0][0]
    for i in range(1, len(spans)):
        start, end, name = spans[i]
        gap = start - reach
        if gap > 0:
            idle += gap
            if gap >= long_ns:
                idle_long += gap
            else:
                idle_short += gap
            gaps.append((gap, spans[i - 1][2], name))
            acc = before.setdefault(short(name), [0, 0])
            acc[0] += gap
            acc[1] += 1
        busy += max(0, end - max(start, reach))
        reach = max(reach, end)
    gaps.sort(key=lambda g: -g[0])
    return {
        "kernels": len(spans),
        "window_ns": (reach - spans[0][0]) if spans else 0,
        "busy_ns": busy,
        "idle_ns": idle,
        "idle_long_ns": idle_long,
        "idle_short_ns": idle_short,
        "long_gaps": sum(1 for g in gaps if g[0] >= long_ns),
        "longest": [{"ns": g, "after": short(a), "before": short(b)} for g, a, b in gaps[:top]],
        "idle_before": sorted(
            ({"kernel": k, "ns": v[0], "gaps": v[1]} for k, v in before.items()), key=lambda e: -e["ns"]
        )[:top],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv")
    p.add_argument("--from-name")
    p.add_argument("--long-us", type=float, default=50.0)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json")
    a = p.parse_args()
    spans = read(a.csv)
    if a.from_name:
        first = next((i for i, s in enumerate(spans) if a.from_name in s[2]), None)
        if first is None:
            print(f"no kernel named like {a.from_name!r} in {a.csv}", file=sys.stderr)
            return 1
        spans = spans[first:]
    r = analyse(spans, int(a.long_us * 1000), a.top)
    ms = lambda ns: ns / 1e6  # noqa: E731
    print(f"{r['kernels']} kernels over {ms(r['window_ns']):.2f} ms: busy {ms(r['busy_ns']):.2f} ms, "
          f"idle {ms(r['idle_ns']):.2f} ms ({ms(r['idle_long_ns']):.2f} ms in {r['long_gaps']} gaps of "
          f">= {a.long_us:g} µs, {ms(r['idle_short_ns']):.2f} ms in shorter ones)")
    print("\nlongest gaps")
    for g in r["longest"]:
        print(f"{g['ns'] / 1e3:>10.1f} µs  after {g['after']:<40} before {g['before']}")
    print("\nidle before each kind of kernel")
    for e in r["idle_before"]:
        print(f"{ms(e['ns']):>9.3f} ms  {e['gaps']:>7} gaps  {e['kernel']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
