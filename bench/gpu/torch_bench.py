#!/usr/bin/env python3
"""The PyTorch anchor of the GPU benchmark: the official SD3.5 reference implementation (copied
into .gpu/ref by fetch-reference.sh) running the files make_weights.py wrote, on the same GPU.

What it measures, per model (SD3.5 Large, Medium) and mode (eager; torch.compile with --compile):
denoising at WIDTH×HEIGHT with CFG as one batch of 2·images (sd3_impls.CFGDenoiser), Euler steps,
for each --steps and --batches; plus model load time, text-encoding time (CLIP-L, CLIP-G, T5-XXL
on synthetic token ids: the tokenizers need Hugging Face downloads), VAE-decode time and peak GPU
memory. Rows go to --out as JSON after every configuration, so a run cut short keeps what it
measured; --budget-s bounds the whole run and --config-budget-s each configuration (a configuration
that would run longer is timed over fewer steps and scaled, and says so in `measured_steps`).

  python3 bench/gpu/torch_bench.py --models-dir MODELS --out $OUT/torch.json --compile
  python3 bench/gpu/torch_bench.py --models-dir MODELS --out $OUT/torch.json --plan issue9

`--plan issue9` runs only what issue 9 compares, most important first: eager Large and Medium at
WIDTH×HEIGHT (28 steps, batch 1, CFG), Large for 4 steps without CFG (Turbo-like: the same
architecture), Medium at half the size; then torch.compile of Medium and Large at full size, then,
as the budget allows, compiled Medium at half size and compiled Turbo-like Large.

PyTorch FP8 (issue 10, fp8_torch.py): every nn.Linear of the joint blocks on torch._scaled_mm with
per-channel weight and per-token activation scales; rows with `precision: fp8` (`compute_dtype`
says the rest's dtype). `--fp8` appends eager and compiled FP8 rows of every model at full size
after the plan's rows; `--plan issue10` is per model (Large, then Medium) at full size: eager bf16,
compiled bf16, eager FP8, compiled FP8 (`--plan issue10-compiled`: the two compiled rows alone, FP8
first). The swap drops the bf16 weights, so a bf16 phase after an
FP8 one reloads the model.

Precision is one dtype throughout (bf16 by default). The reference's sample_euler is wrapped in
autocast(fp16), which with bf16 weights would re-cast every weight at every call; the loop here is
the same Euler step (Karras et al. 2022, Alg. 2) without that wrapper (--reference-sampler uses
the reference's own function instead).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import ref_shims  # noqa: E402
from sd35_flops import PEAK_TFLOPS, forward_flops  # noqa: E402
from sd35_shapes import MMDiTConfig  # noqa: E402
from torch_measure import Budget, BudgetExceeded, Clock, MemoryWatch, deadline, nvidia_smi  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CHECKPOINTS = {"large": "checkpoints/sd3.5_large.safetensors", "medium": "checkpoints/sd3.5_medium.safetensors"}
T5_FILES = ("text_encoders/t5xxl_fp16.safetensors", "text_encoders/t5xxl_fp8_e4m3fn.safetensors")
CLIP_TOKENS = 77


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in value.split(",") if v.strip())


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", required=True, help="folder written by make_weights.py")
    p.add_argument("--out", required=True, help="JSON file for the rows")
    p.add_argument("--ref-dir", default=os.path.join(HERE, "..", "..", ".gpu", "ref"))
    p.add_argument("--models", default="large,medium")
    p.add_argument("--plan", default="full", choices=("full", "issue9", "issue10", "issue10-compiled"), help="what to run (the docstring)")
    p.add_argument("--fp8", action="store_true", help="also FP8 rows (torch._scaled_mm), eager and compiled, after the plan's")
    p.add_argument("--steps", default=None, type=_ints, help="default 28,20 (issue9: 28)")
    p.add_argument("--batches", default=None, type=_ints, help="images per generation (CFG doubles it); default 1,4 (issue9: 1)")
    p.add_argument("--turbo-steps", default=4, type=int, help="issue9: steps of the Turbo-like rows (no CFG)")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--device", default="cuda", help="'cuda' means cuda:0 (torch 2.11's set_device wants an index)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile, after every eager run")
    p.add_argument("--compile-batches", default="1", type=_ints)
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: inductor's default)")
    p.add_argument("--budget-s", type=float, default=480.0, help="the whole run")
    p.add_argument("--config-budget-s", type=float, default=60.0, help="one configuration's timed steps")
    p.add_argument("--compile-budget-s", type=float, default=240.0, help="one compilation")
    p.add_argument("--t5-tokens", type=int, default=256, help="T5 sequence (ComfyUI and atelier: 256)")
    p.add_argument("--cfg-scale", type=float, default=4.5)
    p.add_argument("--shift", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-runs", type=int, default=5)
    p.add_argument("--vae-runs", type=int, default=3)
    p.add_argument("--no-encoders", action="store_true")
    p.add_argument("--reference-sampler", action="store_true", help="sd3_impls.sample_euler, autocast(fp16) and all")
    args = p.parse_args(argv)
    if args.device == "cuda":
        args.device = "cuda:0"
    issue9 = args.plan in ("issue9", "issue10")
    args.steps = args.steps or ((28,) if issue9 else (28, 20))
    args.batches = args.batches or ((1,) if issue9 else (1, 4))
    args.compile = args.compile or issue9
    args.models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in args.models if m not in CHECKPOINTS]
    if unknown:
        p.error(f"unknown models {unknown} (known: {', '.join(CHECKPOINTS)})")
    return args


class Results:
    """The JSON file: an envelope describing the run, the rows, and what was skipped and why."""

    def __init__(self, path: str, envelope: dict[str, Any]) -> None:
        self.path = path
        self.data = {**envelope, "rows": [], "skipped": []}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.data["rows"]

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.save()

    def skip(self, reason: str, **what: Any) -> None:
        print(f"skipped {what}: {reason}", flush=True)
        self.data["skipped"].append({**what, "reason": reason})
        self.save()

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


@dataclass
class Ctx:
    args: argparse.Namespace
    device: torch.device
    dtype: torch.dtype
    clock: Clock
    watch: MemoryWatch
    budget: Budget
    results: Results
    encoders_load_seconds: float = 0.0
    text_encode_seconds: float | None = None


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_encoders(ctx: Ctx) -> list[torch.nn.Module]:
    """Loads CLIP-L, CLIP-G and T5-XXL (kept resident, as a serving pipeline keeps them) and times
    one prompt through each; a generation encodes two (the prompt and the empty negative)."""
    import torch_models

    root = ctx.args.models_dir
    t5_path = next((os.path.join(root, f) for f in T5_FILES if os.path.isfile(os.path.join(root, f))), None)
    if t5_path is None:
        raise FileNotFoundError(f"no T5 file in {root} ({', '.join(T5_FILES)})")
    gen = torch.Generator().manual_seed(ctx.args.seed)
    loaded: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    load_seconds: dict[str, float] = {}
    for name, loader, path in (
        ("clip_l", torch_models.load_clip_l, os.path.join(root, "text_encoders/clip_l.safetensors")),
        ("clip_g", torch_models.load_clip_g, os.path.join(root, "text_encoders/clip_g.safetensors")),
        ("t5xxl", torch_models.load_t5, t5_path),
    ):
        (model, cfg), seconds = ctx.clock.wall(lambda loader=loader, path=path: loader(path, ctx.device, ctx.dtype))
        loaded[name], configs[name], load_seconds[name] = model, cfg, round(seconds, 3)
        print(f"loaded {name} from {os.path.basename(path)} in {seconds:.1f} s", flush=True)
    tokens = {
        "clip_l": torch_models.clip_tokens(gen, pad=49407),
        "clip_g": torch_models.clip_tokens(gen, pad=0),
        "t5xxl": torch_models.t5_tokens(gen, configs["t5xxl"]["vocab_size"], ctx.args.t5_tokens),
    }
    encode_seconds = {
        name: round(ctx.clock.median(lambda m=model, t=tokens[name]: m(t), ctx.args.encoder_runs), 5)
        for name, model in loaded.items()
    }
    ctx.encoders_load_seconds = sum(load_seconds.values())
    ctx.text_encode_seconds = 2 * sum(encode_seconds.values())
    ctx.results.data["text_encoders"] = {
        "files": {"t5xxl": os.path.relpath(t5_path, root)},
        "configs": configs,
        "load_seconds": load_seconds,
        "encode_seconds_per_prompt": encode_seconds,
        "text_encode_seconds": round(ctx.text_encode_seconds, 5),
        "tokens": {"clip": CLIP_TOKENS, "t5": ctx.args.t5_tokens},
    }
    ctx.results.save()
    print(f"text encoding (prompt + negative): {ctx.text_encode_seconds * 1e3:.1f} ms {encode_seconds}", flush=True)
    return list(loaded.values())


@dataclass
class LoadedModel:
    name: str
    base: Any
    vae: Any
    config: MMDiTConfig
    mmdit_load_seconds: float
    vae_load_seconds: float
    vae_decode_seconds: float | None
    # Decode time per (width, height), measured once per size.
    decode_by_size: dict[tuple[int, int], float] = field(default_factory=dict)
    # Set once the joint blocks' linear layers run in FP8 (fp8_torch.to_fp8: what was swapped).
    fp8: dict[str, Any] | None = None


@dataclass(frozen=True)
class Workload:
    """One shape to time: `steps` are timed one after the other after a shared warm-up/compile."""

    batch: int
    width: int
    height: int
    steps: tuple[int, ...]
    cfg: bool = True
    # The model's name in the rows when it is not the weights' (Turbo-like runs on Large's files).
    name: str | None = None


@dataclass(frozen=True)
class Phase:
    model: str
    mode: str
    workloads: tuple[Workload, ...]
    # "fp8": the joint blocks' linear layers on torch._scaled_mm (fp8_torch.py); else the run's dtype.
    precision: str | None = None


def mmdit_config(base: Any) -> MMDiTConfig:
    dm = base.diffusion_model
    return MMDiTConfig(
        depth=len(dm.joint_blocks),
        pos_embed_max_size=dm.pos_embed_max_size,
        adm_in_channels=dm.y_embedder.mlp[0].in_features,
        context_dim=dm.context_embedder.in_features,
        x_block_self_attn_layers=tuple(dm.x_block_self_attn_layers),
    )


def load_model(ctx: Ctx, name: str) -> LoadedModel:
    import torch_models

    path = os.path.join(ctx.args.models_dir, CHECKPOINTS[name])
    base, mmdit_seconds = ctx.clock.wall(lambda: torch_models.load_mmdit(path, ctx.device, ctx.dtype, ctx.args.shift))
    vae, vae_seconds = ctx.clock.wall(lambda: torch_models.load_vae(path, ctx.device, ctx.dtype))
    cfg = mmdit_config(base)
    print(f"loaded sd3.5-{name} (depth {cfg.depth}) in {mmdit_seconds:.1f} s, its VAE in {vae_seconds:.1f} s", flush=True)
    model = LoadedModel(name, base, vae, cfg, mmdit_seconds, vae_seconds, None)
    model.vae_decode_seconds = vae_decode(ctx, model, ctx.args.width, ctx.args.height)
    return model


def vae_decode(ctx: Ctx, model: LoadedModel, width: int, height: int) -> float:
    if (width, height) not in model.decode_by_size:
        latent = torch.randn(1, 16, height // 8, width // 8, device=ctx.device, dtype=ctx.dtype)
        # SDVAE.decode wraps the decoder in autocast(fp16); the decoder itself runs in the model dtype.
        decode = ctx.clock.median(lambda: model.vae.decoder(latent), ctx.args.vae_runs)
        print(f"VAE decode {width}x{height}: {decode * 1e3:.1f} ms", flush=True)
        model.decode_by_size[(width, height)] = decode
    return model.decode_by_size[(width, height)]


def euler(denoiser: Any, x: torch.Tensor, sigmas: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
    """sd3_impls.sample_euler's steps, without its autocast(fp16) decorator."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = denoiser(x, sigma * s_in, **extra)
        x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
    return x


def sigmas_for(shift: float, steps: int, device: torch.device) -> torch.Tensor:
    """SD3Inferencer.get_sigmas on a CPU copy of the model's sampling schedule, then to the device."""
    from sd3_impls import ModelSamplingDiscreteFlow
    from sd3_infer import SD3Inferencer

    return SD3Inferencer().get_sigmas(ModelSamplingDiscreteFlow(shift=shift), steps).to(device)


class CondOnly(torch.nn.Module):
    """The denoiser without classifier-free guidance (guidance ≤ 1, as for Turbo): the conditional
    pass alone, a batch of `images`, where CFGDenoiser always runs cond and uncond."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, cond: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        return self.model.apply_model(x, timestep, c_crossattn=cond["c_crossattn"], y=cond["y"])


def precision_of(ctx: Ctx, model: LoadedModel) -> str:
    return "fp8" if model.fp8 else ctx.args.dtype


def run_workload(ctx: Ctx, model: LoadedModel, mode: str, w: Workload) -> None:
    """Warm-up (and compilation), then one timed denoising per step count of the workload."""
    from sd3_impls import CFGDenoiser, sample_euler

    args, cfg, batch = ctx.args, model.config, w.batch
    gen = torch.Generator().manual_seed(args.seed + batch)
    text_tokens = CLIP_TOKENS + args.t5_tokens

    def conditioning() -> dict[str, torch.Tensor]:
        return {
            "c_crossattn": torch.randn(batch, text_tokens, cfg.context_dim, generator=gen).to(ctx.device, ctx.dtype),
            "y": torch.randn(batch, cfg.adm_in_channels, generator=gen).to(ctx.device, ctx.dtype),
        }

    if w.cfg:
        extra: dict[str, Any] = {"cond": conditioning(), "uncond": conditioning(), "cond_scale": args.cfg_scale}
        denoiser: Any = CFGDenoiser(model.base)
    else:
        extra, denoiser = {"cond": conditioning()}, CondOnly(model.base)
    noise = torch.randn(batch, 16, w.height // 8, w.width // 8, generator=gen).to(ctx.device)
    if args.reference_sampler:

        def sample(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
            return sample_euler(denoiser, x, sigmas, extra_args=extra)
    else:

        def sample(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
            return euler(denoiser, x, sigmas, extra)

    what = {"model": w.name or f"sd3.5-{model.name}", "mode": mode, "precision": precision_of(ctx, model)}
    what |= {"batch": batch, "width": w.width, "cfg": w.cfg}
    decode_seconds = vae_decode(ctx, model, w.width, w.height)
    ctx.watch.reset()
    schedule = {steps: sigmas_for(args.shift, steps, ctx.device) for steps in w.steps}
    first = schedule[w.steps[0]]
    compile_seconds = None
    try:
        if mode == "compile":
            limit = min(args.compile_budget_s, ctx.budget.remaining() - 10)
            with deadline(limit):
                _, compile_seconds = ctx.clock.wall(lambda: sample(first[0] * noise, first[:3]))
            print(f"compiled for batch {batch} in {compile_seconds:.1f} s", flush=True)
        else:
            ctx.clock.time(lambda: sample(first[0] * noise, first[:3]))
    except BudgetExceeded as e:
        ctx.results.skip(f"compilation exceeded its budget ({e})", **what)
        raise
    _, one_step = ctx.clock.time(lambda: sample(first[0] * noise, first[:2]))

    for steps in w.steps:
        sigmas = schedule[steps]
        allowed = min(args.config_budget_s, ctx.budget.remaining() - 15)
        measured_steps = steps if one_step * steps <= allowed else int(allowed // one_step)
        if measured_steps < 2:
            ctx.results.skip(f"no time left ({ctx.budget.remaining():.0f} s)", **what, steps=steps)
            continue
        out, seconds = ctx.clock.time(lambda s=sigmas[: measured_steps + 1]: sample(s[0] * noise, s))
        seconds *= steps / measured_steps
        # Untimed decode of each image, so the memory peak covers a whole generation, as atelier's.
        for i in range(batch):
            model.vae.decoder(out[i : i + 1].to(ctx.dtype))
        row = make_row(ctx, model, mode, w, steps, seconds, measured_steps, compile_seconds, decode_seconds)
        # Random weights must not overflow: inf/NaN would measure a different computation.
        row["finite"] = bool(torch.isfinite(out).all())
        ctx.results.add(row)
        r = ctx.results.rows[-1]
        print(
            f"{r['model']} {r['precision']} {mode} {w.width}x{w.height} batch {batch}{'' if w.cfg else ' no-CFG'} {steps} steps: denoising {r['denoise_seconds_per_image']:.3f} s/image, "
            f"{r['step_ms']:.1f} ms/step, peak {r['peak_gpu_mem_gb']} GB",
            flush=True,
        )


def make_row(
    ctx: Ctx,
    model: LoadedModel,
    mode: str,
    w: Workload,
    steps: int,
    seconds: float,
    measured_steps: int,
    compile_seconds: float | None,
    decode_seconds: float | None,
) -> dict[str, Any]:
    args, batch = ctx.args, w.batch
    text_tokens = CLIP_TOKENS + args.t5_tokens
    flops = forward_flops(model.config, w.width, w.height, text_tokens)
    precision = precision_of(ctx, model)
    peak = PEAK_TFLOPS.get(args.dtype)
    forwards = 2 if w.cfg else 1
    floor = flops.total * forwards * steps / (peak * 1e12) if peak else None
    if precision == "fp8" and peak:
        # sd35_flops.floor_seconds' rule: the linear layers at the FP8 peak, attention at 16-bit.
        floor = (flops.linear / (PEAK_TFLOPS["fp8"] * 1e12) + flops.attention / (peak * 1e12)) * forwards * steps
    denoise = seconds / batch
    # seconds_per_image as atelier-bench.ts defines it, a generation's wall time per image: text
    # encoding (prompt and negative, once per generation) + denoising + VAE decode of each image.
    parts = {"denoising": denoise}
    if ctx.text_encode_seconds is not None:
        parts["text encoding"] = ctx.text_encode_seconds / batch
    if decode_seconds is not None:
        parts["VAE decode"] = decode_seconds
    row: dict[str, Any] = {
        "engine": "pytorch",
        "model": w.name or f"sd3.5-{model.name}",
        "weights": f"sd3.5-{model.name}",
        "precision": precision,
        "compute_dtype": args.dtype,
        "mode": mode + ("+reference-sampler" if args.reference_sampler else ""),
        "width": w.width,
        "height": w.height,
        "steps": steps,
        "batch": batch,
        "cfg": w.cfg,
        "guidance": args.cfg_scale if w.cfg else None,
        "cfg_batch": forwards * batch,
        "seconds_per_image": round(sum(parts.values()), 4),
        "seconds_per_image_includes": " + ".join(sorted(parts)),
        "denoise_seconds": round(seconds, 4),
        "denoise_seconds_per_image": round(denoise, 4),
        "steps_per_second": round(steps / seconds, 3),
        "step_ms": round(seconds / steps * 1e3, 2),
        **ctx.watch.peaks(),
        "load_seconds": round(ctx.encoders_load_seconds + model.mmdit_load_seconds + model.vae_load_seconds, 2),
        "mmdit_load_seconds": round(model.mmdit_load_seconds, 2),
        "text_encode_seconds": None if ctx.text_encode_seconds is None else round(ctx.text_encode_seconds, 4),
        "vae_decode_seconds": None if decode_seconds is None else round(decode_seconds, 4),
        "text_tokens": text_tokens,
        "tflop_per_forward": round(flops.total / 1e12, 3),
        "floor_seconds_per_image": None if floor is None else round(floor, 4),
        "mfu": None if floor is None else round(floor / denoise, 4),
    }
    if measured_steps != steps:
        row["measured_steps"] = measured_steps
    if compile_seconds is not None:
        row["compile_seconds"] = round(compile_seconds, 1)
    if model.fp8:
        row.update(model.fp8)
    return row


def phases(args: argparse.Namespace) -> list[Phase]:
    """Eager runs of every model first (the anchor that must exist), then compiled runs, the model
    still loaded first so the other is reloaded at most once. `--plan issue9`: the issue's rows in
    order of importance (module docstring); each compilation takes minutes, so the optional ones
    come last, where the budget cuts them."""
    w, h, steps = args.width, args.height, tuple(args.steps)
    full = tuple(Workload(b, w, h, steps) for b in args.batches)
    if args.plan == "issue10":
        order = []
        for m in ("large", "medium"):
            order += [Phase(m, "eager", full), Phase(m, "compile", full)]
            order += [Phase(m, "eager", full, "fp8"), Phase(m, "compile", full, "fp8")]
        return [p for p in order if p.model in args.models]
    if args.plan == "issue10-compiled":
        # The same-session anchors for an Atelier step measurement: compiled FP8 first (the row
        # to beat), then compiled bf16, per model; the eager rows are known not to compete.
        order = [Phase(m, mode, full, *fp8) for m in ("large", "medium") for mode, fp8 in (("compile", ("fp8",)), ("compile", ()))]
        return [p for p in order if p.model in args.models]
    if args.plan == "issue9":
        full = tuple(Workload(b, w, h, steps) for b in args.batches)
        half = (Workload(1, w // 2, h // 2, steps),)
        turbo = (Workload(1, w, h, (args.turbo_steps,), cfg=False, name="sd3.5-large-turbo"),)
        order = [
            Phase("large", "eager", full + turbo),
            Phase("medium", "eager", full + half),
            Phase("medium", "compile", full),
            Phase("large", "compile", full),
            Phase("medium", "compile", half),
            Phase("large", "compile", turbo),
        ]
        order = [p for p in order if p.model in args.models]
    else:
        order = [Phase(m, "eager", full) for m in args.models]
        if args.compile:
            compiled = tuple(Workload(b, w, h, steps) for b in args.compile_batches)
            order += [Phase(m, "compile", compiled) for m in reversed(args.models)]
    if args.fp8:
        # The model loaded last first (one reload fewer), eager before compiled (a failing FP8
        # path shows in seconds, not after a compilation).
        models = [p.model for p in order]
        last = models[-1] if models else None
        for m in sorted(args.models, key=lambda m: m != last):
            order += [Phase(m, "eager", full, "fp8")]
            if args.compile:
                order += [Phase(m, "compile", full, "fp8")]
    return order


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'model':<19}{'prec':<6}{'mode':<9}{'size':>6}{'batch':>6}{'steps':>6}{'denoise s/img':>14}{'s/image':>9}{'ms/step':>9}"
    head += f"{'peak GB':>9}{'MFU':>7}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        mfu = f"{r['mfu']:.2f}" if r.get("mfu") is not None else "-"
        print(
            f"{r['model']:<19}{r['precision']:<6}{r['mode']:<9}{r['width']:>6}{r['batch']:>6}{r['steps']:>6}{r['denoise_seconds_per_image']:>14.3f}"
            f"{r['seconds_per_image']:>9.3f}"
            f"{r['step_ms']:>9.1f}{r['peak_gpu_mem_gb'] or 0:>9.2f}{mfu:>7}"
        )


def envelope(args: argparse.Namespace, stood_in: list[str], argv: list[str]) -> dict[str, Any]:
    commit_file = os.path.join(args.ref_dir, "COMMIT")
    commit = None
    if os.path.isfile(commit_file):
        with open(commit_file) as f:
            commit = f.read().strip()
    weights = None
    manifest_path = os.path.join(args.models_dir, "weights-manifest.json")
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            weights = json.load(f)
    gpu = nvidia_smi()
    if not gpu and torch.cuda.is_available():
        gpu = {"device": torch.cuda.get_device_name()}
    return {
        "engine": "pytorch",
        **gpu,
        "date": time.strftime("%Y-%m-%d"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python3 bench/gpu/torch_bench.py " + " ".join(argv),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "reference_commit": commit,
        "stand_ins": stood_in,
        "weights": weights,
        "units": {"memory": "GiB (nvidia-smi MiB / 1024), as atelier-bench.ts", "time": "seconds"},
        "memory_scope": "GPU memory in use (nvidia-smi) above the baseline before this process used CUDA, "
        "with the text encoders, the MMDiT and the VAE resident; the allocator's peaks beside it",
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stood_in = ref_shims.install(os.path.abspath(args.ref_dir))
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    budget = Budget(args.budget_s)
    # Before anything touches CUDA: the memory baseline excludes nothing of this process.
    watch = MemoryWatch(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    results = Results(args.out, envelope(args, stood_in, argv))
    results.data["memory"] = {"source": watch.source, "baseline_gib": round(watch.baseline_mib / 1024, 3)}
    ctx = Ctx(args, device, dtype, Clock(device), watch, budget, results)
    compile_available = hasattr(torch, "compile")
    try:
        with torch.no_grad():
            encoders: list[torch.nn.Module] = []
            if not args.no_encoders:
                try:
                    encoders = measure_encoders(ctx)
                except Exception as e:  # the denoising anchor matters most: record, go on
                    traceback.print_exc()
                    results.skip(f"{type(e).__name__}: {e}", part="text encoders")
            loaded: LoadedModel | None = None
            for phase in phases(args):
                name, mode = phase.model, phase.mode
                fp8 = phase.precision == "fp8"
                what = {"model": f"sd3.5-{name}", "mode": mode, "precision": phase.precision or args.dtype}
                if mode == "compile" and not compile_available:
                    results.skip(f"torch {torch.__version__} has no torch.compile", **what)
                    continue
                if budget.remaining() < 30:
                    results.skip(f"run budget spent ({budget.elapsed():.0f} s)", **what)
                    continue
                if loaded is not None and loaded.fp8 and not fp8:
                    loaded = None  # the bf16 linear weights were dropped by the swap: reload
                if loaded is None or loaded.name != name:
                    loaded = None
                    _free()
                    try:
                        loaded = load_model(ctx, name)
                    except Exception as e:
                        traceback.print_exc()
                        results.skip(f"{type(e).__name__}: {e}", **what)
                        continue
                    results.data.setdefault("models", {})[f"sd3.5-{name}"] = {
                        "config": loaded.config.__dict__ | {"hidden": loaded.config.hidden},
                        "mmdit_load_seconds": round(loaded.mmdit_load_seconds, 2),
                        "vae_load_seconds": round(loaded.vae_load_seconds, 2),
                        "vae_decode_seconds": round(loaded.vae_decode_seconds or 0, 4),
                    }
                    results.save()
                if fp8 and not loaded.fp8:
                    import fp8_torch

                    try:
                        loaded.fp8, swap_seconds = ctx.clock.wall(lambda m=loaded: fp8_torch.to_fp8(m.base.diffusion_model))
                    except Exception as e:
                        traceback.print_exc()
                        results.skip(f"FP8 swap failed: {type(e).__name__}: {e}", **what)
                        loaded = None
                        _free()
                        continue
                    loaded.fp8["fp8_swap_seconds"] = round(swap_seconds, 2)
                    print(f"sd3.5-{name}: {loaded.fp8['fp8_linear_layers']} linear layers to FP8 ({loaded.fp8['fp8_kernel']}) in {swap_seconds:.1f} s", flush=True)
                    results.data.setdefault("models", {}).setdefault(f"sd3.5-{name}", {})["fp8"] = loaded.fp8
                    results.save()
                    if compile_available:
                        torch._dynamo.reset()  # compiled graphs of the bf16 model must not be reused
                eager = loaded.base.diffusion_model
                if mode == "compile":
                    compiled = torch.compile(eager, dynamic=False, mode=args.compile_mode)
                    loaded.base.diffusion_model = compiled
                    # BaseModel.get_dtype reads diffusion_model.dtype; keep it the eager module's.
                    loaded.base.get_dtype = lambda d=dtype: d
                try:
                    for workload in phase.workloads:
                        run_workload(ctx, loaded, mode, workload)
                except BudgetExceeded:
                    torch._dynamo.reset()
                except torch.cuda.OutOfMemoryError as e:
                    results.skip(f"out of memory: {str(e).splitlines()[0]}", **what)
                except Exception as e:
                    traceback.print_exc()
                    results.skip(f"{type(e).__name__}: {e}", **what)
                finally:
                    loaded.base.diffusion_model = eager
            del encoders
    finally:
        watch.stop()
        results.data["elapsed_seconds"] = round(budget.elapsed(), 1)
        results.save()
    print_table(results.rows)
    print(f"\nwrote {len(results.rows)} rows to {args.out} in {budget.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
