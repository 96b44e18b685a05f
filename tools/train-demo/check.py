"""Runs a written artefact in PyTorch (the trainer's own model code) for the test that compares it
with the product's pipeline (test/tools/train-demo.test.ts):

    python3 tools/train-demo/check.py MODEL_DIR < request.json > result.json

request: {"prompts": [positive, negative], "noise": [...], "shape": [16, h, w], "sigmas": [...],
"guidance": g, "captions": [...]}. result: the tokens of each caption, the conditioning of the two
prompts, the Euler/CFG-sampled latent (process_out'ed, as the product's `sample`) and the decoded
image (uint8 RGB, as the product's)."""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import models  # noqa: E402
import st_io  # noqa: E402
from tokenize_sd3 import SD3Tokenizer  # noqa: E402

LATENT_SCALE, LATENT_SHIFT = 1.5305, 0.0609


def load(model_dir):
    ckpt = os.path.join(model_dir, "checkpoints")
    path = os.path.join(ckpt, sorted(f for f in os.listdir(ckpt) if f.endswith(".safetensors"))[0])
    sd, meta = st_io.read(path)
    cfg = json.loads(meta["atelier.config"])
    te_dir = os.path.join(model_dir, "text_encoders")
    l, lm = st_io.read(os.path.join(te_dir, "clip_l.safetensors"))
    g, gm = st_io.read(os.path.join(te_dir, "clip_g.safetensors"))
    t5f = [f for f in os.listdir(te_dir) if f.startswith("t5xxl")][0]
    t5, _ = st_io.read(os.path.join(te_dir, t5f))
    te = models.TextEncoders(l, g, t5, json.loads(lm["atelier.config"]), json.loads(gm["atelier.config"]))
    P = "model.diffusion_model."
    depth = sd[P + "x_embedder.proj.weight"].shape[0] // 64
    pos_max = int(round(sd[P + "pos_embed"].shape[1] ** 0.5))
    mmdit = models.MMDiT(depth, te.context_dim, te.pooled_dim, pos_max=pos_max)
    mmdit.load_state_dict({k[len(P):]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in sd.items()
                           if k.startswith(P) and not k.endswith(("scale_weight", "scaled_fp8"))})
    v = cfg["vae"]
    vae = models.VAE(v["ch"], v["ch_mult"], v["num_res_blocks"])
    V = "first_stage_model."
    vae.load_state_dict({k[len(V):]: torch.from_numpy(np.asarray(x, dtype=np.float32)) for k, x in sd.items()
                         if k.startswith(V)})
    tok = SD3Tokenizer(os.path.join(model_dir, "tokenizers"))
    return mmdit.eval(), vae.eval(), te.eval(), tok


@torch.no_grad()
def main():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model_dir = sys.argv[1]
    req = json.load(sys.stdin)
    mmdit, vae, te, tok = load(model_dir)
    out = {"tokens": [tok(c) for c in req.get("captions", [])]}
    if "prompts" in req:
        toks = [tok(p) for p in req["prompts"]]
        ids = [torch.tensor([t[j] for t in toks], dtype=torch.long) for j in range(3)]
        ctx, y = te(*ids)
        out["context"] = ctx.reshape(len(toks), -1).tolist()
        out["y"] = y.tolist()
        c, h, w = req["shape"]
        x = torch.tensor(req["noise"], dtype=torch.float32).view(1, c, h, w)
        sig = req["sigmas"]
        x = x * sig[0]  # noise_scaling for txt2img: σ0 · noise
        for i in range(len(sig) - 1):
            s = torch.full((2,), float(sig[i]))
            v = mmdit(torch.cat([x, x]), s * 1000, y, ctx)
            v = v[1:] + req["guidance"] * (v[:1] - v[1:])
            x = x + (sig[i + 1] - sig[i]) * v
        lat = x / LATENT_SCALE + LATENT_SHIFT
        out["latent"] = lat.flatten().tolist()
        img = vae.decoder(lat)
        out["image"] = (((img + 1) / 2).clamp(0, 1) * 255).floor().byte()[0].permute(1, 2, 0).flatten().tolist()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
