"""safetensors read/write with numpy alone (no `safetensors` package needed), including ComfyUI's
scaled fp8 (float8 e4m3fn codes + a float32 `scale_weight` per tensor), encoded here in numpy so
it works on torch versions without float8 dtypes."""

import json
import struct

import numpy as np

_NP = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def _e4m3_table():
    """float value of every e4m3fn code (NaN for 0x7F/0xFF)."""
    vals = np.zeros(256, dtype=np.float64)
    for code in range(256):
        s = -1.0 if code & 0x80 else 1.0
        e = (code >> 3) & 0xF
        m = code & 0x7
        if e == 0xF and m == 0x7:
            vals[code] = np.nan
        elif e == 0:
            vals[code] = s * (m / 8.0) * 2.0**-6
        else:
            vals[code] = s * (1 + m / 8.0) * 2.0 ** (e - 7)
    return vals


E4M3 = _e4m3_table()
_POS = E4M3[:0x7F]  # codes 0..126, ascending, 0 .. 448


def float_to_e4m3(x: np.ndarray) -> np.ndarray:
    """Round to nearest (ties to even code), saturating at ±448."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), 448.0)
    hi = np.clip(np.searchsorted(_POS, a, side="left"), 0, 126)
    lo = np.clip(hi - 1, 0, 126)
    dlo = a - _POS[lo]
    dhi = _POS[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    code = np.where(pick_hi, hi, lo).astype(np.uint8)
    code = np.where(np.signbit(x) & (code != 0), code | 0x80, code)
    return code.astype(np.uint8)


def read(path):
    """{name: float32 or integer numpy array}, metadata. fp8 tensors come back dequantized only
    if their scale is present (scaled fp8); BF16 is widened to float32."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    raw = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        buf = data[a:b]
        dt = info["dtype"]
        shape = info["shape"]
        if dt == "BF16":
            u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32).reshape(shape)
        elif dt == "F8_E4M3":
            arr = E4M3[np.frombuffer(buf, dtype=np.uint8)].astype(np.float32).reshape(shape)
            raw[name] = True
        else:
            arr = np.frombuffer(buf, dtype=_NP[dt]).reshape(shape).copy()
        out[name] = arr
    for name in list(raw):
        scale = name[: -len(".weight")] + ".scale_weight" if name.endswith(".weight") else None
        if scale and scale in out:
            out[name] = out[name] * out[scale].astype(np.float32)
    return out, meta


def write(path, tensors, metadata=None):
    """tensors: list of (name, dtype, array) with dtype in F16/F32/F8_E4M3/... (array already of
    that storage: uint8 codes for F8_E4M3)."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, dt, arr in tensors:
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    js = json.dumps(header, separators=(",", ":"))
    js += " " * ((8 - (8 + len(js.encode())) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js.encode())))
        f.write(js.encode())
        for b in blobs:
            f.write(b)


def quantizable(name, arr):
    """As the product's isQuantizable: ≥2-D `.weight` tensors that are not embedding tables."""
    return (
        arr.ndim >= 2
        and name.endswith(".weight")
        and not any(k in name for k in ("embedding", "embed_tokens", "shared.weight"))
    )


def scaled_fp8(name, arr):
    """[(weight e4m3 codes), (scale_weight f32 scalar)] for one tensor; scale = amax / 448."""
    arr = np.asarray(arr, dtype=np.float32)
    amax = float(np.abs(arr).max())
    scale = np.float32(amax / 448.0 if amax > 0 else 1.0)
    codes = float_to_e4m3(arr / scale)
    return [
        (name, "F8_E4M3", codes),
        (name[: -len(".weight")] + ".scale_weight", "F32", np.array(scale, dtype=np.float32)),
    ]
