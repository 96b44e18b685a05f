"""safetensors files without the safetensors package: a streaming writer, a header reader, and the
numpy encodings of the 16- and 8-bit types numpy lacks (bf16, float8_e4m3fn).

Format (github.com/huggingface/safetensors, README "Format"): 8-byte little-endian header length N,
N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}
padded with spaces, then the tensor bytes; offsets are relative to the end of the header and the
tensors tile the data region without holes (the library rejects files that don't).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from math import prod

import numpy as np

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "U8": 1}


@dataclass(frozen=True)
class HeaderEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def plan_header(
    tensors: Iterable[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None
) -> tuple[bytes, list[HeaderEntry]]:
    """The header bytes (length prefix included) for tensors written in the given order."""
    entries: list[HeaderEntry] = []
    offset = 0
    for name, dtype, shape in tensors:
        nbytes = prod(shape) * ITEMSIZE[dtype]
        entries.append(HeaderEntry(name, dtype, tuple(shape), offset, offset + nbytes))
        offset += nbytes
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    for e in entries:
        header[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.begin, e.end]}
    text = json.dumps(header, separators=(",", ":")).encode()
    # Pad so the data starts 8-byte aligned, as the safetensors library writes it.
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text, entries


def file_size(tensors: Iterable[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None) -> int:
    head, entries = plan_header(tensors, metadata)
    return len(head) + (entries[-1].end if entries else 0)


def read_header(path: str) -> tuple[dict[str, HeaderEntry], dict[str, str], int]:
    """Entries by name, the metadata, and the offset where the data region starts."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = json.loads(f.read(n))
    metadata = raw.pop("__metadata__", {}) or {}
    entries = {
        name: HeaderEntry(name, v["dtype"], tuple(v["shape"]), v["data_offsets"][0], v["data_offsets"][1])
        for name, v in raw.items()
    }
    return entries, metadata, 8 + n


def validate(path: str) -> None:
    """Raises ValueError where the safetensors library would refuse the file."""
    import os

    entries, _, data_start = read_header(path)
    expected = 0
    for e in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if e.begin != expected:
            raise ValueError(f"{path}: {e.name} starts at {e.begin}, expected {expected} (hole or overlap)")
        if e.end - e.begin != prod(e.shape) * ITEMSIZE[e.dtype]:
            raise ValueError(f"{path}: {e.name} has {e.end - e.begin} bytes for {e.dtype}{list(e.shape)}")
        expected = e.end
    if os.path.getsize(path) != data_start + expected:
        raise ValueError(f"{path}: {os.path.getsize(path)} bytes, header says {data_start + expected}")


def read_array(path: str, entry: HeaderEntry, data_start: int) -> np.ndarray:
    """The raw tensor as numpy: F16/F32 as floats, BF16 and F8 as their integer codes."""
    kind = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8, "I64": np.int64}
    dtype = kind[entry.dtype]
    count = (entry.end - entry.begin) // np.dtype(dtype).itemsize
    with open(path, "rb") as f:
        f.seek(data_start + entry.begin)
        return np.fromfile(f, dtype=dtype, count=count).reshape(entry.shape)


def write_file(path: str, header: bytes, chunks: Iterable[memoryview | bytes]) -> int:
    """Writes the header, then the tensors' bytes as `chunks` yields them. Returns bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in chain((header,), chunks):
            view = memoryview(chunk).cast("B")
            while view.nbytes:
                n = f.write(view)
                written += n
                view = view[n:]
    return written


# --- number formats numpy lacks -------------------------------------------------------------------


def _e4m3fn_values() -> np.ndarray:
    """Value of each float8_e4m3fn code 0..255 (OCP FP8: bias 7, no infinities, 0x7F/0xFF NaN)."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    mant = codes & 0x7
    values = np.where(exp == 0, mant / 8.0 * 2.0**-6, (1.0 + mant / 8.0) * 2.0 ** (exp - 7.0)) * sign
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values


E4M3_VALUES = _e4m3fn_values()
E4M3_MAX = 448.0
# Positive finite codes 0x00..0x7E have increasing values, so a code is an index into this table.
_E4M3_POSITIVE = E4M3_VALUES[:0x7F]


def to_e4m3fn(x: np.ndarray) -> np.ndarray:
    """Round to nearest float8_e4m3fn code, ties to even (as torch's .to(float8_e4m3fn)); values
    beyond ±448 saturate (callers scale into range first)."""
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    hi = np.clip(np.searchsorted(_E4M3_POSITIVE, a, side="left"), 1, 0x7E)
    lo = hi - 1
    d_lo = a - _E4M3_POSITIVE[lo]
    d_hi = _E4M3_POSITIVE[hi] - a
    # Nearest; on a tie the even code (last mantissa bit 0) wins.
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo)
    code = np.where(a >= E4M3_MAX, 0x7E, code).astype(np.uint8)
    code |= (np.signbit(np.asarray(x).ravel()).astype(np.uint8) << 7).astype(np.uint8)
    return code.reshape(np.shape(x))


def from_e4m3fn(codes: np.ndarray) -> np.ndarray:
    return E4M3_VALUES[codes].astype(np.float32)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), round to nearest even (finite inputs)."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def from_bf16(codes: np.ndarray) -> np.ndarray:
    return (codes.astype(np.uint32) << 16).view(np.float32)
