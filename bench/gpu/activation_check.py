#!/usr/bin/env python3
"""Do random weights keep activations inside fp16's range through the real-depth networks?

Runs the reference's own blocks at real width and depth (SD3.5 Large: 38 joint blocks of 2432;
Medium: 24 of 1536 with dual attention; CLIP-G, T5-XXL, the VAE decoder) on a few tokens, one
block at a time so it fits a small CPU: each block is built, filled like make_weights.py fills
the files (normal values of --std, norm weights one), applied in float32, and dropped. Prints the
largest magnitude seen in the residual stream and inside the MLPs, against fp16's 65504.

  python3 bench/gpu/activation_check.py [--std 0.02] [--only large,medium,clip_g,t5,vae]
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import ref_shims  # noqa: E402
from sd35_shapes import REAL, MMDiTConfig  # noqa: E402

FP16_MAX = 65504.0


class Peak:
    def __init__(self) -> None:
        self.residual = 0.0
        self.inner = 0.0

    def see(self, t: torch.Tensor | None, inner: bool = False) -> None:
        if t is None:
            return
        value = float(t.detach().abs().max())
        if not torch.isfinite(t).all():
            value = float("inf")
        if inner:
            self.inner = max(self.inner, value)
        else:
            self.residual = max(self.residual, value)


def fill(module: torch.nn.Module, std: float, gen: torch.Generator) -> torch.nn.Module:
    """As make_weights.py: norm weights one, norm biases zero, everything else normal(0, std)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)
        is_norm = any(k in name for k in ("ln_q", "ln_k", "layer_norm", "norm1", "norm2", "norm_out", ".norm."))
        if is_norm and leaf[-1] == "weight":
            p.data.fill_(1.0)
        elif is_norm and leaf[-1] == "bias":
            p.data.zero_()
        else:
            p.data.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


def watch_inner(module: torch.nn.Module, peak: Peak, names: tuple[str, ...]) -> None:
    for name, sub in module.named_modules():
        if name.endswith(names):
            sub.register_forward_hook(lambda m, i, o: peak.see(o if torch.is_tensor(o) else o[0], inner=True))


def check_mmdit(cfg: MMDiTConfig, std: float, gen: torch.Generator, tokens: int = 16) -> Peak:
    from mmditx import JointBlock, TimestepEmbedder, VectorEmbedder

    h, peak = cfg.hidden, Peak()
    t_embed = fill(TimestepEmbedder(h), std, gen)
    y_embed = fill(VectorEmbedder(cfg.adm_in_channels, h), std, gen)
    c = t_embed(torch.tensor([1000.0]), dtype=torch.float32) + y_embed(torch.randn(1, cfg.adm_in_channels, generator=gen))
    # Patch embedding of unit noise (64 inputs) plus pos_embed, and an embedded unit-scale context.
    x = torch.randn(1, tokens, 64, generator=gen) @ (torch.randn(64, h, generator=gen) * std)
    x = x + torch.randn(1, tokens, h, generator=gen) * std
    context = torch.randn(1, 77 + 256 if tokens > 64 else tokens, cfg.context_dim, generator=gen)
    context = context @ (torch.randn(cfg.context_dim, h, generator=gen) * std)
    peak.see(c)
    for i in range(cfg.depth):
        block = JointBlock(
            h,
            cfg.heads,
            mlp_ratio=4.0,
            qkv_bias=True,
            pre_only=i == cfg.depth - 1,
            qk_norm="rms",
            x_block_self_attn=i in cfg.x_block_self_attn_layers,
        )
        fill(block, std, gen)
        watch_inner(block, peak, ("mlp.fc1", "adaLN_modulation"))
        context, x = block(context, x, c=c)
        peak.see(x)
        peak.see(context)
        del block
    return peak


def check_clip_g(std: float, gen: torch.Generator) -> Peak:
    from other_impls import CLIPLayer

    cfg, peak = REAL.clip_g, Peak()
    x = torch.randn(1, 77, cfg.hidden, generator=gen) * std * 2  # token + position embeddings
    mask = torch.empty(77, 77).fill_(float("-inf")).triu_(1)
    for _ in range(cfg.layers):
        layer = fill(CLIPLayer(cfg.hidden, cfg.hidden // 64, cfg.intermediate, "gelu", None, None), std, gen)
        watch_inner(layer, peak, ("fc1",))
        x = layer(x, mask)
        peak.see(x)
    return peak


def check_t5(std: float, gen: torch.Generator, tokens: int = 256) -> Peak:
    from other_impls import T5Block

    cfg, peak = REAL.t5, Peak()
    x = torch.randn(1, tokens, cfg.d_model, generator=gen) * std
    past_bias = None
    for i in range(cfg.layers):
        block = fill(T5Block(cfg.d_model, cfg.d_model, cfg.d_ff, cfg.heads, i == 0, None, None), std, gen)
        watch_inner(block, peak, ("wi_0", "wi_1"))
        x, past_bias = block(x, past_bias)
        peak.see(x)
    return peak


def check_vae(std: float, gen: torch.Generator) -> Peak:
    from sd3_impls import VAEDecoder

    peak = Peak()
    decoder = fill(VAEDecoder(), std, gen)
    watch_inner(decoder, peak, ("conv1", "conv2", "conv"))
    peak.see(decoder(torch.randn(1, 16, 8, 8, generator=gen)))
    return peak


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref-dir", default=os.path.join(HERE, "..", "..", ".gpu", "ref"))
    p.add_argument("--std", type=float, default=0.02)
    p.add_argument("--only", default="large,medium,clip_g,t5,vae")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ref_shims.install(os.path.abspath(args.ref_dir))
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(args.seed)
    checks = {
        "large": lambda: check_mmdit(REAL.large, args.std, gen),
        "medium": lambda: check_mmdit(REAL.medium, args.std, gen),
        "clip_g": lambda: check_clip_g(args.std, gen),
        "t5": lambda: check_t5(args.std, gen),
        "vae": lambda: check_vae(args.std, gen),
    }
    worst = 0.0
    for name in args.only.split(","):
        peak = checks[name]()
        worst = max(worst, peak.residual, peak.inner)
        print(f"{name:<7} max |activation|: residual stream {peak.residual:10.3f}, inside blocks {peak.inner:10.3f}", flush=True)
    print(f"largest {worst:.3f} vs fp16 max {FP16_MAX:.0f}: {'OK' if worst < FP16_MAX / 16 else 'TOO CLOSE'}")
    return 0 if worst < FP16_MAX / 16 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
