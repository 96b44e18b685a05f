"""The SD3.5 networks in PyTorch, written for this trainer, with the real SD3.5 module names so
that `state_dict()` keys are the checkpoint's keys (model.diffusion_model.* / first_stage_model.*
once prefixed): the MMDiT (joint blocks, qk RMSNorm, last context block pre-only), the 16-channel
VAE (8× down), and the frozen text encoders (CLIP-L, CLIP-G, T5) as the product runs them.
The math follows Stability-AI/sd3.5 (mmditx.py, sd3_impls.py, other_impls.py); runs on torch 1.13
and 2.x (scaled_dot_product_attention is used when present)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention(q, k, v, heads, bias=None, scale=None):
    """q, k, v: [B, L, heads·d] → [B, L, heads·d]."""
    b, lq, c = q.shape
    d = c // heads
    q = q.view(b, lq, heads, d).transpose(1, 2)
    k = k.view(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.view(b, v.shape[1], heads, d).transpose(1, 2)
    if hasattr(F, "scaled_dot_product_attention") and scale is None:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    else:
        s = torch.matmul(q, k.transpose(-1, -2)) * (scale if scale is not None else d**-0.5)
        if bias is not None:
            s = s + bias
        o = torch.matmul(torch.softmax(s.float(), dim=-1).to(v.dtype), v)
    return o.transpose(1, 2).reshape(b, lq, c)


# ---------------------------------------------------------------------------------------------
# MMDiT


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh") if _GELU_APPROX else _gelu_tanh(self.fc1(x)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))))


try:
    F.gelu(torch.zeros(1), approximate="tanh")
    _GELU_APPROX = True
except TypeError:  # torch < 1.12
    _GELU_APPROX = False


class Attn(nn.Module):
    def __init__(self, dim, heads, pre_only):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.ln_q = RMSNorm(dim // heads)
        self.ln_k = RMSNorm(dim // heads)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)

    def pre(self, x):
        b, l, c = x.shape
        qkv = self.qkv(x).view(b, l, 3, self.heads, c // self.heads)
        q = self.ln_q(qkv[:, :, 0]).reshape(b, l, c)
        k = self.ln_k(qkv[:, :, 1]).reshape(b, l, c)
        v = qkv[:, :, 2].reshape(b, l, c)
        return q, k, v


class Block(nn.Module):
    """DismantledBlock: adaLN (6 modulations, or 2 when pre_only), attention, MLP."""

    def __init__(self, dim, heads, mlp_ratio, pre_only):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attn(dim, heads, pre_only)
        if not pre_only:
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (2 if pre_only else 6) * dim))

    def pre(self, x, c):
        if self.pre_only:
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
            return self.attn.pre(modulate(self.norm1(x), shift, scale)), None
        sm, cm, gm, sp, cp, gp = self.adaLN_modulation(c).chunk(6, dim=1)
        return self.attn.pre(modulate(self.norm1(x), sm, cm)), (x, gm, sp, cp, gp)

    def post(self, a, x, gm, sp, cp, gp):
        x = x + gm.unsqueeze(1) * self.attn.proj(a)
        return x + gp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sp, cp))


class JointBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, pre_only):
        super().__init__()
        self.context_block = Block(dim, heads, mlp_ratio, pre_only)
        self.x_block = Block(dim, heads, mlp_ratio, False)

    def forward(self, ctx, x, c):
        (cq, ck, cv), ci = self.context_block.pre(ctx, c)
        (xq, xk, xv), xi = self.x_block.pre(x, c)
        a = attention(torch.cat([cq, xq], 1), torch.cat([ck, xk], 1), torch.cat([cv, xv], 1), self.x_block.attn.heads)
        n = ctx.shape[1]
        ctx = None if ci is None else self.context_block.post(a[:, :n], *ci)
        return ctx, self.x_block.post(a[:, n:], *xi)


class Embed2(nn.Module):
    """Linear → SiLU → Linear as nn.Sequential (keys mlp.0 / mlp.2)."""

    def __init__(self, din, dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(din, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x):
        return self.mlp(x)


class PatchEmbed(nn.Module):
    def __init__(self, cin, dim, p):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class FinalLayer(nn.Module):
    def __init__(self, dim, p, cout):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, p * p * cout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def timestep_features(t, dim=256, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MMDiT(nn.Module):
    def __init__(self, depth, context_dim, pooled_dim, patch=2, channels=16, pos_max=32, mlp_ratio=4.0):
        super().__init__()
        dim = 64 * depth
        self.depth, self.dim, self.patch, self.channels, self.pos_max = depth, dim, patch, channels, pos_max
        self.x_embedder = PatchEmbed(channels, dim, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_max * pos_max, dim))
        self.t_embedder = Embed2(256, dim)
        self.y_embedder = Embed2(pooled_dim, dim)
        self.context_embedder = nn.Linear(context_dim, dim)
        self.joint_blocks = nn.ModuleList(
            [JointBlock(dim, depth, mlp_ratio, pre_only=(i == depth - 1)) for i in range(depth)]
        )
        self.final_layer = FinalLayer(dim, patch, channels)
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        # 2-D sin-cos position table, as SD3's was initialised (then learned).
        g = self.pos_max
        d = self.dim // 4
        om = 1.0 / 10000 ** (torch.arange(d, dtype=torch.float32) / d)
        ys, xs = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32), indexing="ij")
        def enc(pos):
            a = pos.reshape(-1, 1) * om[None]
            return torch.cat([torch.sin(a), torch.cos(a)], 1)
        self.pos_embed.data.copy_(torch.cat([enc(ys), enc(xs)], 1)[None])
        for emb in (self.t_embedder, self.y_embedder):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        for b in self.joint_blocks:
            for s in (b.context_block, b.x_block):
                nn.init.zeros_(s.adaLN_modulation[1].weight)
                nn.init.zeros_(s.adaLN_modulation[1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def cropped_pos(self, h, w):
        top, left = (self.pos_max - h) // 2, (self.pos_max - w) // 2
        pe = self.pos_embed.view(1, self.pos_max, self.pos_max, self.dim)[:, top : top + h, left : left + w]
        return pe.reshape(1, h * w, self.dim)

    def forward(self, x, timestep, y, context):
        """x: [B, 16, H, W] latents; timestep: σ·1000 [B]; y: pooled [B, P]; context [B, L, D] → v."""
        b, _, hh, ww = x.shape
        p = self.patch
        h, w = hh // p, ww // p
        x = self.x_embedder(x) + self.cropped_pos(h, w).to(x.dtype)
        c = self.t_embedder(timestep_features(timestep).to(x.dtype)) + self.y_embedder(y)
        ctx = self.context_embedder(context)
        for blk in self.joint_blocks:
            ctx, x = blk(ctx, x, c)
        x = self.final_layer(x, c)  # [B, h·w, p·p·C]
        x = x.view(b, h, w, p, p, self.channels).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, self.channels, h * p, w * p)


# ---------------------------------------------------------------------------------------------
# VAE (sd3_impls.py SDVAE layout)


def Norm(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = Norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = Norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = Norm(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (t(n).flatten(2).transpose(1, 2) for t in (self.q, self.k, self.v))
        a = attention(q, k, v, 1)
        return x + self.proj_out(a.transpose(1, 2).reshape(b, c, h, w))


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = ResnetBlock(c, c)
        self.attn_1 = AttnBlock(c)
        self.block_2 = ResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, nres, z):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            for _ in range(nres):
                lvl.block.append(ResnetBlock(cin, int(ch * m)))
                cin = int(ch * m)
            if i != len(ch_mult) - 1:
                lvl.downsample = Down(cin)
            self.down.append(lvl)
        self.mid = Mid(cin)
        self.norm_out = Norm(cin)
        self.conv_out = nn.Conv2d(cin, 2 * z, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for blk in lvl.block:
                h = blk(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, nres, z):
        super().__init__()
        cin = int(ch * ch_mult[-1])
        self.conv_in = nn.Conv2d(z, cin, 3, padding=1)
        self.mid = Mid(cin)
        ups = []
        for i in reversed(range(len(ch_mult))):
            lvl = nn.Module()
            lvl.block = nn.ModuleList()
            for _ in range(nres + 1):
                lvl.block.append(ResnetBlock(cin, int(ch * ch_mult[i])))
                cin = int(ch * ch_mult[i])
            if i != 0:
                lvl.upsample = Up(cin)
            ups.insert(0, lvl)
        self.up = nn.ModuleList(ups)
        self.norm_out = Norm(cin)
        self.conv_out = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for lvl in reversed(self.up):
            for blk in lvl.block:
                h = blk(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAE(nn.Module):
    def __init__(self, ch=32, ch_mult=(1, 1, 2, 2), nres=1, z=16):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, nres, z)
        self.decoder = Decoder(ch, ch_mult, nres, z)
        # Start with a narrow posterior (σ ≈ 0.05): with log-variance 0 the sampled latent is
        # mostly noise and reconstruction cannot start until the encoder has learned it away.
        with torch.no_grad():
            self.encoder.conv_out.weight[z:] *= 0.1
            self.encoder.conv_out.bias[z:] = -6.0


# ---------------------------------------------------------------------------------------------
# Frozen text encoders, from their safetensors state dicts (as the product's graphs run them).


class Clip(nn.Module):
    def __init__(self, sd, heads, act, project_pooled):
        super().__init__()
        self.heads, self.act, self.project = heads, act, project_pooled
        n = 0
        while f"text_model.encoder.layers.{n}.layer_norm1.weight" in sd:
            n += 1
        self.layers = n
        self.idx = {k: i for i, k in enumerate(sorted(sd))}
        for k, i in self.idx.items():
            self.register_buffer(f"b{i}", torch.as_tensor(sd[k], dtype=torch.float32), persistent=False)

    def _t(self, k):
        return getattr(self, f"b{self.idx[k]}")

    def _lin(self, x, k, bias=True):
        return F.linear(x, self._t(k + ".weight"), self._t(k + ".bias") if bias else None)

    def _ln(self, x, k):
        return F.layer_norm(x, (x.shape[-1],), self._t(k + ".weight"), self._t(k + ".bias"), 1e-5)

    def forward(self, ids):
        x = self._t("text_model.embeddings.token_embedding.weight")[ids]
        x = x + self._t("text_model.embeddings.position_embedding.weight")[: ids.shape[1]]
        n = ids.shape[1]
        mask = torch.full((n, n), float("-inf"), device=ids.device).triu(1)
        hidden = None
        for i in range(self.layers):
            p = f"text_model.encoder.layers.{i}"
            h = self._ln(x, p + ".layer_norm1")
            a = attention(
                self._lin(h, p + ".self_attn.q_proj"),
                self._lin(h, p + ".self_attn.k_proj"),
                self._lin(h, p + ".self_attn.v_proj"),
                self.heads,
                bias=mask,
            )
            x = x + self._lin(a, p + ".self_attn.out_proj")
            h = self._lin(self._ln(x, p + ".layer_norm2"), p + ".mlp.fc1")
            h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else F.gelu(h)
            x = x + self._lin(h, p + ".mlp.fc2")
            if i == self.layers - 2:
                hidden = x
        final = self._ln(x, "text_model.final_layer_norm")
        eos = ids.argmax(dim=-1)
        pooled = final[torch.arange(ids.shape[0], device=ids.device), eos]
        if self.project:
            pooled = F.linear(pooled, self._t("text_projection.weight"))
        return (hidden if hidden is not None else x), pooled


def _t5_bucket(rel, num_buckets=32, max_distance=128):
    n = num_buckets // 2
    ret = (rel > 0).long() * n
    d = rel.abs()
    max_exact = n // 2
    is_small = d < max_exact
    large = max_exact + (
        torch.log(d.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact) * (n - max_exact)
    ).long()
    large = torch.min(large, torch.full_like(large, n - 1))
    return ret + torch.where(is_small, d, large)


class T5(nn.Module):
    def __init__(self, sd):
        super().__init__()
        self.idx = {k: i for i, k in enumerate(sorted(sd))}
        for k, i in self.idx.items():
            self.register_buffer(f"b{i}", torch.as_tensor(sd[k], dtype=torch.float32), persistent=False)
        n = 0
        while f"encoder.block.{n}.layer.0.SelfAttention.q.weight" in sd:
            n += 1
        self.layers = n
        self.heads = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape[1]

    def _t(self, k):
        return getattr(self, f"b{self.idx[k]}")

    def _rms(self, x, k):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self._t(k)

    def forward(self, ids):
        x = self._t("encoder.embed_tokens.weight")[ids]
        n = ids.shape[1]
        pos = torch.arange(n, device=ids.device)
        bucket = _t5_bucket(pos[None, :] - pos[:, None])
        bias = self._t("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")[bucket]
        bias = bias.permute(2, 0, 1)[None]
        for i in range(self.layers):
            p = f"encoder.block.{i}.layer"
            h = self._rms(x, f"{p}.0.layer_norm.weight")
            s = f"{p}.0.SelfAttention"
            a = attention(
                F.linear(h, self._t(s + ".q.weight")),
                F.linear(h, self._t(s + ".k.weight")),
                F.linear(h, self._t(s + ".v.weight")),
                self.heads,
                bias=bias,
                scale=1.0,
            )
            x = x + F.linear(a, self._t(s + ".o.weight"))
            h = self._rms(x, f"{p}.1.layer_norm.weight")
            d = f"{p}.1.DenseReluDense"
            g = _gelu_tanh(F.linear(h, self._t(d + ".wi_0.weight")))
            x = x + F.linear(g * F.linear(h, self._t(d + ".wi_1.weight")), self._t(d + ".wo.weight"))
        return self._rms(x, "encoder.final_layer_norm.weight")


class TextEncoders(nn.Module):
    """Prompt token ids → (context [B, 154, D], pooled y [B, P]) as the product's conditioning."""

    def __init__(self, clip_l, clip_g, t5, l_cfg, g_cfg):
        super().__init__()
        self.clip_l = Clip(clip_l, l_cfg["num_attention_heads"], l_cfg["hidden_act"], False)
        self.clip_g = Clip(clip_g, g_cfg["num_attention_heads"], g_cfg["hidden_act"], True)
        self.t5 = T5(t5)
        self.context_dim = t5["encoder.embed_tokens.weight"].shape[1]
        self.pooled_dim = clip_l["text_model.final_layer_norm.weight"].shape[0] + clip_g["text_projection.weight"].shape[0]

    @torch.no_grad()
    def forward(self, l_ids, g_ids, t5_ids):
        lh, lp = self.clip_l(l_ids)
        gh, gp = self.clip_g(g_ids)
        clip = torch.cat([lh, gh], -1)
        clip = F.pad(clip, (0, self.context_dim - clip.shape[-1]))
        ctx = torch.cat([clip, self.t5(t5_ids)], 1)
        return ctx, torch.cat([lp, gp], -1)
