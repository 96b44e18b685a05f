"""Bytes for random-valued tensors, fast enough that writing 50 GB is bound by the disk.

Weights don't change speed, so every tensor is cut from one pool of normal values (std `std`) at
random offsets, per storage type: drawing 8 billion fresh normals would take minutes on a CPU and
gain nothing. The pool is encoded once per type (fp16, bf16, e4m3 plain, e4m3 scaled to ±448 with
its scale_weight), and tensors are streamed from it without copies.

Values stay finite through the networks in 16-bit: with std 0.02 a linear layer of width D has
gain ≈ 0.02·√D (≈ 1 at D = 2432), adaLN gates come out ≈ 0.1 so each block adds a small residual,
and norms are the identity (weights one, biases zero).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

import st_io
from sd35_shapes import ONES, ZEROS
from weight_plan import EMPTY, NORMAL, SCALE, SCALED, PlannedTensor

POOL_SIZE = 1 << 22  # 4 Mi values; larger tensors are stitched from several random windows

_ONE = {"F16": np.float16(1.0), "F32": np.float32(1.0), "BF16": np.uint16(0x3F80), "F8_E4M3": np.uint8(0x38)}
_CODE_DTYPE = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16, "F8_E4M3": np.uint8}


class RandomPool:
    def __init__(self, seed: int = 0, std: float = 0.02, size: int = POOL_SIZE) -> None:
        self.std = std
        self.size = size
        self._normal = np.random.default_rng(seed).standard_normal(size, dtype=np.float32)
        self._encoded: dict[str, np.ndarray] = {}
        amax = float(np.abs(self._normal).max())
        # weight = w8 · scale_weight: codes span ±448, so scale = std · amax / 448.
        self.fp8_scale = np.float32(std * amax / st_io.E4M3_MAX)
        self._scaled_factor = st_io.E4M3_MAX / amax

    def encoded(self, dtype: str, scaled: bool = False) -> np.ndarray:
        key = f"{dtype}{'/scaled' if scaled else ''}"
        pool = self._encoded.get(key)
        if pool is None:
            if scaled:
                pool = st_io.to_e4m3fn(self._normal * self._scaled_factor)
            else:
                values = self._normal * np.float32(self.std)
                if dtype == "F16":
                    pool = values.astype(np.float16)
                elif dtype == "F32":
                    pool = values
                elif dtype == "BF16":
                    pool = st_io.to_bf16(values)
                elif dtype == "F8_E4M3":
                    pool = st_io.to_e4m3fn(values)
                else:
                    raise ValueError(f"no random fill for {dtype}")
            self._encoded[key] = pool
        return pool

    def prepare(self, tensors: list[PlannedTensor]) -> None:
        """Encode the pools the tensors need up front, so writer threads only read them."""
        for t in tensors:
            if t.source in (NORMAL, SCALED):
                self.encoded(t.dtype, scaled=t.source == SCALED)

    def chunks(self, tensor: PlannedTensor, rng: np.random.Generator) -> Iterator[memoryview]:
        n = 1
        for d in tensor.shape:
            n *= d
        if tensor.source in (NORMAL, SCALED):
            pool = self.encoded(tensor.dtype, scaled=tensor.source == SCALED)
            while n > 0:
                start = int(rng.integers(0, self.size))
                take = min(n, self.size - start)
                yield memoryview(pool[start : start + take])
                n -= take
        elif tensor.source == ONES:
            yield memoryview(np.full(n, _ONE[tensor.dtype], dtype=_CODE_DTYPE[tensor.dtype]))
        elif tensor.source == ZEROS:
            yield memoryview(np.zeros(n, dtype=_CODE_DTYPE[tensor.dtype]))
        elif tensor.source == SCALE:
            yield memoryview(np.array([self.fp8_scale], dtype=np.float32))
        elif tensor.source == EMPTY:
            return
        else:
            raise ValueError(f"{tensor.name}: unknown source {tensor.source!r}")
