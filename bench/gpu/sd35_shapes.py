"""Key names and shapes of SD3.5 model files, as the official reference builds the modules.

Every name below is the state-dict key the reference loads (Stability-AI/sd3.5 at the commit in
fetch-reference.sh): mmditx.py MMDiTX (SD3.5 Large: MMDiT; Medium: MMDiT-X with `attn2` in the
`x_block_self_attn_layers`), sd3_impls.py VAEEncoder/VAEDecoder, other_impls.py CLIPTextModel and
T5. Hyperparameters are the ones the reference derives from the state dict (sd3_impls.BaseModel:
depth = x_embedder.proj.weight.shape[0] / 64) or hard-codes (sd3_infer.py CLIPL_CONFIG,
CLIPG_CONFIG, T5_CONFIG); the real ones are checked against the Hugging Face configs of
stabilityai/stable-diffusion-3.5-large and -medium (transformer/config.json).

Pure Python: shapes only, nothing is allocated, so real-size parameter counts are exact and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

# How a tensor is filled: random values, or the identity of a norm (ones weight, zeros bias).
NORMAL, ONES, ZEROS = "normal", "ones", "zeros"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    fill: str = NORMAL

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class MMDiTConfig:
    depth: int
    pos_embed_max_size: int
    adm_in_channels: int
    context_dim: int
    x_block_self_attn_layers: tuple[int, ...] = ()
    qk_norm: bool = True
    patch_size: int = 2
    in_channels: int = 16

    @property
    def hidden(self) -> int:
        # mmditx.py MMDiTX.__init__: "apply magic --> this defines a head_size of 64".
        return 64 * self.depth

    @property
    def heads(self) -> int:
        return self.depth


@dataclass(frozen=True)
class VAEConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16


@dataclass(frozen=True)
class ClipConfig:
    hidden: int
    intermediate: int
    layers: int
    projection: bool
    vocab: int = 49408
    positions: int = 77


@dataclass(frozen=True)
class T5Config:
    d_model: int
    d_ff: int
    layers: int
    heads: int
    vocab: int
    relative_buckets: int = 32


@dataclass(frozen=True)
class ModelSet:
    """One set of files: the two MMDiTs, their VAE and the three text encoders."""

    large: MMDiTConfig
    medium: MMDiTConfig
    vae: VAEConfig
    clip_l: ClipConfig
    clip_g: ClipConfig
    t5: T5Config
    notes: dict[str, str] = field(default_factory=dict)


REAL = ModelSet(
    # SD3.5 Large: num_layers 38, pos_embed_max_size 192, qk_norm rms_norm, pooled 2048, joint 4096.
    large=MMDiTConfig(depth=38, pos_embed_max_size=192, adm_in_channels=2048, context_dim=4096),
    # SD3.5 Medium: num_layers 24, pos_embed_max_size 384, dual_attention_layers 0..12.
    medium=MMDiTConfig(
        depth=24,
        pos_embed_max_size=384,
        adm_in_channels=2048,
        context_dim=4096,
        x_block_self_attn_layers=tuple(range(13)),
    ),
    vae=VAEConfig(),
    # sd3_infer.py CLIPL_CONFIG / CLIPG_CONFIG / T5_CONFIG.
    clip_l=ClipConfig(hidden=768, intermediate=3072, layers=12, projection=False),
    clip_g=ClipConfig(hidden=1280, intermediate=5120, layers=32, projection=True),
    t5=T5Config(d_model=4096, d_ff=10240, layers=24, heads=64, vocab=32128),
)

# Small shapes with the same structure, for a smoke test on a CPU. Widths are multiples of 64 where
# a loader infers heads as width / 64 (CLIP, MMDiT); the T5 is wide enough to take the CLIP-L+G
# concatenation (64 + 128) as SD3 pads it to the T5 width; adm = CLIP-L + CLIP-G pooled widths.
TINY = ModelSet(
    large=MMDiTConfig(depth=2, pos_embed_max_size=32, adm_in_channels=192, context_dim=256),
    medium=MMDiTConfig(
        depth=3, pos_embed_max_size=64, adm_in_channels=192, context_dim=256, x_block_self_attn_layers=(0, 1)
    ),
    vae=VAEConfig(ch=32),
    clip_l=ClipConfig(hidden=64, intermediate=128, layers=3, projection=False),
    clip_g=ClipConfig(hidden=128, intermediate=256, layers=3, projection=True),
    t5=T5Config(d_model=256, d_ff=384, layers=2, heads=4, vocab=384),
)


def _linear(name: str, out_features: int, in_features: int, bias: bool = True) -> list[TensorSpec]:
    specs = [TensorSpec(f"{name}.weight", (out_features, in_features))]
    if bias:
        specs.append(TensorSpec(f"{name}.bias", (out_features,)))
    return specs


def _norm(name: str, width: int, bias: bool = True) -> list[TensorSpec]:
    specs = [TensorSpec(f"{name}.weight", (width,), ONES)]
    if bias:
        specs.append(TensorSpec(f"{name}.bias", (width,), ZEROS))
    return specs


def _conv(name: str, out_ch: int, in_ch: int, k: int) -> list[TensorSpec]:
    return [TensorSpec(f"{name}.weight", (out_ch, in_ch, k, k)), TensorSpec(f"{name}.bias", (out_ch,))]


def _self_attention(name: str, hidden: int, head_dim: int, qk_norm: bool, pre_only: bool) -> list[TensorSpec]:
    # mmditx.py SelfAttention: qkv (qkv_bias=True in MMDiTX), RMSNorm ln_q/ln_k over head_dim, proj.
    specs = _linear(f"{name}.qkv", 3 * hidden, hidden)
    if qk_norm:
        specs += _norm(f"{name}.ln_q", head_dim, bias=False) + _norm(f"{name}.ln_k", head_dim, bias=False)
    if not pre_only:
        specs += _linear(f"{name}.proj", hidden, hidden)
    return specs


def _dismantled_block(name: str, cfg: MMDiTConfig, pre_only: bool, dual: bool) -> list[TensorSpec]:
    # mmditx.py DismantledBlock: norm1/norm2 are LayerNorms without affine parameters (no keys);
    # adaLN_modulation is Sequential(SiLU, Linear) with 9 (dual), 6, or 2 (pre_only) modulations.
    h = cfg.hidden
    n_mods = 9 if dual else (2 if pre_only else 6)
    specs = _linear(f"{name}.adaLN_modulation.1", n_mods * h, h)
    specs += _self_attention(f"{name}.attn", h, h // cfg.heads, cfg.qk_norm, pre_only)
    if dual:
        specs += _self_attention(f"{name}.attn2", h, h // cfg.heads, cfg.qk_norm, False)
    if not pre_only:
        specs += _linear(f"{name}.mlp.fc1", 4 * h, h) + _linear(f"{name}.mlp.fc2", h, 4 * h)
    return specs


def mmdit_tensors(cfg: MMDiTConfig, prefix: str = "model.diffusion_model.") -> list[TensorSpec]:
    h, p = cfg.hidden, cfg.patch_size
    specs = [TensorSpec("pos_embed", (1, cfg.pos_embed_max_size**2, h))]
    specs += _conv("x_embedder.proj", h, cfg.in_channels, p)
    # TimestepEmbedder: frequency_embedding_size 256; VectorEmbedder for the pooled text vector.
    specs += _linear("t_embedder.mlp.0", h, 256) + _linear("t_embedder.mlp.2", h, h)
    specs += _linear("y_embedder.mlp.0", h, cfg.adm_in_channels) + _linear("y_embedder.mlp.2", h, h)
    specs += _linear("context_embedder", h, cfg.context_dim)
    for i in range(cfg.depth):
        last = i == cfg.depth - 1
        specs += _dismantled_block(f"joint_blocks.{i}.context_block", cfg, pre_only=last, dual=False)
        dual = i in cfg.x_block_self_attn_layers
        specs += _dismantled_block(f"joint_blocks.{i}.x_block", cfg, pre_only=False, dual=dual)
    specs += _linear("final_layer.linear", p * p * cfg.in_channels, h)
    specs += _linear("final_layer.adaLN_modulation.1", 2 * h, h)
    return [TensorSpec(prefix + s.name, s.shape, s.fill) for s in specs]


def _resnet(name: str, c_in: int, c_out: int) -> list[TensorSpec]:
    specs = _norm(f"{name}.norm1", c_in) + _conv(f"{name}.conv1", c_out, c_in, 3)
    specs += _norm(f"{name}.norm2", c_out) + _conv(f"{name}.conv2", c_out, c_out, 3)
    if c_in != c_out:
        specs += _conv(f"{name}.nin_shortcut", c_out, c_in, 1)
    return specs


def _mid(name: str, c: int) -> list[TensorSpec]:
    specs = _resnet(f"{name}.block_1", c, c) + _norm(f"{name}.attn_1.norm", c)
    for conv in ("q", "k", "v", "proj_out"):
        specs += _conv(f"{name}.attn_1.{conv}", c, c, 1)
    return specs + _resnet(f"{name}.block_2", c, c)


def vae_tensors(cfg: VAEConfig, prefix: str = "first_stage_model.") -> list[TensorSpec]:
    """sd3_impls.py VAEEncoder and VAEDecoder (SDVAE holds both; img2img needs the encoder)."""
    ch, mult, levels = cfg.ch, cfg.ch_mult, len(cfg.ch_mult)
    specs = _conv("encoder.conv_in", ch, 3, 3)
    in_mult = (1,) + tuple(mult)
    block_in = ch
    for level in range(levels):
        block_in, block_out = ch * in_mult[level], ch * mult[level]
        for b in range(cfg.num_res_blocks):
            specs += _resnet(f"encoder.down.{level}.block.{b}", block_in, block_out)
            block_in = block_out
        if level != levels - 1:
            specs += _conv(f"encoder.down.{level}.downsample.conv", block_in, block_in, 3)
    specs += _mid("encoder.mid", block_in)
    specs += _norm("encoder.norm_out", block_in) + _conv("encoder.conv_out", 2 * cfg.z_channels, block_in, 3)

    block_in = ch * mult[-1]
    specs += _conv("decoder.conv_in", block_in, cfg.z_channels, 3) + _mid("decoder.mid", block_in)
    for level in reversed(range(levels)):
        block_out = ch * mult[level]
        for b in range(cfg.num_res_blocks + 1):
            specs += _resnet(f"decoder.up.{level}.block.{b}", block_in, block_out)
            block_in = block_out
        if level != 0:
            specs += _conv(f"decoder.up.{level}.upsample.conv", block_in, block_in, 3)
    specs += _norm("decoder.norm_out", block_in) + _conv("decoder.conv_out", 3, block_in, 3)
    return [TensorSpec(prefix + s.name, s.shape, s.fill) for s in specs]


def clip_tensors(cfg: ClipConfig) -> list[TensorSpec]:
    """other_impls.py CLIPTextModel, keys as in clip_l.safetensors / clip_g.safetensors."""
    w = cfg.hidden
    specs = [
        TensorSpec("text_model.embeddings.token_embedding.weight", (cfg.vocab, w)),
        TensorSpec("text_model.embeddings.position_embedding.weight", (cfg.positions, w)),
    ]
    for i in range(cfg.layers):
        layer = f"text_model.encoder.layers.{i}"
        specs += _norm(f"{layer}.layer_norm1", w)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            specs += _linear(f"{layer}.self_attn.{proj}", w, w)
        specs += _norm(f"{layer}.layer_norm2", w)
        specs += _linear(f"{layer}.mlp.fc1", cfg.intermediate, w) + _linear(f"{layer}.mlp.fc2", w, cfg.intermediate)
    specs += _norm("text_model.final_layer_norm", w)
    if cfg.projection:
        specs += _linear("text_projection", w, w, bias=False)
    return specs


def t5_tensors(cfg: T5Config) -> list[TensorSpec]:
    """other_impls.py T5 (encoder only). The files hold the token embedding twice, as
    `encoder.embed_tokens.weight` (what the reference loads) and its tied copy `shared.weight`
    (what ComfyUI loads): the sizes of t5xxl_fp16 (9.79 GB) and t5xxl_fp8_e4m3fn (4.89 GB) add up
    only with both copies."""
    d = cfg.d_model
    specs: list[TensorSpec] = []
    for i in range(cfg.layers):
        block = f"encoder.block.{i}.layer"
        for proj in ("q", "k", "v", "o"):
            specs.append(TensorSpec(f"{block}.0.SelfAttention.{proj}.weight", (d, d)))
        if i == 0:
            specs.append(
                TensorSpec(f"{block}.0.SelfAttention.relative_attention_bias.weight", (cfg.relative_buckets, cfg.heads))
            )
        specs += _norm(f"{block}.0.layer_norm", d, bias=False)
        specs.append(TensorSpec(f"{block}.1.DenseReluDense.wi_0.weight", (cfg.d_ff, d)))
        specs.append(TensorSpec(f"{block}.1.DenseReluDense.wi_1.weight", (cfg.d_ff, d)))
        specs.append(TensorSpec(f"{block}.1.DenseReluDense.wo.weight", (d, cfg.d_ff)))
        specs += _norm(f"{block}.1.layer_norm", d, bias=False)
    specs += _norm("encoder.final_layer_norm", d, bias=False)
    specs.append(TensorSpec("encoder.embed_tokens.weight", (cfg.vocab, d)))
    specs.append(TensorSpec("shared.weight", (cfg.vocab, d)))
    return specs


def count(specs: list[TensorSpec], exclude: tuple[str, ...] = ()) -> int:
    return sum(s.numel for s in specs if not any(s.name.endswith(e) for e in exclude))
