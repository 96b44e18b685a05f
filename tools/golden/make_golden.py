#!/usr/bin/env python3
"""Makes the project's own golden vectors (test/golden-data/) with Stability AI's official SD3.5
reference implementation (github Stability-AI/sd3.5 at fbf8f48: sd3_impls.py, mmditx.py,
other_impls.py, sd3_infer.py), on the CPU in float32, from small seeded random weights.

    python3 tools/golden/make_golden.py [--ref DIR] [--out test/golden-data]

Deterministic: the same files, byte for byte, on every run. The reference is read at run time and
never committed: without --ref it is copied into a temporary folder by bench/gpu/fetch-reference.sh
(SD35_MIRROR names a git mirror of the reference). Needs Debian's python3-torch and python3-numpy,
and node (npx tsx) for the two project parts below. The reference also imports einops,
safetensors, transformers, fire, tqdm and PIL, and calls torch 2's
F.scaled_dot_product_attention; Debian (bookworm) packages none of the first three and has torch
1.13. Each one missing is replaced by a stand-in (a literal einops.rearrange for the reference's two
patterns, softmax(q·kᵀ/√d + mask)·v for the attention, stubs for what the parts run here never call)
and the manifest lists them. safetensors files are written here (a JSON header and raw bytes).

The output has the manifest of the larger golden sets (../shared/golden), so the same tests run on
both. Every weight is stored once: the end-to-end model's MMDiT, VAE and CLIP encoders are also the
mmdit_large, vae, clip_l and clip_g components' weights (the manifest names the file and the key
prefix); see tools/golden/README.md for the size of each part. Two parts come from the project, not
from the reference: the end-to-end model is
the bundled tiny SD3.5 at a reduced size (tools/golden/e2e-model.ts), and the tokenizers the
reference's SD3Tokenizer runs over are the tiny model's own (answered through tools/golden/tokenize.ts
by @huggingface/tokenizers, the library the product uses): the reference's are OpenAI's CLIP and
Google's T5 vocabularies, which the project does not ship.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

SEED = 3_500_012
TOLERANCE = 1e-4
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --------------------------------------------------------------------------------------------
# Stand-ins for the reference's imports that Debian does not package
# --------------------------------------------------------------------------------------------


def _groups(side: str) -> list[list[str]]:
    return [m.group(1).split() if m.group(1) is not None else [m.group(2)] for m in re.finditer(r"\(([^)]*)\)|(\S+)", side)]


def rearrange(tensor, pattern: str, **sizes: int):  # noqa: ANN001, ANN201
    """einops.rearrange for named axes, parenthesised groups and unit axes, no ellipsis: the two
    patterns the reference uses (mmditx.cropped_pos_embed, sd3_impls.AttnBlock)."""
    left, right = (_groups(s.strip()) for s in pattern.split("->"))
    known = dict(sizes)
    for group, dim in zip(left, tensor.shape):
        names = [n for n in group if n != "1"]
        unknown = [n for n in names if n not in known]
        product = math.prod(known[n] for n in names if n in known)
        if len(unknown) > 1:
            raise ValueError(f"rearrange {pattern!r}: cannot infer {unknown}")
        if unknown:
            known[unknown[0]] = dim // product
        elif product != dim:
            raise ValueError(f"rearrange {pattern!r}: {group} is {product}, the tensor has {dim}")
    flat_left = [n for g in left for n in g if n != "1"]
    flat_right = [n for g in right for n in g if n != "1"]
    x = tensor.reshape([known[n] for n in flat_left]).permute([flat_left.index(n) for n in flat_right])
    return x.reshape([math.prod(1 if n == "1" else known[n] for n in g) for g in right])


def _stub(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _unavailable(*args: object, **kwargs: object) -> None:
    raise RuntimeError("not available in the golden generator")


class _NoTokenizer:
    from_pretrained = classmethod(lambda cls, *a, **k: _unavailable())


STAND_INS = {
    "einops": lambda: _stub("einops", rearrange=rearrange, repeat=_unavailable),
    "safetensors": lambda: _stub("safetensors", safe_open=_unavailable),
    "transformers": lambda: _stub("transformers", CLIPTokenizer=_NoTokenizer, T5TokenizerFast=_NoTokenizer),
    "fire": lambda: _stub("fire", Fire=_unavailable),
    "tqdm": lambda: _stub("tqdm", tqdm=lambda iterable=None, *a, **k: iterable),
    "PIL": lambda: _stub("PIL", Image=_stub("PIL.Image", Image=object, fromarray=_unavailable, open=_unavailable, LANCZOS=1)),
}


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):  # noqa: ANN001, ANN201
    """torch 2's F.scaled_dot_product_attention (torch 1.13 has none), its documented math:
    softmax(q·kᵀ/√d + mask)·v, a boolean mask keeping where True; no dropout, no causal mask."""
    if dropout_p != 0.0 or is_causal:
        raise NotImplementedError("the reference calls it with dropout_p=0 and is_causal=False")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.softmax(scores, dim=-1) @ v


def import_reference(ref_dir: str) -> list[str]:
    sys.path.insert(0, ref_dir)
    stood_in = []
    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        torch.nn.functional.scaled_dot_product_attention = scaled_dot_product_attention
        stood_in.append("torch.nn.functional.scaled_dot_product_attention")
    for name, make in STAND_INS.items():
        try:
            importlib.import_module(name)
        except Exception:
            module = make()
            sys.modules[name] = module
            if name == "PIL":
                sys.modules["PIL.Image"] = module.Image
            stood_in.append(name)
    return stood_in


# --------------------------------------------------------------------------------------------
# safetensors writing and float8_e4m3fn encoding (torch 1.13 has no float8)
# --------------------------------------------------------------------------------------------

DTYPES = {np.dtype("float16"): "F16", np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("uint8"): "U8"}


class Fp8:
    """A float8_e4m3fn value held as its byte (numpy has no such type)."""

    def __init__(self, codes: np.ndarray):
        self.codes = codes.astype(np.uint8)
        self.shape = codes.shape


def write_safetensors(path: str, tensors: dict[str, object]) -> None:
    header: dict[str, object] = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        value = tensors[name]
        if isinstance(value, Fp8):
            dtype, raw, shape = "F8_E4M3", value.codes.tobytes(), list(value.shape)
        else:
            array = np.array(value, order="C")  # ascontiguousarray would make a 0-d scale [1]
            dtype, raw, shape = DTYPES[array.dtype], array.astype(array.dtype.newbyteorder("<")).tobytes(), list(array.shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a safetensors file as numpy (F16, F32, I64), and its metadata."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    metadata = header.pop("__metadata__", None) or {}
    types_ = {"F16": "<f2", "F32": "<f4", "I64": "<i8"}
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=types_[info["dtype"]]).reshape(info["shape"])
    return tensors, metadata


def _e4m3_table() -> np.ndarray:
    """Values of the codes 0..126 (0x7F is NaN): e4m3fn, bias 7, subnormals below exponent 1."""
    values = []
    for code in range(127):
        exponent, mantissa = code >> 3, code & 7
        values.append(mantissa / 8 * 2.0**-6 if exponent == 0 else (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    return np.array(values, dtype=np.float64)


E4M3 = _e4m3_table()


def to_e4m3(x: np.ndarray) -> Fp8:
    """Round to nearest, ties to even, saturating at ±448 (as torch's cast to float8_e4m3fn)."""
    a = np.minimum(np.abs(x.astype(np.float64)), E4M3[-1])
    hi = np.clip(np.searchsorted(E4M3, a), 0, len(E4M3) - 1)
    lo = np.maximum(hi - 1, 0)
    d_lo, d_hi = a - E4M3[lo], E4M3[hi] - a
    code = np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi, np.where(lo % 2 == 0, lo, hi)))
    return Fp8(np.where(np.signbit(x) & (code > 0), code | 0x80, code))


def from_e4m3(f: Fp8) -> np.ndarray:
    magnitude = E4M3[f.codes & 0x7F]
    return np.where(f.codes & 0x80, -magnitude, magnitude).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def spec(tensors: dict[str, np.ndarray]) -> dict[str, dict[str, object]]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()}


def random_weights(module: torch.nn.Module, seed: int, prefix: str = "") -> dict[str, np.ndarray]:
    """Small seeded random float16 values for every parameter: weights ~ N(0, 1/fan_in), norm
    scales around 1, biases and embeddings small. The model computes with exactly these values."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, param in module.state_dict().items():
        shape = tuple(param.shape)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("relative_attention_bias.weight"):
            value = noise
        elif len(shape) >= 2 and (("embed" in name and "embedder" not in name) or name.endswith("pos_embed")):
            value = noise * 0.5
        elif len(shape) >= 2:
            value = noise / math.sqrt(math.prod(shape[1:]))
        elif re.search(r"norm|ln_|layer_norm", name) and leaf == "weight":
            value = 1 + 0.1 * noise
        else:
            value = 0.05 * noise
        out[prefix + name] = value.to(torch.float16).numpy()
    return out


def load(module: torch.nn.Module, weights: dict[str, np.ndarray], prefix: str = "") -> None:
    state = {k[len(prefix) :]: torch.from_numpy(v.astype(np.float32)) for k, v in weights.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)


def f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))


class DictFile:
    """What BaseModel reads its hyperparameters from: a safetensors file's get_tensor and keys."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights

    def get_tensor(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.weights[key].astype(np.float32))

    def keys(self):  # noqa: ANN201
        return self.weights.keys()


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------

MMDIT_PREFIX = "model.diffusion_model."


def mmdit_weights(mmditx, depth: int, pos_embed_max_size: int, adm: int, context_dim: int, attn2: list[int], seed: int):  # noqa: ANN001
    """Random weights for an MMDiTX built as BaseModel builds it (hidden = 64·depth, heads = depth)."""
    template = mmditx.MMDiTX(
        input_size=None,
        pos_embed_scaling_factor=None,
        pos_embed_offset=None,
        pos_embed_max_size=pos_embed_max_size,
        patch_size=2,
        in_channels=16,
        depth=depth,
        num_patches=pos_embed_max_size**2,
        adm_in_channels=adm,
        context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": context_dim, "out_features": 64 * depth}},
        qk_norm="rms",
        x_block_self_attn_layers=attn2,
        dtype=torch.float32,
    )
    return random_weights(template, seed, MMDIT_PREFIX)


def base_model(sd3_impls, weights: dict[str, np.ndarray], shift: float = 3.0):  # noqa: ANN001
    """The reference's BaseModel, hyperparameters derived from the weights as it does."""
    model = sd3_impls.BaseModel(shift=shift, file=DictFile(weights), prefix=MMDIT_PREFIX, dtype=torch.float32)
    load(model.diffusion_model, weights, MMDIT_PREFIX)
    return model.eval()


def mmdit_component(sd3_impls, weights, x_shape, tokens, context_dim, adm, seed):  # noqa: ANN001
    generator = torch.Generator().manual_seed(seed)
    batch = x_shape[0]
    x = torch.randn(x_shape, generator=generator)
    sigma = torch.tensor([0.9, 0.35][:batch], dtype=torch.float32)
    context = torch.randn((batch, tokens, context_dim), generator=generator)
    y = torch.randn((batch, adm), generator=generator)
    model = base_model(sd3_impls, weights)
    with torch.no_grad():
        timestep = model.model_sampling.timestep(sigma).float()
        model_output = model.diffusion_model(x, timestep, context=context, y=y).float()
        denoised = model.apply_model(x, sigma, c_crossattn=context, y=y)
    io = {"x": x, "sigma": sigma, "timestep": timestep, "context": context, "y": y, "model_output": model_output, "denoised": denoised}
    return model, {k: f32(v) for k, v in io.items()}


def describe_mmdit(model, io_name: str, weights_name: str) -> dict[str, object]:  # noqa: ANN001
    dm = model.diffusion_model
    first = dm.joint_blocks[0]
    return {
        "class": "MMDiTX via BaseModel",
        "depth": len(dm.joint_blocks),
        "hidden_size": dm.x_embedder.proj.out_channels,
        "num_heads": first.x_block.attn.num_heads,
        "patch_size": dm.patch_size,
        "pos_embed_max_size": dm.pos_embed_max_size,
        "adm_in_channels": dm.y_embedder.mlp[0].in_features,
        "context_dim": dm.context_embedder.in_features,
        "qk_norm": "rms",
        "x_block_self_attn_layers": [i for i, b in enumerate(dm.joint_blocks) if b.x_block.x_block_self_attn],
        "key_prefix": MMDIT_PREFIX,
        "notes": "model_output = diffusion_model(x, timestep=sigma*1000, context, y); denoised = x - model_output * sigma (flow matching)",
        "tolerance_rel_l2": TOLERANCE,
        "weights": weights_name,
        "io": io_name,
    }


def fp8_variants(sd3_impls, weights, inputs: dict[str, np.ndarray], float_out: np.ndarray):  # noqa: ANN001
    """Plain and ComfyUI-scaled fp8 copies of an MMDiT: every 2-D+ weight but pos_embed in e4m3;
    the reference runs them with the weights dequantized exactly (w8 · scale) in float32."""
    plain, scaled, plain_deq, scaled_deq = {}, {}, {}, {}
    for key, value in weights.items():
        if key.endswith(".weight") and value.ndim >= 2:
            w8 = to_e4m3(value.astype(np.float32))
            plain[key], plain_deq[key] = w8, from_e4m3(w8)
            scale = np.float32(np.abs(value.astype(np.float32)).max() / 448.0)
            s8 = to_e4m3(value.astype(np.float32) / scale)
            scaled[key] = s8
            scaled[key.removesuffix(".weight") + ".scale_weight"] = np.array(scale, dtype=np.float32)
            scaled_deq[key] = from_e4m3(s8) * scale
        else:
            plain[key] = scaled[key] = plain_deq[key] = scaled_deq[key] = value
    scaled[MMDIT_PREFIX + "scaled_fp8"] = Fp8(np.zeros((0,), dtype=np.uint8))
    outputs = []
    for dequantized in (plain_deq, scaled_deq):
        model = base_model(sd3_impls, dequantized)
        with torch.no_grad():
            out = model.diffusion_model(
                torch.from_numpy(inputs["x"]),
                torch.from_numpy(inputs["timestep"]),
                context=torch.from_numpy(inputs["context"]),
                y=torch.from_numpy(inputs["y"]),
            ).float()
        outputs.append(f32(out))
    return (plain, outputs[0], rel_l2(outputs[0], float_out)), (scaled, outputs[1], rel_l2(outputs[1], float_out))


def clip_component(other_impls, kind: str, config: dict[str, object], weights: dict[str, np.ndarray], seed: int):  # noqa: ANN001
    """CLIP-L (SDClipModel as sd3_infer.ClipL) or CLIP-G (SDXLClipG) with the given weights (the
    end-to-end model's text encoder), whose token table has the tiny vocabulary's rows instead of
    49,408 (set through the reference's set_input_embeddings): start and end are its last two ids,
    as in CLIP, so argmax(input_ids) still finds the end token."""
    vocab = weights["text_model.embeddings.token_embedding.weight"].shape[0]
    start, end = vocab - 2, vocab - 1
    pad = end if kind == "clip_l" else 0
    if kind == "clip_l":
        model = other_impls.SDClipModel(
            layer="hidden",
            layer_idx=-2,
            device="cpu",
            dtype=torch.float32,
            layer_norm_hidden_state=False,
            return_projected_pooled=False,
            textmodel_json_config=config,
            special_tokens={"start": start, "end": end, "pad": pad},
        )
    else:
        model = other_impls.SDXLClipG(config, device="cpu", dtype=torch.float32)
        model.special_tokens = {"start": start, "end": end, "pad": pad}
    model.transformer.set_input_embeddings(torch.nn.Embedding(vocab, config["hidden_size"]))
    load(model.transformer, weights)
    generator = torch.Generator().manual_seed(seed + 1)
    words = torch.randint(1, start, (23,), generator=generator).tolist()
    ids = [start, *words, end] + [pad] * (77 - len(words) - 2)
    with torch.no_grad():
        hidden, pooled = model([ids])
    io = {"input_ids": np.array([ids], dtype=np.int64), "hidden": f32(hidden), "pooled": f32(pooled)}
    return vocab, io, {"start": start, "end": end, "pad": pad}


def t5_component(other_impls, config: dict[str, int], seed: int):  # noqa: ANN001
    model = other_impls.T5XXLModel(config, device="cpu", dtype=torch.float32)
    weights = random_weights(model.transformer, seed)
    load(model.transformer, weights)
    generator = torch.Generator().manual_seed(seed + 1)
    words = torch.randint(2, config["vocab_size"], (40,), generator=generator).tolist()
    ids = [*words, 1] + [0] * (77 - len(words) - 1)
    with torch.no_grad():
        hidden, _ = model([ids])
    return weights, {"input_ids": np.array([ids], dtype=np.int64), "hidden": f32(hidden)}


def vae_component(sd3_impls, weights: dict[str, np.ndarray], ch: int, ch_mult: list[int], num_res_blocks: int, latent_hw: tuple[int, int], seed: int):  # noqa: ANN001
    """SDVAE's decoder and encoder with the given weights (the end-to-end checkpoint's VAE, its
    first_stage_model. prefix removed)."""
    vae = torch.nn.Module()
    vae.encoder = sd3_impls.VAEEncoder(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, dtype=torch.float32)
    vae.decoder = sd3_impls.VAEDecoder(ch=ch, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks, dtype=torch.float32)
    load(vae, weights)
    vae.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    scale = 2 ** (len(ch_mult) - 1)
    latent = torch.randn((1, 16, *latent_hw), generator=generator)
    image = torch.rand((1, 3, latent_hw[0] * scale, latent_hw[1] * scale), generator=generator) * 2 - 1
    with torch.no_grad():
        decoded = vae.decoder(latent)  # SDVAE.decode
        # SDVAE.encode, before it samples: mean and the clamped log-variance.
        mean, logvar = torch.chunk(vae.encoder(image), 2, dim=1)
        logvar = torch.clamp(logvar, -30.0, 20.0)
    io = {"latent": latent, "decoded": decoded, "image": image, "mean": mean, "logvar": logvar}
    return {k: f32(v) for k, v in io.items()}


def sampling_runs(sd3_impls, sd3_infer, weights, latent_shape, tokens, context_dim, adm, plan, seed):  # noqa: ANN001
    """sd3_infer.SD3Inferencer.do_sampling without the model loading: get_sigmas, the img2img cut,
    noise_scaling, CFGDenoiser with sample_euler / sample_dpmpp_2m, process_out."""
    model = base_model(sd3_impls, weights, shift=plan["shift"])
    sampling = model.model_sampling
    get_sigmas = lambda steps: sd3_infer.SD3Inferencer.get_sigmas(None, sampling, steps)  # noqa: E731
    generator = torch.Generator().manual_seed(seed)
    io = {f"sigmas_{n}": get_sigmas(n) for n in plan["tabulated"]}
    io["cond_context"] = torch.randn((1, tokens, context_dim), generator=generator)
    io["cond_y"] = torch.randn((1, adm), generator=generator)
    io["uncond_context"] = torch.randn((1, tokens, context_dim), generator=generator)
    io["uncond_y"] = torch.randn((1, adm), generator=generator)
    io["noise"] = torch.randn(latent_shape, generator=generator)
    io["img2img_init"] = torch.randn(latent_shape, generator=generator) * 0.8

    def run(steps: int, cfg: float, denoise: float, latent: torch.Tensor, sampler) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        sigmas = get_sigmas(steps)
        sigmas = sigmas[int(steps * (1 - denoise)) :]
        x = sampling.noise_scaling(sigmas[0], io["noise"], latent, False)
        extra = {
            "cond": {"c_crossattn": io["cond_context"], "y": io["cond_y"]},
            "uncond": {"c_crossattn": io["uncond_context"], "y": io["uncond_y"]},
            "cond_scale": cfg,
        }
        out = sampler(sd3_impls.CFGDenoiser(model), x, sigmas, extra_args=extra)
        return sigmas, sd3_impls.SD3LatentFormat().process_out(out)

    zeros = torch.zeros(latent_shape)
    t2i, i2i, dpm = plan["txt2img"], plan["img2img"], plan["dpmpp_2m"]
    io["txt2img_sigmas"], io["txt2img_out"] = run(t2i["steps"], t2i["cfg"], 1.0, zeros, sd3_impls.sample_euler)
    io["img2img_sigmas"], io["img2img_out"] = run(i2i["steps"], i2i["cfg"], i2i["denoise"], io["img2img_init"], sd3_impls.sample_euler)
    dpm_sigmas, dpm_out = run(dpm["steps"], dpm["cfg"], 1.0, zeros, sd3_impls.sample_dpmpp_2m)
    return {k: f32(v) for k, v in io.items()}, {"sigmas": f32(dpm_sigmas), "out": f32(dpm_out)}


def noise_cases(sd3_infer, cases: list[tuple[int, list[int]]]):  # noqa: ANN001
    """sd3_infer.SD3Inferencer.get_noise: torch.randn from torch.manual_seed(seed) on the CPU."""
    out = {}
    listed = []
    for seed, shape in cases:
        key = f"noise_{seed}_{'x'.join(map(str, shape))}"
        quiet = types.SimpleNamespace(print=lambda *a, **k: None)  # get_noise logs through self.print
        out[key] = f32(sd3_infer.SD3Inferencer.get_noise(quiet, seed, torch.empty(shape)))
        listed.append({"key": key, "seed": seed, "shape": shape})
    return out, listed



class ProjectTokenizer:
    """What the reference's SDTokenizer calls as a Hugging Face tokenizer (`tokenizer(text)` →
    {"input_ids"}, special tokens added; `get_vocab()`), answered by tools/golden/tokenize.ts with
    @huggingface/tokenizers over the project's own tokenizer.json (the reference's are OpenAI's
    CLIP and Google's T5 vocabularies, which the project does not ship)."""

    server: subprocess.Popen | None = None

    def __init__(self, directory: str):
        self.directory = directory

    @classmethod
    def _ask(cls, request: dict[str, object]):  # noqa: ANN206
        if cls.server is None:
            cls.server = subprocess.Popen(
                ["npx", "--no-install", "tsx", os.path.join(REPO_ROOT, "tools", "golden", "tokenize.ts")],
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        cls.server.stdin.write(json.dumps(request) + "\n")
        cls.server.stdin.flush()
        return json.loads(cls.server.stdout.readline())

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": self._ask({"dir": self.directory, "text": text})}

    def get_vocab(self) -> dict[str, int]:
        return self._ask({"dir": self.directory, "vocab": True})


E2E_CHECKPOINT = "e2e/models/checkpoints/atelier-tiny-sd35.safetensors"
E2E_ENCODERS = {name: f"e2e/models/text_encoders/{name}.safetensors" for name in ("clip_l", "clip_g", "t5xxl_tiny")}
VAE_PREFIX = "first_stage_model."


def e2e_models(out: str) -> dict[str, object]:
    """Writes the end-to-end model (tools/golden/e2e-model.ts: the project's bundled tiny SD3.5 at a
    reduced size) and its tokenizers into the set, and reads them back: the checkpoint's tensors and
    config, each text encoder's tensors and config. Its MMDiT, VAE and CLIP encoders are also the
    weights of the mmdit_large, vae, clip_l and clip_g components (one copy of each in the set)."""
    models = os.path.join(out, "e2e", "models")
    shutil.rmtree(os.path.join(out, "e2e"), ignore_errors=True)
    shutil.rmtree(os.path.join(out, "tokenizers"), ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="atelier-e2e-") as made:
        subprocess.run(
            ["npx", "--no-install", "tsx", os.path.join(REPO_ROOT, "tools", "golden", "e2e-model.ts"), made],
            cwd=REPO_ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        shutil.copytree(os.path.join(made, "checkpoints"), os.path.join(models, "checkpoints"))
        shutil.copytree(os.path.join(made, "text_encoders"), os.path.join(models, "text_encoders"))
        shutil.copytree(os.path.join(made, "tokenizers", "clip"), os.path.join(out, "tokenizers", "clip"))
        shutil.copytree(os.path.join(made, "tokenizers", "t5"), os.path.join(out, "tokenizers", "t5_tiny"))
    checkpoints = sorted(os.listdir(os.path.join(models, "checkpoints")))
    if [os.path.join("e2e", "models", "checkpoints", name) for name in checkpoints] != [E2E_CHECKPOINT]:
        raise RuntimeError(f"e2e-model.ts wrote {checkpoints}, expected {E2E_CHECKPOINT}")
    ckpt, ckpt_meta = read_safetensors(os.path.join(out, E2E_CHECKPOINT))
    encoders = {}
    for name, path in E2E_ENCODERS.items():
        weights, meta = read_safetensors(os.path.join(out, path))
        encoders[name] = (weights, json.loads(meta["atelier.config"]))
    return {"checkpoint": ckpt, "tiny": json.loads(ckpt_meta["atelier.config"]), "encoders": encoders}


def e2e_component(other_impls, sd3_impls, sd3_infer, out: str, made: dict[str, object], runs: list[dict[str, object]]):  # noqa: ANN001, C901
    """The project's tiny SD3.5 (written by e2e_models) from prompt to pixels, as
    sd3_infer.SD3Inferencer.gen_image does it, in float32 on the CPU."""
    clip_dir, t5_dir = os.path.join(out, "tokenizers", "clip"), os.path.join(out, "tokenizers", "t5_tiny")
    ckpt, tiny = made["checkpoint"], made["tiny"]

    # The reference's SD3Tokenizer, its HF tokenizers answered by the project's own files.
    other_impls.CLIPTokenizer = types.SimpleNamespace(from_pretrained=lambda *a, **k: ProjectTokenizer(clip_dir))
    other_impls.T5TokenizerFast = types.SimpleNamespace(from_pretrained=lambda *a, **k: ProjectTokenizer(t5_dir))
    tokenizer = other_impls.SD3Tokenizer()

    (l_w, l_cfg), (g_w, g_cfg), (t_w, t_cfg) = (made["encoders"][n] for n in ("clip_l", "clip_g", "t5xxl_tiny"))
    # As sd3_infer.ClipL / ClipG / T5XXL; the token tables have the tiny vocabulary's rows.
    clip_l = other_impls.SDClipModel(
        layer="hidden", layer_idx=-2, device="cpu", dtype=torch.float32,
        layer_norm_hidden_state=False, return_projected_pooled=False, textmodel_json_config=l_cfg,
    )
    clip_g = other_impls.SDXLClipG({k: g_cfg[k] for k in l_cfg}, device="cpu", dtype=torch.float32)
    for model, weights, cfg in ((clip_l, l_w, l_cfg), (clip_g, g_w, g_cfg)):
        rows = weights["text_model.embeddings.token_embedding.weight"].shape[0]
        model.transformer.set_input_embeddings(torch.nn.Embedding(rows, cfg["hidden_size"]))
        load(model.transformer, weights)
    t5_config = {k: t_cfg[k] for k in ("d_ff", "d_model", "num_heads", "num_layers", "vocab_size")}
    t5 = other_impls.T5XXLModel(t5_config, device="cpu", dtype=torch.float32)
    load(t5.transformer, t_w)

    def get_cond(prompt: str):  # noqa: ANN202
        """sd3_infer.get_cond, the joint context zero-padded to the T5 width (4096 in real models)."""
        tokens = tokenizer.tokenize_with_weights(prompt)
        l_out, l_pooled = clip_l.encode_token_weights(tokens["l"])
        g_out, g_pooled = clip_g.encode_token_weights(tokens["g"])
        t5_out, _ = t5.encode_token_weights(tokens["t5xxl"])
        lg_out = torch.cat([l_out, g_out], dim=-1)
        lg_out = torch.nn.functional.pad(lg_out, (0, t5_out.shape[-1] - lg_out.shape[-1]))
        return torch.cat([lg_out, t5_out], dim=-2), torch.cat((l_pooled, g_pooled), dim=-1)

    mmdit_w = {k: v for k, v in ckpt.items() if k.startswith(MMDIT_PREFIX)}
    model = base_model(sd3_impls, mmdit_w, shift=3.0)
    vae_cfg = tiny["vae"]
    vae = torch.nn.Module()
    vae.encoder = sd3_impls.VAEEncoder(ch=vae_cfg["ch"], ch_mult=tuple(vae_cfg["ch_mult"]), num_res_blocks=vae_cfg["num_res_blocks"], dtype=torch.float32)
    vae.decoder = sd3_impls.VAEDecoder(ch=vae_cfg["ch"], ch_mult=tuple(vae_cfg["ch_mult"]), num_res_blocks=vae_cfg["num_res_blocks"], dtype=torch.float32)
    load(vae, {k: v for k, v in ckpt.items() if k.startswith("first_stage_model.")}, "first_stage_model.")
    vae.eval()
    quiet = types.SimpleNamespace(print=lambda *a, **k: None)
    latent_format = sd3_impls.SD3LatentFormat()

    def do_sampling(latent, seed, cond, neg, steps, cfg_scale, sampler, denoise):  # noqa: ANN001, ANN202
        """sd3_infer.do_sampling in float32 on the CPU (it casts to half on CUDA)."""
        noise = sd3_infer.SD3Inferencer.get_noise(quiet, seed, latent)
        sigmas = sd3_infer.SD3Inferencer.get_sigmas(None, model.model_sampling, steps)
        sigmas = sigmas[int(steps * (1 - denoise)) :]
        extra = {"cond": {"c_crossattn": cond[0], "y": cond[1]}, "uncond": {"c_crossattn": neg[0], "y": neg[1]}, "cond_scale": cfg_scale}
        max_sigma = float(model.model_sampling.sigma_max)
        max_denoise = math.isclose(max_sigma, float(sigmas[0]), rel_tol=1e-05) or float(sigmas[0]) > max_sigma
        noise_scaled = model.model_sampling.noise_scaling(sigmas[0], noise, latent, max_denoise)
        sample_fn = getattr(sd3_impls, f"sample_{sampler}")
        out = sample_fn(sd3_impls.CFGDenoiser(model), noise_scaled, sigmas, extra_args=extra)
        return noise, sigmas, latent_format.process_out(out)

    def vae_decode(latent):  # noqa: ANN001, ANN202
        """sd3_infer.vae_decode up to the uint8 array it saves: HWC, truncated."""
        image = vae.decoder(latent).float()
        image = torch.clamp((image + 1.0) / 2.0, min=0.0, max=1.0)[0]
        return (255.0 * np.moveaxis(image.numpy(), 0, 2)).astype(np.uint8)

    def vae_encode(pixels: np.ndarray):  # noqa: ANN202
        """sd3_infer.vae_encode + process_in, with the encoder's mean (SDVAE.encode would add
        exp(logvar/2)·randn_like noise; the pipeline encodes to the mean)."""
        image = np.moveaxis(pixels.astype(np.float32) / 255.0, 2, 0)[None]
        image = 2.0 * torch.from_numpy(image) - 1.0
        mean, _ = torch.chunk(vae.encoder(image), 2, dim=1)
        return latent_format.process_in(mean)

    io: dict[str, np.ndarray] = {}
    for run in runs:
        name = run["name"]
        w, h = run["width"], run["height"]
        if run.get("init_image"):
            source, tensor = run["init_image"].split(".")
            latent = vae_encode(io[f"{source}.{tensor}"])
        else:
            latent = sd3_infer.SD3Inferencer.get_empty_latent(quiet, 1, w, h, run["seed"], "cpu")
        cond, neg = get_cond(run["prompt"]), get_cond(run["negative"])
        noise, sigmas, latent_out = do_sampling(
            latent, run["seed"], cond, neg, run["steps"], run["cfg"], run["sampler"], run.get("denoise", 1.0)
        )
        io.update({
            f"{name}.cond": f32(cond[0]), f"{name}.pooled": f32(cond[1]),
            f"{name}.neg_cond": f32(neg[0]), f"{name}.neg_pooled": f32(neg[1]),
            f"{name}.noise": f32(noise), f"{name}.sigmas": f32(sigmas),
            f"{name}.latent_out": f32(latent_out), f"{name}.image": vae_decode(latent_out),
        })
    if ProjectTokenizer.server is not None:
        ProjectTokenizer.server.stdin.close()
        ProjectTokenizer.server.wait()
        ProjectTokenizer.server = None
    write_safetensors(os.path.join(out, "e2e", "e2e.io.safetensors"), io)
    configs = {
        "clip_l": l_cfg, "clip_g": {k: g_cfg[k] for k in l_cfg}, "t5": t5_config,
        "mmdit_depth": tiny["mmdit"]["depth"], "vae": {"ch": vae_cfg["ch"], "ch_mult": vae_cfg["ch_mult"]},
    }
    return tokenizer, configs


def tokens_component(tokenizer, prompts: list[str]) -> list[dict[str, object]]:  # noqa: ANN001
    """The reference's SD3Tokenizer.tokenize_with_weights on each prompt, weights dropped."""
    cases = []
    for prompt in prompts:
        out = tokenizer.tokenize_with_weights(prompt)
        cases.append({"prompt": prompt, **{k: [[t for t, _ in chunk] for chunk in out[k]] for k in ("l", "g", "t5xxl")}})
    return cases

# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="folder with the reference's files (default: fetched into a temporary folder)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "test", "golden-data"))
    args = parser.parse_args()

    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)  # as sd3_infer, which runs under torch.no_grad()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    temp = None
    ref_dir = args.ref
    if ref_dir is None:
        temp = tempfile.mkdtemp(prefix="sd35-ref-")
        subprocess.run(["bash", os.path.join(REPO_ROOT, "bench", "gpu", "fetch-reference.sh"), temp], check=True, stdout=sys.stderr)
        ref_dir = temp
    commit = open(os.path.join(ref_dir, "COMMIT")).read().strip() if os.path.exists(os.path.join(ref_dir, "COMMIT")) else "unknown"
    stood_in = import_reference(ref_dir)
    import mmditx  # noqa: PLC0415 - the reference, importable only now
    import other_impls  # noqa: PLC0415
    import sd3_impls  # noqa: PLC0415
    import sd3_infer  # noqa: PLC0415

    out = args.out
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".safetensors") or name in ("manifest.json", "tokens.json"):
            os.remove(os.path.join(out, name))

    def save(name: str, tensors: dict[str, object]) -> str:
        write_safetensors(os.path.join(out, name), tensors)
        return name

    components: dict[str, dict[str, object]] = {}
    context_dim, adm, tokens = 32, 32, 7

    # The end-to-end model first: its MMDiT, VAE and CLIP encoders are also the weights of the
    # component vectors below (one copy of each in the set keeps it small).
    made = e2e_models(out)
    ckpt = made["checkpoint"]

    # MMDiT, SD3.5 Large shape (qk RMSNorm, no attn2): the end-to-end checkpoint's. Depth 1 keeps
    # it small: the full joint block (context MLP and output projection) is covered by the
    # Medium-shaped model below.
    large_w = {k: v for k, v in ckpt.items() if k.startswith(MMDIT_PREFIX)}
    large_context = large_w[MMDIT_PREFIX + "context_embedder.weight"].shape[1]
    large_adm = large_w[MMDIT_PREFIX + "y_embedder.mlp.0.weight"].shape[1]
    large, large_io = mmdit_component(sd3_impls, large_w, (2, 16, 12, 16), tokens, large_context, large_adm, SEED + 2)
    components["mmdit_large"] = describe_mmdit(large, save("mmdit_large.io.safetensors", large_io), E2E_CHECKPOINT)
    components["mmdit_large"]["tensors"] = spec(large_io)

    # MMDiT-X, SD3.5 Medium shape: depth 2, dual attention in block 0 only, a portrait latent.
    medium_w = mmdit_weights(mmditx, 2, 8, adm, context_dim, [0], SEED + 3)
    medium, medium_io = mmdit_component(sd3_impls, medium_w, (2, 16, 16, 10), tokens, context_dim, adm, SEED + 4)
    components["mmdit_medium"] = describe_mmdit(medium, save("mmdit_medium.io.safetensors", medium_io), save("mmdit_medium.weights.safetensors", medium_w))
    components["mmdit_medium"]["tensors"] = spec(medium_io)

    (plain, plain_out, plain_err), (scaled, scaled_out, scaled_err) = fp8_variants(sd3_impls, large_w, large_io, large_io["model_output"])
    for name, weights, output, err, fmt in (
        ("mmdit_large_fp8", plain, plain_out, plain_err, "plain float8_e4m3fn weights (every 2-D+ .weight but pos_embed)"),
        ("mmdit_large_scaled_fp8", scaled, scaled_out, scaled_err, "ComfyUI scaled fp8: e4m3 weight, float32 <layer>.scale_weight, marker key model.diffusion_model.scaled_fp8"),
    ):
        components[name] = {
            "weights": save(f"{name}.weights.safetensors", weights),
            "io": save(f"{name}.io.safetensors", {"model_output": output}),
            "inputs_from": "mmdit_large.io.safetensors (x, timestep, context, y)",
            "format": fmt,
            "notes": "model_output computed by the reference in float32 with weights dequantized exactly (w8 * scale)",
            "tolerance_rel_l2": TOLERANCE,
            "fp8_vs_fp32_rel_l2": err,
        }

    # Sampling runs on the Large-shaped weights.
    plan = {
        "shift": 3.0,
        "tabulated": [3, 9, 28],
        "txt2img": {"steps": 3, "cfg": 5.0},
        "img2img": {"steps": 7, "cfg": 4.0, "denoise": 0.55},
        "dpmpp_2m": {"steps": 5, "cfg": 3.5},
    }
    sampler_io, dpm_io = sampling_runs(sd3_impls, sd3_infer, large_w, (1, 16, 12, 16), tokens, large_context, large_adm, plan, SEED + 5)
    components["sampler"] = {
        "class": "sample_euler + CFGDenoiser with the mmdit_large weights",
        "shift": plan["shift"],
        "txt2img": {**plan["txt2img"], "denoise": 1.0, "start_latent": "zeros"},
        "img2img": {**plan["img2img"], "start_latent": "img2img_init"},
        "notes": "sigma(t) = shift*t/(1+(shift-1)*t), t = i/1000 for i in 1..1000; sigmas = sd3_infer.SD3Inferencer.get_sigmas; img2img drops the first int(steps*(1-denoise)) sigmas; x0 = sigma0*noise + (1-sigma0)*latent; sample_euler with CFGDenoiser (uncond + (cond-uncond)*cfg on the batch [cond, uncond]); output = x/1.5305 + 0.0609 (SD3LatentFormat.process_out)",
        "tolerance_rel_l2": TOLERANCE,
        "weights": E2E_CHECKPOINT,
        "io": save("sampler.io.safetensors", sampler_io),
        "tensors": spec(sampler_io),
    }
    components["sampler_dpmpp_2m"] = {
        "io": save("sampler_dpmpp_2m.io.safetensors", dpm_io),
        "weights": E2E_CHECKPOINT,
        "inputs_from": "sampler.io.safetensors (noise, cond_*, uncond_*)",
        "steps": plan["dpmpp_2m"]["steps"],
        "cfg": plan["dpmpp_2m"]["cfg"],
        "start_latent": "zeros",
        "notes": "sd3_impls.sample_dpmpp_2m with CFGDenoiser; output after process_out",
        "tolerance_rel_l2": TOLERANCE,
    }

    # Text encoders: CLIP-L and CLIP-G are the end-to-end model's (quick_gelu and gelu, 2 and 4
    # heads); T5 has its own, narrower than the end-to-end one (another width and head count).
    clip_fields = ("hidden_act", "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
    for i, (name, cls) in enumerate((("clip_l", "SDClipModel"), ("clip_g", "SDXLClipG"))):
        weights, stored = made["encoders"][name]
        config = {k: stored[k] for k in clip_fields}
        vocab, io, special = clip_component(other_impls, name, config, weights, SEED + 10 + 2 * i)
        components[name] = {
            "class": cls,
            "config": config,
            "vocab_size": vocab,
            "layer": "penultimate (layer_idx -2), no final layer norm",
            "pooled": "final_layer_norm(x)[eos] (not projected)" if name == "clip_l" else "text_projection(final_layer_norm(x)[eos])",
            "eos_index": "argmax of input_ids (first occurrence of the largest id, the end token)",
            "special_tokens": special,
            "key_prefix": "",
            "notes": "the end-to-end model's text encoder (weights and config): a token table of vocab_size rows (the tiny tokenizer's) instead of CLIP's 49,408 (the reference's set_input_embeddings); start and end are its last two ids as in CLIP",
            "tolerance_rel_l2": TOLERANCE,
            "weights": E2E_ENCODERS[name],
            "io": save(f"{name}.io.safetensors", io),
            "tensors": spec(io),
        }
    t5_config = {"d_ff": 64, "d_model": 32, "num_heads": 2, "num_layers": 2, "vocab_size": 256}
    t5_w, t5_io = t5_component(other_impls, t5_config, SEED + 20)
    components["t5"] = {
        "class": "T5XXLModel",
        "config": t5_config,
        "key_prefix": "",
        "notes": "last hidden state after final RMS layer norm; relative position bias from block 0 shared by all blocks; gated-GELU (tanh) feed-forward; no attention scaling by sqrt(d)",
        "tolerance_rel_l2": TOLERANCE,
        "weights": save("t5.weights.safetensors", t5_w),
        "io": save("t5.io.safetensors", t5_io),
        "tensors": spec(t5_io),
    }

    # The VAE of the end-to-end checkpoint: four levels (the real 8x), 64 channels at the top
    # level and 32 below, so channels change in both directions (nin_shortcut) as in the real one.
    tiny_vae = made["tiny"]["vae"]
    vae_cfg = {"ch": tiny_vae["ch"], "ch_mult": tiny_vae["ch_mult"], "num_res_blocks": tiny_vae["num_res_blocks"], "z_channels": 16}
    vae_w = {k[len(VAE_PREFIX) :]: v for k, v in ckpt.items() if k.startswith(VAE_PREFIX)}
    vae_io = vae_component(sd3_impls, vae_w, vae_cfg["ch"], vae_cfg["ch_mult"], vae_cfg["num_res_blocks"], (3, 4), SEED + 30)
    components["vae"] = {
        "class": "VAEDecoder/VAEEncoder of SDVAE with ch, ch_mult and num_res_blocks reduced (real: ch=128, ch_mult=(1,2,4,4), num_res_blocks=2)",
        **vae_cfg,
        "key_prefix": VAE_PREFIX,
        "notes": "derive ch from decoder.conv_in / encoder.conv_in shapes and the number of levels from decoder.up.N keys; the encoder input is 2*rgb-1; SDVAE.encode's mean and clamped logvar, before it samples",
        "latent_scale": 1.5305,
        "latent_shift": 0.0609,
        "tolerance_rel_l2": TOLERANCE,
        "weights": E2E_CHECKPOINT,
        "io": save("vae.io.safetensors", vae_io),
        "tensors": spec(vae_io),
    }

    noise_io, cases = noise_cases(sd3_infer, [(0, [1, 16, 8, 8]), (42, [1, 16, 3, 5]), (7, [1, 3, 4]), (3141592653, [1, 16, 24, 20])])
    components["noise"] = {
        "io": save("noise.io.safetensors", noise_io),
        "cases": cases,
        "notes": "sd3_infer.SD3Inferencer.get_noise: torch.randn(shape, generator=torch.manual_seed(seed)) on the CPU, float32 (one case under 16 elements: torch's scalar path)",
        "tolerance_abs": 1e-6,
    }

    # End to end: the project's tiny SD3.5 (smaller), prompt to pixels through the reference.
    runs = [
        {"name": "txt2img", "prompt": "a red fox in the snow, watercolor", "negative": "", "seed": 2024, "steps": 4, "cfg": 4.5, "width": 64, "height": 64, "sampler": "euler"},
        {"name": "txt2img_wide", "prompt": "An old harbour at dawn, boats and (gulls:1.2)", "negative": "blurry, dark", "seed": 7, "steps": 5, "cfg": 3.5, "width": 96, "height": 64, "sampler": "dpmpp_2m"},
        {"name": "img2img", "prompt": "the same fox at night", "negative": "", "seed": 99, "steps": 8, "cfg": 4.0, "width": 64, "height": 64, "sampler": "euler", "denoise": 0.6, "init_image": "txt2img.image"},
    ]
    tokenizer, configs = e2e_component(other_impls, sd3_impls, sd3_infer, out, made, runs)
    components["e2e"] = {
        "models": "e2e/models (ComfyUI layout: checkpoints/ with model.diffusion_model.* and first_stage_model.*, text_encoders/clip_l, clip_g, t5xxl_tiny; fp16 storage, fp32 compute), written by tools/golden/e2e-model.ts: the project's bundled tiny SD3.5 at a reduced size",
        "tokenizers": "tokenizers/clip and tokenizers/t5_tiny (the project's own tiny tokenizers, src/pipeline/tiny)",
        "io": "e2e/e2e.io.safetensors (keys '<run>.<tensor>')",
        "runs": runs,
        "notes": "as sd3_infer.SD3Inferencer.gen_image on the CPU in float32: get_empty_latent, get_noise (torch.randn from torch.manual_seed(seed)), get_sigmas, do_sampling with CFGDenoiser, process_out; cond = cat(pad(cat(clip_l, clip_g, dim=-1), T5 width), t5, dim=-2) (the reference pads to 4096, the real T5 width), pooled = cat(l_pooled, g_pooled); the reference's SD3Tokenizer over the project's tokenizer files (tools/golden/tokenize.ts); img2img: VAE-encode the init image (2*rgb/255-1, encoder mean), process_in, then drop the first int(steps*(1-denoise)) sigmas; image = uint8(255*clamp((vae+1)/2))",
        "tolerance": {"latent_out_rel_l2": TOLERANCE, "image_max_abs_diff": 2},
        "configs": configs,
    }
    prompts = [
        "a lighthouse on a cliff",
        "",
        "A (bright:1.3) garden, ((soft light)), \\(not a weight\\) and [brackets]",
        "Crème brûlée — déjà vu 東京 🦊   spaced    out\nsecond line",
        " ".join(["a sprawling harbour town with boats, gulls, fishermen, nets, lanterns and cobbled streets"] * 4),
        "pneumonoultramicroscopicsilicovolcanoconiosis floccinaucinihilipilification",
        "x" * 300,
    ]
    tokens = {
        "notes": "SD3Tokenizer.tokenize_with_weights of the reference over the project's tiny tokenizers: 'l' and 'g' are lists of 77-token chunks (l pads with the end token, g with 0; words tokenized one by one after splitting on spaces; words of 8+ tokens may be split across chunks, others move to the next chunk); 't5xxl' is one chunk ending with </s>, padded with 0 to at least 77, from the prompt's first 226 characters. Weights are parsed and dropped.",
        "clip_tokenizer": "tokenizers/clip (the project's tiny CLIP BPE)",
        "t5_tokenizer": "tokenizers/t5_tiny (the project's tiny T5 Unigram)",
        "cases": tokens_component(tokenizer, prompts),
    }
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(tokens, f, indent=1, ensure_ascii=False)
        f.write("\n")
    components["tokens"] = {"io": "tokens.json", "tokenizers": "tokenizers/"}

    manifest = {
        "reference": f"official Stability AI SD3.5 reference implementation (github Stability-AI/sd3.5 at {commit})",
        "generator": "tools/golden/make_golden.py",
        "stand_ins": stood_in,
        "torch": torch.__version__,
        "dtype": "weights stored as float16 (exact values), computed in float32",
        "device": "cpu",
        "seed": SEED,
        "variant": "atelier",
        "tokenizers": "the project's own (tokenizers/): the reference's SD3Tokenizer runs over them through tools/golden/tokenize.ts; OpenAI's CLIP vocabulary is not in this set",
        "components": components,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    if temp:
        shutil.rmtree(temp)
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(out) for n in names)
    print(f"golden set -> {out}: {len(components)} components, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
