"""PyTorch FP8 (W8A8) for the reference MMDiT: issue 10's "PyTorch FP8" anchor.

Every nn.Linear inside the MMDiT's joint blocks (attn.qkv, attn.proj, attn2.* in MMDiT-X, mlp.fc1,
mlp.fc2 and adaLN_modulation's linear) becomes an Fp8Linear:

  weight   quantized once to float8_e4m3fn with one float32 scale per output channel
           (amax of the row / 448), computed from the loaded bf16 weight;
  input    quantized per token at run time: act_scale = amax(row) / 448, x8 = e4m3(x / act_scale)
           (round to nearest even, saturating at ±448);
  output   torch._scaled_mm(x8 [M, K], w8.t() [K, N] (column-major), scale_a [M, 1] fp32,
           scale_b [1, N] fp32, bias bf16, out_dtype bf16): y = act_scale · w_scale · (x8 · w8ᵀ) + bias.

The final layer, the embedders and the attention itself stay in the model dtype (bf16): the same
scope as Atelier's W8A8 (every linear layer of the joint blocks), adaLN included.

Row-wise _scaled_mm (aten::_scaled_mm(Tensor self, Tensor mat2, Tensor scale_a, Tensor scale_b,
Tensor? bias, Tensor? scale_result, ScalarType? out_dtype, bool use_fast_accum)) wants 2-D scales
shaped [M, 1] and [1, N], bf16 output (and a bf16 bias), mat1 row-major, mat2 column-major, and
sizes divisible by 16: rows are padded to a multiple of 16 when needed (the context stream's
2·333 = 666 tokens, the adaLN's 2 rows) and the padding cut off the output.

Without float8 dtypes or torch._scaled_mm (torch < 2.1, e.g. Debian's 1.13), or off CUDA, the
layer emulates the same math in float32: values are rounded onto the e4m3 grid (quantize_e4m3),
the product is taken in float32 and scaled per row and column. test_fp8_torch.py checks the
emulation against a float64 reference built from the e4m3 table.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

E4M3_MAX = 448.0
# Smallest amax used as a scale: an all-zero row (padding) quantizes to zeros, not NaN.
AMAX_FLOOR = 1e-12
ALIGN = 16


def native_available(device: torch.device | str | None = None) -> bool:
    """Whether torch._scaled_mm with float8_e4m3fn can run here (CUDA only; the emulation elsewhere)."""
    if not (hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm")):
        return False
    return device is None or torch.device(device).type == "cuda"


def quantize_e4m3(v: torch.Tensor) -> torch.Tensor:
    """float32 values already in [−448, 448] rounded to the nearest float8_e4m3fn value (ties to
    even), returned as float32: 3 mantissa bits, exponents down to −6, subnormal step 2⁻⁹."""
    v = v.float()
    _, exponent = torch.frexp(v)  # v = m · 2^exponent, |m| in [0.5, 1): floor(log2|v|) = exponent − 1
    step = torch.pow(2.0, (torch.clamp(exponent - 1, min=-6) - 3).float())
    return torch.clamp(torch.round(v / step) * step, -E4M3_MAX, E4M3_MAX)


def row_scales(x2: torch.Tensor) -> torch.Tensor:
    """[M, K] → float32 [M, 1]: amax of each row / 448."""
    return x2.abs().amax(dim=1, keepdim=True).float().clamp(min=AMAX_FLOOR) / E4M3_MAX


def quantize_rows(x2: torch.Tensor, native: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (per-token, per-output-channel) quantization: (values, float32 scales [M, 1]).
    Values are float8_e4m3fn when native, else float32 on the e4m3 grid."""
    scale = row_scales(x2)
    scaled = torch.clamp(x2.float() / scale, -E4M3_MAX, E4M3_MAX)
    return (scaled.to(torch.float8_e4m3fn) if native else quantize_e4m3(scaled)), scale


def fast_accumulation() -> bool:
    """torch._scaled_mm's use_fast_accum, from ATELIER_TORCH_FP8_FAST_ACCUM=1 (default off, as PyTorch's)."""
    return os.environ.get("ATELIER_TORCH_FP8_FAST_ACCUM") == "1"


class Fp8Linear(torch.nn.Module):
    """nn.Linear's forward in W8A8 (module docstring). Built from a loaded nn.Linear."""

    def __init__(self, linear: torch.nn.Linear, native: bool | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.native = native_available(weight.device) if native is None else native
        self.out_dtype = weight.dtype
        # Hopper's fast accumulation (no periodic promotion to float32), as Atelier's W8A8 uses by
        # default: ATELIER_TORCH_FP8_FAST_ACCUM=1 gives PyTorch the same, for a like-for-like row.
        self.fast_accum = fast_accumulation()
        w8, w_scale = quantize_rows(weight, self.native)
        # [N, K] row-major: .t() is the column-major [K, N] _scaled_mm wants as mat2.
        self.register_buffer("weight_fp8", w8.contiguous())
        self.register_buffer("weight_scale", w_scale.reshape(1, -1).contiguous())  # [1, N] float32
        bias = linear.bias.detach() if linear.bias is not None else None
        if bias is not None:
            bias = bias.to(torch.bfloat16) if self.native else bias.float()
        self.register_buffer("bias", bias)

    def extra_repr(self) -> str:
        kind = "torch._scaled_mm rowwise" if self.native else "emulated in float32"
        return f"in_features={self.in_features}, out_features={self.out_features}, {kind}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        rows = x2.shape[0]
        if self.native:
            pad = (-rows) % ALIGN
            if pad:
                x2 = F.pad(x2, (0, 0, 0, pad))
            x8, a_scale = quantize_rows(x2, True)
            y = torch._scaled_mm(
                x8,
                self.weight_fp8.t(),
                scale_a=a_scale,
                scale_b=self.weight_scale,
                bias=self.bias,
                out_dtype=torch.bfloat16,
                use_fast_accum=self.fast_accum,
            )
            if pad:
                y = y[:rows]
        else:
            xq, a_scale = quantize_rows(x2, False)
            y = (xq @ self.weight_fp8.t()) * a_scale * self.weight_scale
            if self.bias is not None:
                y = y + self.bias
        return y.to(self.out_dtype).reshape(*lead, self.out_features)


def joint_block_linears(diffusion_model: torch.nn.Module) -> list[str]:
    """Qualified names (under diffusion_model) of every nn.Linear inside the joint blocks."""
    return [
        f"joint_blocks.{name}"
        for name, m in diffusion_model.joint_blocks.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]


def to_fp8(diffusion_model: torch.nn.Module, native: bool | None = None) -> dict[str, Any]:
    """Replaces every joint-block nn.Linear of `diffusion_model` by an Fp8Linear, in place (the bf16
    weights are dropped: the model is reloaded for bf16 runs). Returns what was swapped."""
    names = joint_block_linears(diffusion_model)
    params = 0
    kinds: set[str] = set()
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = diffusion_model.get_submodule(parent_name)
        linear = getattr(parent, attr)
        fp8 = Fp8Linear(linear, native)
        params += linear.weight.numel()
        kinds.add("torch._scaled_mm rowwise" if fp8.native else "emulated")
        setattr(parent, attr, fp8)
        del linear
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "fp8_scope": "every nn.Linear of the joint blocks (qkv, proj, attn2, fc1, fc2, adaLN); final layer and embedders bf16",
        "fp8_linear_layers": len(names),
        "fp8_linear_parameters": params,
        "fp8_kernel": ", ".join(sorted(kinds)) or None,
        "fp8_weight_scales": "per output channel, amax/448 of the loaded bf16 weight",
        "fp8_activation_scales": "per token, amax/448 at run time",
        "fp8_fast_accumulation": fast_accumulation(),
    }
