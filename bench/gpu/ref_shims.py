"""Lets the official SD3.5 reference (copied into .gpu/ref by fetch-reference.sh) import where its
optional dependencies are missing, without touching its code.

The GPU machine has torch, safetensors and numpy; the reference also imports transformers (only
for tokenizers, which the benchmark replaces by synthetic token ids), fire (sd3_infer's command
line), tqdm, PIL (image files) and einops (two reshapes). Each is used as is when installed; a
stand-in is registered only for what is missing, and the benchmark reports which.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from collections.abc import Callable


def _transformers() -> types.ModuleType:
    module = types.ModuleType("transformers")

    class _NoTokenizer:
        @classmethod
        def from_pretrained(cls, *args: object, **kwargs: object) -> None:
            raise RuntimeError("tokenizers are not available here: the benchmark feeds token ids directly")

    module.CLIPTokenizer = _NoTokenizer  # type: ignore[attr-defined]
    module.T5TokenizerFast = _NoTokenizer  # type: ignore[attr-defined]
    return module


def _fire() -> types.ModuleType:
    module = types.ModuleType("fire")
    module.Fire = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    return module


def _tqdm() -> types.ModuleType:
    module = types.ModuleType("tqdm")
    module.tqdm = lambda iterable=None, *args, **kwargs: iterable  # type: ignore[attr-defined]
    return module


def _pil() -> types.ModuleType:
    module = types.ModuleType("PIL")
    image = types.ModuleType("PIL.Image")

    def _unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("PIL is not installed: the benchmark writes no images")

    image.fromarray = _unavailable  # type: ignore[attr-defined]
    image.open = _unavailable  # type: ignore[attr-defined]
    image.LANCZOS = 1  # type: ignore[attr-defined]
    image.Image = type("Image", (), {})  # type: ignore[attr-defined]  # sd3_infer annotates with it
    module.Image = image  # type: ignore[attr-defined]
    sys.modules["PIL.Image"] = image
    return module


def _parse_side(side: str) -> list[list[str]]:
    """'b 1 (h w) c' → [['b'], ['1'], ['h', 'w'], ['c']]."""
    groups: list[list[str]] = []
    for match in re.finditer(r"\(([^)]*)\)|(\S+)", side):
        groups.append(match.group(1).split() if match.group(1) is not None else [match.group(2)])
    return groups


def rearrange(tensor, pattern: str, **sizes: int):  # noqa: ANN001, ANN201 - torch is optional here
    """einops.rearrange for patterns of named axes, parenthesised groups and unit axes ('1'),
    without ellipsis: all the reference uses (mmditx.cropped_pos_embed, sd3_impls.AttnBlock)."""
    left_text, right_text = (s.strip() for s in pattern.split("->"))
    left, right = _parse_side(left_text), _parse_side(right_text)
    if len(left) != tensor.dim():
        raise ValueError(f"rearrange {pattern!r}: tensor has {tensor.dim()} dims")
    known = dict(sizes)
    for group, dim in zip(left, tensor.shape):
        names = [n for n in group if n != "1"]
        unknown = [n for n in names if n not in known]
        product = 1
        for n in names:
            product *= known.get(n, 1)
        if len(unknown) > 1:
            raise ValueError(f"rearrange {pattern!r}: cannot infer {unknown}")
        if unknown:
            known[unknown[0]] = dim // product
        elif product != dim:
            raise ValueError(f"rearrange {pattern!r}: {group} is {product}, tensor has {dim}")
    flat_left = [n for g in left for n in g if n != "1"]
    flat_right = [n for g in right for n in g if n != "1"]
    x = tensor.reshape([known[n] for n in flat_left])
    x = x.permute([flat_left.index(n) for n in flat_right])
    shape = []
    for group in right:
        size = 1
        for n in group:
            size *= 1 if n == "1" else known[n]
        shape.append(size)
    return x.reshape(shape)


def _einops() -> types.ModuleType:
    module = types.ModuleType("einops")
    module.rearrange = rearrange  # type: ignore[attr-defined]

    def repeat(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("einops.repeat: only MMDiT registers use it, and SD3.5 has none")

    module.repeat = repeat  # type: ignore[attr-defined]
    return module


STAND_INS: dict[str, Callable[[], types.ModuleType]] = {
    "einops": _einops,
    "transformers": _transformers,
    "fire": _fire,
    "tqdm": _tqdm,
    "PIL": _pil,
}


def install(ref_dir: str) -> list[str]:
    """Puts the reference on sys.path and stands in for missing modules. Returns their names."""
    if ref_dir not in sys.path:
        sys.path.insert(0, ref_dir)
    stood_in: list[str] = []
    for name, make in STAND_INS.items():
        try:
            importlib.import_module(name)
        except Exception:  # missing, or installed but broken: the benchmark needs neither
            sys.modules[name] = make()
            stood_in.append(name)
    return stood_in
