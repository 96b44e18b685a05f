"""Compute floor of one MMDiT forward: the FLOPs of its matrix products, from the model's dims.

Counting 2 FLOPs per multiply-add, for N image tokens (latent H/8 × W/8, patch 2 → N = H·W/256),
T text tokens (77 CLIP + 256 T5 = 333 in SD3.5 pipelines), S = N + T, hidden D, depth L:

  joint block i (mmditx.py block_mixing):
    x_block        qkv 6·N·D² + proj 2·N·D² + mlp 16·N·D²             = 24·N·D²
    context_block  the same on T tokens, 24·T·D²; the last block is pre_only: qkv only, 6·T·D²
    joint attention   QKᵀ 2·S²·D + AV 2·S²·D                            = 4·S²·D
    MMDiT-X dual attention (Medium, x_block.attn2): qkv+proj 8·N·D², attention over N: 4·N²·D
    adaLN modulation: 2·D·(mods·D) per sample (mods = 6, 9 dual, 2 pre_only)
  embedders: patch conv 2·N·(16·p²)·D, context_embedder 2·T·4096·D, timestep MLP 2·(256·D + D²),
    pooled MLP 2·(2048·D + D²); final layer: adaLN 2·D·2D + linear 2·N·D·(16·p²).

SD3.5 Large at 1024² (N 4096, T 333): 31.1 TFLOP; Medium: 11.25 TFLOP (the issue's floor).
Elementwise work (norms, GELU, softmax) is left out: it is memory-bound, not a compute floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from sd35_shapes import REAL, MMDiTConfig

MODELS: dict[str, MMDiTConfig] = {"sd3.5-large": REAL.large, "sd3.5-medium": REAL.medium}

# The measurements on the H100 used (2026-11-24): dense bf16 matmul and torch._scaled_mm fp8.
PEAK_TFLOPS = {"bf16": 783.0, "fp16": 783.0, "fp8": 1408.0}

DEFAULT_TEXT_TOKENS = 77 + 256


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one forward of one sample, split by what runs on which tensor cores."""

    linear: float
    attention: float

    @property
    def total(self) -> float:
        return self.linear + self.attention


def image_tokens(width: int, height: int, patch: int = 2) -> int:
    return (height // 8 // patch) * (width // 8 // patch)


def forward_flops(cfg: MMDiTConfig, width: int, height: int, text_tokens: int = DEFAULT_TEXT_TOKENS) -> ForwardFlops:
    d, n, t = cfg.hidden, image_tokens(width, height, cfg.patch_size), text_tokens
    s = n + t
    patch_in = cfg.in_channels * cfg.patch_size**2
    linear = 2.0 * n * patch_in * d + 2.0 * t * cfg.context_dim * d
    linear += 2.0 * (256 * d + d * d) + 2.0 * (cfg.adm_in_channels * d + d * d)
    attention = 0.0
    for i in range(cfg.depth):
        last = i == cfg.depth - 1
        dual = i in cfg.x_block_self_attn_layers
        linear += 24.0 * n * d * d + (6.0 if last else 24.0) * t * d * d
        linear += 2.0 * d * d * ((9 if dual else 6) + (2 if last else 6))
        attention += 4.0 * s * s * d
        if dual:
            linear += 8.0 * n * d * d
            attention += 4.0 * n * n * d
    linear += 2.0 * d * 2 * d + 2.0 * n * d * patch_in
    return ForwardFlops(linear=linear, attention=attention)


def floor_seconds(
    model: str,
    precision: str,
    width: int,
    height: int,
    steps: int,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    cfg_batch: int = 2,
    peaks: dict[str, float] | None = None,
) -> float:
    """Seconds per image of denoising at the peak rates: CFG runs `cfg_batch` forwards per step.
    FP8 speeds up the linear layers only; attention stays in 16-bit (the issue's 1.5 s estimate)."""
    peaks = peaks or PEAK_TFLOPS
    f = forward_flops(MODELS[model], width, height, text_tokens)
    half = peaks["bf16"] * 1e12
    linear_rate = peaks["fp8"] * 1e12 if precision == "fp8" else half
    per_forward = f.linear / linear_rate + f.attention / half
    return per_forward * cfg_batch * steps
