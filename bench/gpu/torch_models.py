"""The reference's modules built from the benchmark's files, the way sd3_infer.py builds them.

MMDiT: sd3_impls.BaseModel reads its hyperparameters from the checkpoint, then sd3_infer.load_into
copies every tensor in (as sd3_infer.SD3 does, in the chosen dtype on the chosen device). VAE:
sd3_impls.SDVAE. Text encoders: other_impls.SDClipModel / SDXLClipG / T5XXLModel as sd3_infer's
ClipL, ClipG and T5XXL build them, with configs read from the file's shapes (equal to sd3_infer's
CLIPL_CONFIG, CLIPG_CONFIG and T5_CONFIG for real-size files) and cast to one dtype so they run
on the GPU without autocast.

Before loading, every key of the module is matched against the file (names and shapes): load_into
only prints and skips what doesn't fit, which would silently benchmark a different model.
"""

from __future__ import annotations

import re

import torch

import st_io


class WeightsMismatch(Exception):
    pass


def file_shapes(path: str) -> dict[str, tuple[int, ...]]:
    entries, _, _ = st_io.read_header(path)
    return {name: e.shape for name, e in entries.items()}


def check_coverage(
    module: torch.nn.Module,
    shapes: dict[str, tuple[int, ...]],
    prefix: str,
    optional: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    skip_module_keys: tuple[str, ...] = (),
) -> None:
    """Every parameter/buffer of `module` is in the file under `prefix` with its shape, and every
    file key under `prefix` is one of them (or a known alias)."""
    expected = {
        prefix + k: tuple(v.shape)
        for k, v in module.state_dict().items()
        if not any(k.startswith(s) for s in skip_module_keys)
    }
    in_file = {k: v for k, v in shapes.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(in_file) - set(optional))
    extra = sorted(set(in_file) - set(expected) - set(aliases))
    wrong = sorted(k for k in set(expected) & set(in_file) if expected[k] != in_file[k])
    if missing or extra or wrong:
        lines = [f"missing {k} {list(expected[k])}" for k in missing[:10]]
        lines += [f"unexpected {k} {list(in_file[k])}" for k in extra[:10]]
        lines += [f"{k}: file {list(in_file[k])}, module {list(expected[k])}" for k in wrong[:10]]
        raise WeightsMismatch(
            f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong)} mis-shaped keys under '{prefix}':\n  "
            + "\n  ".join(lines)
        )


def load_mmdit(path: str, device: torch.device, dtype: torch.dtype, shift: float = 3.0) -> torch.nn.Module:
    from safetensors import safe_open
    from sd3_impls import BaseModel
    from sd3_infer import load_into

    with safe_open(path, framework="pt", device="cpu") as f:
        model = BaseModel(shift=shift, file=f, prefix="model.diffusion_model.", device=device, dtype=dtype).eval()
        check_coverage(model, file_shapes(path), "model.", skip_module_keys=("model_sampling.",))
        load_into(f, model, "model.", device, dtype)
    return model


def vae_config(shapes: dict[str, tuple[int, ...]], prefix: str) -> tuple[int, tuple[int, ...]]:
    """(ch, ch_mult) from the decoder: conv_out reads ch channels, up.N's blocks write ch·ch_mult[N]."""
    ch = shapes[f"{prefix}decoder.conv_out.weight"][1]
    levels = _count(shapes, re.escape(prefix) + r"decoder\.up\.(\d+)\.block\.0\.conv1\.weight")
    return ch, tuple(shapes[f"{prefix}decoder.up.{i}.block.0.conv1.weight"][0] // ch for i in range(levels))


def load_vae(path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from safetensors import safe_open
    from sd3_impls import SDVAE, VAEDecoder, VAEEncoder
    from sd3_infer import load_into

    shapes = file_shapes(path)
    prefix = "first_stage_model." if any(k.startswith("first_stage_model.") for k in shapes) else ""
    ch, ch_mult = vae_config(shapes, prefix)
    if (ch, ch_mult) == (128, (1, 2, 4, 4)):
        vae = SDVAE(dtype=dtype, device=device)
    else:  # a cut-down VAE (tiny weights): the same reference classes, narrower
        vae = torch.nn.Module()
        vae.encoder = VAEEncoder(ch=ch, ch_mult=ch_mult, dtype=dtype, device=device)
        vae.decoder = VAEDecoder(ch=ch, ch_mult=ch_mult, dtype=dtype, device=device)
    vae.eval()
    check_coverage(vae, shapes, prefix)
    with safe_open(path, framework="pt", device="cpu") as f:
        load_into(f, vae, prefix, device, dtype)
    return vae


def _count(shapes: dict[str, tuple[int, ...]], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := regex.fullmatch(k))})


def clip_config(shapes: dict[str, tuple[int, ...]], activation: str) -> dict[str, object]:
    hidden = shapes["text_model.embeddings.position_embedding.weight"][1]
    return {
        "hidden_act": activation,
        "hidden_size": hidden,
        "intermediate_size": shapes["text_model.encoder.layers.0.mlp.fc1.weight"][0],
        "num_attention_heads": hidden // 64,
        "num_hidden_layers": _count(shapes, r"text_model\.encoder\.layers\.(\d+)\.mlp\.fc1\.weight"),
    }


def t5_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    embed = shapes.get("encoder.embed_tokens.weight") or shapes["shared.weight"]
    return {
        "d_ff": shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
        "d_model": shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][1],
        "num_heads": shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][1],
        "num_layers": _count(shapes, r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.q\.weight"),
        "vocab_size": embed[0],
    }


def _load_encoder(model: torch.nn.Module, path: str, device: torch.device, dtype: torch.dtype, **check: object):
    from safetensors import safe_open
    from sd3_infer import load_into

    # The reference makes embeddings float32 whatever the dtype: one dtype throughout, no autocast.
    model.to(dtype)
    shapes = file_shapes(path)
    check_coverage(model.transformer, shapes, "", **check)  # type: ignore[arg-type]
    remap = None
    if "encoder.embed_tokens.weight" not in shapes and "shared.weight" in shapes:
        remap = {"shared.weight": "encoder.embed_tokens.weight"}
    with safe_open(path, framework="pt", device="cpu") as f:
        load_into(f, model.transformer, "", device, dtype, remap=remap)
    return model.eval()


def load_clip_l(path: str, device: torch.device, dtype: torch.dtype):
    from other_impls import SDClipModel

    cfg = clip_config(file_shapes(path), "quick_gelu")
    model = SDClipModel(
        layer="hidden",
        layer_idx=-2,
        device=device,
        dtype=dtype,
        layer_norm_hidden_state=False,
        return_projected_pooled=False,
        textmodel_json_config=cfg,
    )
    # CLIP-L's pooled output is not projected: files may leave text_projection out.
    return _load_encoder(model, path, device, dtype, optional=("text_projection.weight",)), cfg


def load_clip_g(path: str, device: torch.device, dtype: torch.dtype):
    from other_impls import SDXLClipG

    cfg = clip_config(file_shapes(path), "gelu")
    return _load_encoder(SDXLClipG(cfg, device=device, dtype=dtype), path, device, dtype), cfg


def load_t5(path: str, device: torch.device, dtype: torch.dtype):
    from other_impls import T5XXLModel

    shapes = file_shapes(path)
    cfg = t5_config(shapes)
    model = T5XXLModel(cfg, device=device, dtype=dtype)
    # Files hold the embedding as encoder.embed_tokens (the reference's name), shared (the tied copy
    # ComfyUI and transformers use), or both; load_into is given a remap when only `shared` is there.
    optional = () if "encoder.embed_tokens.weight" in shapes else ("encoder.embed_tokens.weight",)
    return _load_encoder(model, path, device, dtype, aliases=("shared.weight",), optional=optional), cfg


def clip_tokens(generator: torch.Generator, pad: int, words: int = 20, length: int = 77) -> list[list[int]]:
    """[start, words…, end, pad…] as SDTokenizer makes them (CLIP-L pads with end, CLIP-G with 0)."""
    ids = torch.randint(1, 49406, (words,), generator=generator).tolist()
    return [[49406, *ids, 49407] + [pad] * (length - words - 2)]


def t5_tokens(generator: torch.Generator, vocab: int, length: int, words: int = 30) -> list[list[int]]:
    """[words…, end (1), pad (0)…]: T5XXLTokenizer's layout, padded to `length` as ComfyUI does (256)."""
    ids = torch.randint(2, vocab, (min(words, length - 1),), generator=generator).tolist()
    return [[*ids, 1] + [0] * (length - len(ids) - 1)]
