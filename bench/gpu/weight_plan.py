"""Which files a benchmark model folder holds, in ComfyUI's layout, and every tensor in each.

  checkpoints/sd3.5_large.safetensors              MMDiT (model.diffusion_model.*) + VAE (first_stage_model.*)
  checkpoints/sd3.5_large_fp8_scaled.safetensors   the same, MMDiT as ComfyUI "scaled fp8"
  checkpoints/sd3.5_medium.safetensors             MMDiT-X + VAE
  checkpoints/sd3.5_medium_fp8_scaled.safetensors
  text_encoders/clip_l.safetensors, clip_g.safetensors, t5xxl_fp16.safetensors, t5xxl_fp8_e4m3fn.safetensors

Scaled fp8 (ComfyUI; /work/shared/golden manifest `mmdit_large_scaled_fp8`): every MMDiT `.weight`
with two or more dimensions is F8_E4M3 with a float32 scalar `<layer>.scale_weight` (weight =
w8 · scale), plus the empty marker tensor `model.diffusion_model.scaled_fp8`; biases, RMSNorm
weights, pos_embed and the VAE stay 16-bit. t5xxl_fp8_e4m3fn is plain e4m3: every tensor one byte,
as ComfyUI's file is (its 4.89 GB only add up with the embeddings in fp8 too).
"""

from __future__ import annotations

from dataclasses import dataclass

import st_io
from sd35_shapes import (
    NORMAL,
    ModelSet,
    TensorSpec,
    clip_tensors,
    mmdit_tensors,
    t5_tensors,
    vae_tensors,
)

MMDIT_PREFIX = "model.diffusion_model."
SCALED = "normal_scaled"  # fp8 codes of values scaled to the e4m3 range, with a scale_weight
SCALE = "scale"  # the float32 scale_weight itself
EMPTY = "empty"

MODELS = ("large", "medium")
PRECISIONS = ("fp16", "fp8")
ENCODERS = ("clip_l", "clip_g", "t5xxl_fp16", "t5xxl_fp8")
DTYPES = {"fp16": "F16", "bf16": "BF16"}


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    source: str  # NORMAL, ONES, ZEROS (sd35_shapes), SCALED, SCALE or EMPTY

    @property
    def as_header(self) -> tuple[str, str, tuple[int, ...]]:
        return (self.name, self.dtype, self.shape)


@dataclass(frozen=True)
class FilePlan:
    path: str  # relative to the models folder
    component: str  # e.g. "sd3.5-large fp8", "t5xxl fp16"
    tensors: tuple[PlannedTensor, ...]
    metadata: dict[str, str]

    @property
    def size(self) -> int:
        return st_io.file_size([t.as_header for t in self.tensors], self.metadata)

    def params(self, prefix: str = "") -> int:
        n = 0
        for t in self.tensors:
            if t.name.startswith(prefix) and t.source not in (SCALE, EMPTY):
                n += _numel(t.shape)
        return n


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _plain(specs: list[TensorSpec], dtype: str) -> list[PlannedTensor]:
    return [PlannedTensor(s.name, dtype, s.shape, s.fill) for s in specs]


def _scaled_fp8(specs: list[TensorSpec], dtype: str) -> list[PlannedTensor]:
    out: list[PlannedTensor] = []
    for s in specs:
        if s.name.endswith(".weight") and len(s.shape) >= 2:
            out.append(PlannedTensor(s.name, "F8_E4M3", s.shape, SCALED))
            out.append(PlannedTensor(s.name[: -len(".weight")] + ".scale_weight", "F32", (), SCALE))
        else:
            out.append(PlannedTensor(s.name, dtype, s.shape, s.fill))
    out.append(PlannedTensor(f"{MMDIT_PREFIX}scaled_fp8", "F8_E4M3", (0,), EMPTY))
    return out


def _metadata(what: str, std: float) -> dict[str, str]:
    return {
        "format": "pt",
        "atelier.bench": f"{what}: random values (normal, std {std}) under the real key names and shapes, "
        "written by bench/gpu/make_weights.py for speed measurements; not a usable model",
    }


def build_plan(
    models_set: ModelSet,
    models: tuple[str, ...] = MODELS,
    precisions: tuple[str, ...] = PRECISIONS,
    encoders: tuple[str, ...] | None = None,
    dtype: str = "fp16",
    std: float = 0.02,
) -> list[FilePlan]:
    """Files for the requested models × precisions; `encoders=None` picks what those precisions use."""
    half = DTYPES[dtype]
    if encoders is None:
        encoders = ("clip_l", "clip_g") + tuple(f"t5xxl_{p}" for p in precisions)
    plan: list[FilePlan] = []
    vae = vae_tensors(models_set.vae)
    for model in models:
        mmdit = mmdit_tensors(getattr(models_set, model), MMDIT_PREFIX)
        name = f"sd3.5-{model}"
        if "fp16" in precisions:
            tensors = _plain(mmdit, half) + _plain(vae, half)
            plan.append(
                FilePlan(f"checkpoints/sd3.5_{model}.safetensors", f"{name} {dtype}", tuple(tensors), _metadata(name, std))
            )
        if "fp8" in precisions:
            tensors = _scaled_fp8(mmdit, half) + _plain(vae, half)
            plan.append(
                FilePlan(
                    f"checkpoints/sd3.5_{model}_fp8_scaled.safetensors",
                    f"{name} fp8 (scaled)",
                    tuple(tensors),
                    _metadata(f"{name} scaled fp8", std),
                )
            )
    for encoder in encoders:
        if encoder in ("clip_l", "clip_g"):
            specs = clip_tensors(getattr(models_set, encoder))
            tensors = _plain(specs, half)
            path = f"text_encoders/{encoder}.safetensors"
        elif encoder == "t5xxl_fp16":
            tensors = _plain(t5_tensors(models_set.t5), "F16")
            path = "text_encoders/t5xxl_fp16.safetensors"
        elif encoder == "t5xxl_fp8":
            tensors = _plain(t5_tensors(models_set.t5), "F8_E4M3")
            path = "text_encoders/t5xxl_fp8_e4m3fn.safetensors"
        else:
            raise ValueError(f"unknown encoder {encoder!r} (known: {', '.join(ENCODERS)})")
        plan.append(FilePlan(path, encoder, tuple(tensors), _metadata(encoder, std)))
    return plan


def parameter_count(plan: FilePlan) -> dict[str, int]:
    """Parameters per component of a file (MMDiT with and without the pos_embed buffer, VAE)."""
    if plan.path.startswith("checkpoints/"):
        mmdit = plan.params(MMDIT_PREFIX)
        pos = sum(_numel(t.shape) for t in plan.tensors if t.name == f"{MMDIT_PREFIX}pos_embed")
        return {"mmdit": mmdit, "mmdit_without_pos_embed": mmdit - pos, "vae": plan.params("first_stage_model.")}
    total = plan.params()
    if plan.path.startswith("text_encoders/t5xxl"):
        # The tied copy of the embedding is stored, not a parameter of its own.
        shared = sum(_numel(t.shape) for t in plan.tensors if t.name == "shared.weight")
        return {"t5": total - shared}
    return {plan.component: total}


__all__ = ["NORMAL", "FilePlan", "PlannedTensor", "build_plan", "parameter_count"]
