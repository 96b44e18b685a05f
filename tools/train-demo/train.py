"""Trains the demo SD3.5 on the drawn world (world.py) and writes it in the product's ComfyUI layout.

    python3 tools/train-demo/train.py --out DIR --minutes 8 [--resume] [--tar-to $OUT]

Phases (resumable; DIR/state.pt is written every ~90 s and at the end of every call):
  1. VAE: reconstruction (L1 + L2) + a little KL, 8× down, 16 latent channels. Then its latents are
     normalised by folding per-channel statistics into encoder.conv_out / decoder.conv_in, so the
     product's fixed SD3 latent format ((z - 0.0609) · 1.5305) gives unit-variance latents, and the
     decoder alone is fine-tuned on the folded, slightly noised latents.
  2. MMDiT: rectified-flow training (v = noise - x0) with SD3's logit-normal timesteps bent by the
     sampler's shift (3.0), 10 % caption dropout (empty prompt, as the product's unconditional
     pass), EMA of the weights. Text encoders are frozen at the seeded initialisation that
     export-text.ts writes with the product's own tiny-model generator (tools/train-demo/text/).

Every call ends by writing DIR/model (the bundled form: MMDiT in scaled fp8, VAE and text encoders
fp16), DIR/model-fp16 (everything fp16), DIR/samples-*.png (held-out captions, Python sampler) and
DIR/log.jsonl; --tar-to also packs them into .tar.gz parts of at most 15 MiB.
"""

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import struct
import sys
import tarfile
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import models  # noqa: E402
import st_io  # noqa: E402
import world  # noqa: E402
from tokenize_sd3 import SD3Tokenizer  # noqa: E402

MODEL_NAME = "atelier-demo-sd35"
CHECKPOINT = f"{MODEL_NAME}.safetensors"
T5_FILE = "t5xxl_demo.safetensors"
TEXT_DIR = os.path.join(HERE, "text")
LATENT_SCALE, LATENT_SHIFT = 1.5305, 0.0609
SHIFT = 3.0

PROFILES = {
    # The demo model. CPU cost at 256²: see README (measured with the product's ONNX Runtime path).
    "demo": dict(
        size=256, depth=4, pos_max=32, vae_ch=64, vae_mult=[1, 0.5, 1, 2], vae_nres=1,
        vae_batch=32, vae_lr=4e-4, batch=256, lr=5e-4, warmup=500,
        plan_vae_s=120, plan_mmdit_s=820, ema=0.999, echo=2, cache=200_000, cache_s=60.0, refresh=32,
        compile=True,
    ),
    # CPU smoke test: a few steps on tiny images; the artefact still loads in the product.
    "smoke": dict(
        size=64, depth=2, pos_max=8, vae_ch=64, vae_mult=[1, 0.5, 0.5, 1], vae_nres=1,
        vae_batch=4, vae_lr=4e-4, batch=4, lr=3e-4, warmup=2,
        plan_vae_s=1e9, plan_mmdit_s=1e9, ema=0.9, echo=2, cache=8, cache_s=60.0, refresh=2,
    ),
}


# Seconds kept at the end of a call for writing the scene cache (≈ 7.4 GB at 140 k rows) for the next.
CACHE_SAVE_S = 20.0


def log(out, **kv):
    kv["time"] = round(time.time(), 1)
    line = json.dumps(kv)
    print(line, flush=True)
    with open(os.path.join(out, "log.jsonl"), "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------------------------------------
# Data: scenes drawn by CPU workers, tokenized there too.


_TOKENIZER = None


def make_batch(seed, size, n, dropout):
    """n training scenes from one seed: uint8 images [n, size, size, 3] and CLIP-L, CLIP-G, T5 ids."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = SD3Tokenizer(os.path.join(TEXT_DIR, "tokenizers"))
    tok = _TOKENIZER
    rng = random.Random(seed)
    empty = tok("")
    imgs = np.empty((n, size, size, 3), dtype=np.uint8)
    ids = [[], [], []]
    for i in range(n):
        sc = world.training_scene(rng.getrandbits(48))
        imgs[i] = world.draw(sc, size)
        t = empty if rng.random() < dropout else tok(sc["caption"])
        for j in range(3):
            ids[j].append(t[j])
    return (imgs,) + tuple(np.asarray(x, dtype=np.int64) for x in ids)


class Scenes(torch.utils.data.IterableDataset):
    def __init__(self, size, batch, seed, dropout=0.0):
        self.size, self.batch, self.seed, self.dropout = size, batch, seed, dropout

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = random.Random(self.seed * 1_000_003 + wid * 7919)
        while True:
            yield tuple(torch.from_numpy(x) for x in make_batch(rng.getrandbits(48), self.size, self.batch, self.dropout))


def _make_batch_args(args):
    return make_batch(*args)


def pool_loader(size, batch, seed, workers, dropout):
    """Scenes from a process pool through pipes: no shared memory needed (small /dev/shm)."""
    import multiprocessing
    from collections import deque

    per = min(32, batch)
    k = max(1, batch // per)
    rng = random.Random(seed * 1_000_003)
    pool = multiprocessing.get_context("fork").Pool(workers)
    pending = deque(pool.apply_async(_make_batch_args, ((rng.getrandbits(48), size, per, dropout),))
                    for _ in range(3 * workers))
    try:
        while True:
            parts = []
            for _ in range(k):
                parts.append(pending.popleft().get())
                pending.append(pool.apply_async(_make_batch_args, ((rng.getrandbits(48), size, per, dropout),)))
            yield tuple(torch.from_numpy(np.concatenate([p[j] for p in parts])) for j in range(4))
    finally:
        pool.terminate()


def shm_free():
    try:
        v = os.statvfs("/dev/shm")
        return v.f_bavail * v.f_frsize
    except OSError:
        return 0


def loader(size, batch, seed, workers, dropout):
    if workers == 0:
        return iter(Scenes(size, batch, seed, dropout))
    need = workers * 2 * batch * size * size * 3 * 2  # prefetched batches, with room to spare
    if os.environ.get("ATELIER_TRAIN_LOADER") == "pool" or shm_free() < need:
        return pool_loader(size, batch, seed, workers, dropout)
    kw = dict(batch_size=None, num_workers=workers, pin_memory=torch.cuda.is_available(), prefetch_factor=2)
    return iter(torch.utils.data.DataLoader(Scenes(size, batch, seed, dropout), **kw))


def to_pixels(imgs, dev):
    return imgs.to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


# ---------------------------------------------------------------------------------------------
# Text encoders (frozen) and export


def load_text_encoders(dev):
    l, lm = st_io.read(os.path.join(TEXT_DIR, "text_encoders/clip_l.safetensors"))
    g, gm = st_io.read(os.path.join(TEXT_DIR, "text_encoders/clip_g.safetensors"))
    t5, _ = st_io.read(os.path.join(TEXT_DIR, "text_encoders", T5_FILE))
    te = models.TextEncoders(l, g, t5, json.loads(lm["atelier.config"]), json.loads(gm["atelier.config"]))
    return te.to(dev).eval()


def sd_numpy(module, prefix):
    return {prefix + k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}


def write_set(folder, mmdit_sd, vae_sd, cfg, fp8, train_state=None):
    for sub in ("checkpoints", "text_encoders", "tokenizers"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    tensors = []
    for k, v in mmdit_sd.items():
        if fp8 and st_io.quantizable(k, v):
            tensors += st_io.scaled_fp8(k, v)
        else:
            tensors.append((k, "F16", v.astype(np.float16)))
    if fp8:
        tensors.append(("model.diffusion_model.scaled_fp8", "F8_E4M3", np.zeros(0, dtype=np.uint8)))
    tensors += [(k, "F16", v.astype(np.float16)) for k, v in vae_sd.items()]
    config = {
        "mmdit": {
            "depth": cfg["depth"],
            "hidden_size": 64 * cfg["depth"],
            "num_heads": cfg["depth"],
            "patch_size": 2,
            "pos_embed_max_size": cfg["pos_max"],
        },
        "vae": {"ch": cfg["vae_ch"], "ch_mult": cfg["vae_mult"], "num_res_blocks": cfg["vae_nres"], "z_channels": 16},
        "trained_on": "tools/train-demo (drawn world)",
    }
    st_io.write(
        os.path.join(folder, "checkpoints", CHECKPOINT),
        tensors,
        dict(
            {"format": "pt", "atelier.model": MODEL_NAME, "atelier.config": json.dumps(config)},
            **({"atelier.train_state": json.dumps(train_state)} if train_state else {}),
        ),
    )
    for f in ("clip_l.safetensors", "clip_g.safetensors", T5_FILE):
        shutil.copyfile(os.path.join(TEXT_DIR, "text_encoders", f), os.path.join(folder, "text_encoders", f))
    dst = os.path.join(folder, "tokenizers")
    for kind in ("clip", "t5"):
        os.makedirs(os.path.join(dst, kind), exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(TEXT_DIR, "tokenizers", kind, f), os.path.join(dst, kind, f))


# ---------------------------------------------------------------------------------------------
# Sampling (previews): the product's schedule and Euler sampler with CFG.


def adamw(params, lr):
    """AdamW, fused into one kernel per step on CUDA where this torch has it (the MMDiT's many small
    tensors otherwise cost a launch each); the state dict is the same either way, so resuming works."""
    params = [p for p in params if p.requires_grad]
    kw = dict(lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    if params and params[0].is_cuda:
        try:
            return torch.optim.AdamW(params, fused=True, **kw)
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(params, **kw)


# Where the MMDiT's step time goes, in a run's first call only (the window and its trace cost ≈ 10 s,
# 230 steps): a profiler window of PROFILE_STEPS steps after PROFILE_AT steps of the call (past the
# compiler's warm-up), logged as the top kernels per step.
PROFILE_AT, PROFILE_STEPS = 300, 16


def start_profile():
    try:
        prof = torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
        prof.__enter__()
        torch.cuda.synchronize()
        return prof, time.time()
    except Exception:  # noqa: BLE001 - diagnostics must never cost the run
        return None, 0.0


def log_profile(out, prof, t0, steps):
    """The window's wall time per step and its top kernels (device time per step), in log.jsonl."""
    try:
        torch.cuda.synchronize()
        wall = (time.time() - t0) / steps
        prof.__exit__(None, None, None)
        events = prof.key_averages()

        def device_us(e, own=True):
            for name in (("self_device_time_total", "self_cuda_time_total") if own
                         else ("device_time_total", "cuda_time_total")):
                if hasattr(e, name):
                    return float(getattr(e, name))
            return 0.0

        kernels = sorted(events, key=device_us, reverse=True)
        total = sum(device_us(e) for e in events)
        top = [{"name": e.key[:90], "ms_per_step": round(device_us(e) / 1000 / steps, 3), "calls": e.count // steps}
               for e in kernels[:25] if device_us(e) > 0]
        # Device time by kind of kernel (names only; aten ops' own time is their kernels', so the
        # kinds count kernel names, not ops), to tell compute from memory passes and the optimizer.
        kinds = {"triton (compiled fusions)": ("triton",), "gemm": ("gemm", "nvjet", "sm90_xmma", "cutlass", "gemv"),
                 "attention": ("sdpa", "flash", "attention"), "conv (VAE refresh)": ("conv", "implicit_gemm"),
                 "optimizer": ("adam", "foreach", "multi_tensor"), "norm": ("norm",),
                 "copy / cast": ("copy", "cast", "memcpy", "memset"), "elementwise": ("elementwise", "vectorized")}
        by_kind = {k: 0.0 for k in [*kinds, "other"]}
        for e in events:
            if e.key.startswith("aten::") or e.key in ("cache.batch", "train_step") or device_us(e) <= 0:
                continue
            name = e.key.lower()
            kind = next((k for k, pats in kinds.items() if any(pt in name for pt in pats)), "other")
            by_kind[kind] += device_us(e) / 1000 / steps
        by_kind = {k: round(v, 2) for k, v in by_kind.items() if v > 0}
        regions = {e.key: round(device_us(e, own=False) / 1000 / steps, 3) for e in events
                   if e.key in ("cache.batch", "train_step")}
        log(out, event="profile", steps=steps, wall_ms_per_step=round(1000 * wall, 2),
            device_ms_per_step=round(total / 1000 / steps, 2), regions=regions, kernels_by_kind=by_kind, top=top)
    except Exception as e:  # noqa: BLE001
        log(out, event="profile failed", error=str(e).split("\n")[0][:200])


def sigma_of(t, shift=SHIFT):
    t = t / 1000.0
    return shift * t / (1 + (shift - 1) * t)


def get_sigmas(steps, shift=SHIFT):
    smin = sigma_of(1.0, shift)
    ts = np.linspace(1000.0, smin * 1000.0, steps, dtype=np.float32)
    return [float(sigma_of(t, shift)) for t in ts] + [0.0]


class SceneCache:
    """Encoded scenes kept on the training device: latents (sampler space) and text conditioning in
    fp16, drawn without caption dropout (applied per step). Steps draw random rows from all of it,
    and every `refresh` steps one fresh batch from the loader replaces the oldest rows, so the set
    keeps moving while drawing and the VAE encoder run once per `refresh` steps, not every step."""

    def __init__(self, data, encode, rows, seconds, refresh, saved=None):
        t0 = time.time()
        if saved is not None:
            # A previous call's cache (its last state, refreshed rows included): no fill.
            self.lat, self.ctx, self.y = (saved[k] for k in ("lat", "ctx", "y"))
            self.next_row = int(saved["next_row"])
        else:
            parts = []
            got = 0
            while got < rows and (got == 0 or time.time() - t0 < seconds):
                lat, ctx, y = encode(next(data))
                parts.append((lat.half(), ctx.half(), y.half()))
                got += lat.shape[0]
            self.lat, self.ctx, self.y = (torch.cat([p[j] for p in parts])[:rows] for j in range(3))
            self.next_row = 0
        self.rows = self.lat.shape[0]
        self.data, self.encode, self.refresh = data, encode, refresh
        self.steps = 0
        self.build_s = time.time() - t0

    def save(self, path):
        """For the next call on a still-warm machine (runs/ stays): loading it costs seconds where
        filling costs the minute `cache_s` allows."""
        tmp = path + ".tmp"
        torch.save({"lat": self.lat.cpu(), "ctx": self.ctx.cpu(), "y": self.y.cpu(), "next_row": self.next_row}, tmp)
        os.replace(tmp, path)

    @staticmethod
    def load(path, dev, lat_shape, ctx_width):
        """The saved cache when it fits this run's latents and conditioning, else None."""
        if not os.path.exists(path):
            return None
        saved = torch.load(path, map_location=dev)
        if tuple(saved["lat"].shape[1:]) != tuple(lat_shape) or saved["ctx"].shape[-1] != ctx_width:
            return None
        return saved

    def batch(self, b, dev):
        if self.refresh and self.steps and self.steps % self.refresh == 0:
            lat, ctx, y = self.encode(next(self.data))
            n = min(lat.shape[0], self.rows)
            rows = (torch.arange(n, device=self.lat.device) + self.next_row) % self.rows
            self.lat[rows], self.ctx[rows], self.y[rows] = lat[:n].half(), ctx[:n].half(), y[:n].half()
            self.next_row = (self.next_row + n) % self.rows
        self.steps += 1
        idx = torch.randint(self.rows, (b,), device=self.lat.device)
        return self.lat[idx].float(), self.ctx[idx].float(), self.y[idx].float()


@torch.no_grad()
def sample(mmdit, vae, te, tok, captions, size, steps, cfg_scale, seed, dev):
    n = len(captions)
    toks = [tok(c) for c in captions] + [tok("")] * n
    ids = [torch.tensor([t[j] for t in toks], dtype=torch.long, device=dev) for j in range(3)]
    ctx, y = te(*ids)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, size // 8, size // 8, generator=gen).to(dev)
    sig = get_sigmas(steps)
    for i in range(steps):
        s = torch.full((2 * n,), sig[i], device=dev)
        v = mmdit(torch.cat([x, x]), s * 1000, y, ctx).float()
        vc, vu = v[:n], v[n:]
        v = vu + cfg_scale * (vc - vu)
        x = x + (sig[i + 1] - sig[i]) * v
    img = vae.decoder(x / LATENT_SCALE + LATENT_SHIFT).float()
    return ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def grid(images, cols):
    n, h, w, c = images.shape
    rows = (n + cols - 1) // cols
    g = np.full((rows * h, cols * w, c), 255, dtype=np.uint8)
    for i in range(n):
        g[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = images[i]
    return g


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of this call, export included")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/state.pt if it is there")
    ap.add_argument("--last-call", action="store_true",
                    help="this call ends the MMDiT's plan: the learning rate anneals by this call's deadline, whatever the planned seconds")
    ap.add_argument("--profile", default="demo", choices=sorted(PROFILES))
    ap.add_argument("--smoke", action="store_true", help="= --profile smoke --vae-steps 3 --mmdit-steps 3 --workers 0")
    ap.add_argument("--vae-steps", type=int, help="stop the VAE phase after this many steps (instead of its time plan)")
    ap.add_argument("--mmdit-steps", type=int, help="stop after this many MMDiT steps in this call")
    ap.add_argument("--plan-vae-seconds", type=float, help="training seconds planned for the VAE (all calls)")
    ap.add_argument("--plan-mmdit-seconds", type=float, help="training seconds planned for the MMDiT (all calls)")
    ap.add_argument("--depth", type=int, help="MMDiT joint blocks (hidden = 64 · depth); default: the profile's")
    ap.add_argument("--batch", type=int, help="MMDiT batch")
    ap.add_argument("--lr", type=float, help="MMDiT peak learning rate (a continued run may want less); default: the profile's")
    ap.add_argument("--vae-batch", type=int)
    ap.add_argument("--echo", type=int, help="MMDiT steps per drawn batch (data echoing); default: the profile's")
    ap.add_argument("--cache", type=int, help="scenes kept encoded on the device (0: off, echo instead); default: the profile's")
    ap.add_argument("--cache-seconds", type=float, help="stop filling the cache after this long")
    ap.add_argument("--refresh", type=int, help="with --cache: one fresh batch replaces old rows every N steps")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile the MMDiT's training step (falls back to eager); default: the profile's")
    ap.add_argument("--workers", type=int, default=max(0, min(15, (os.cpu_count() or 1) - 1)))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tar-to", help="also pack the artefact into <dir>/demo-model.tar.gz.partNN (≤ 15 MiB each)")
    ap.add_argument("--preview-steps", default="4,8,20")
    ap.add_argument("--no-preflight", action="store_true",
                    help="demo profile, fresh start: skip the 4-step run of every stage (export, previews, tar included) into OUT/preflight that first checks the whole path on this machine")
    a = ap.parse_args()
    if a.smoke:
        a.profile = "smoke"
        a.vae_steps = a.vae_steps or 3
        a.mmdit_steps = a.mmdit_steps or 3
        a.workers = 0
        a.preview_steps = "2" if a.preview_steps == "4,8,20" else a.preview_steps
    cfg = dict(PROFILES[a.profile])
    if a.depth:
        cfg["depth"] = a.depth
    if a.batch:
        cfg["batch"] = a.batch
    if a.lr:
        cfg["lr"] = a.lr
    if a.vae_batch:
        cfg["vae_batch"] = a.vae_batch
    if a.echo:
        cfg["echo"] = a.echo
    if a.cache is not None:
        cfg["cache"] = a.cache
    if a.cache_seconds is not None:
        cfg["cache_s"] = a.cache_seconds
    if a.refresh is not None:
        cfg["refresh"] = a.refresh
    if a.compile is not None:
        cfg["compile"] = a.compile
    if a.plan_vae_seconds is not None:
        cfg["plan_vae_s"] = a.plan_vae_seconds
    if a.plan_mmdit_seconds is not None:
        cfg["plan_mmdit_s"] = a.plan_mmdit_seconds

    t_start = time.time()
    reserve = 45.0 if a.profile == "demo" else 0.0  # export + previews + tar
    deadline = t_start + a.minutes * 60 - reserve
    os.makedirs(a.out, exist_ok=True)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    torch.manual_seed(a.seed)

    # A resumed run keeps the widths it started with.
    state_path = os.path.join(a.out, "state.pt")
    fp16_ckpt = os.path.join(a.out, "model-fp16", "checkpoints", CHECKPOINT)
    if a.resume and (os.path.exists(state_path) or os.path.exists(fp16_ckpt)):
        if os.path.exists(state_path):
            try:
                early = torch.load(state_path, map_location="cpu", weights_only=False)["st"]
            except TypeError:  # torch without weights_only
                early = torch.load(state_path, map_location="cpu")["st"]
        else:
            early = json.loads(st_io.read(fp16_ckpt)[1].get("atelier.train_state", "{}"))
        if "depth" in early and early["depth"] != cfg["depth"]:
            log(a.out, event=f"resuming with the run's depth {early['depth']} (not {cfg['depth']})")
            cfg["depth"] = early["depth"]

    fresh = not (a.resume and (os.path.exists(state_path) or os.path.exists(fp16_ckpt)))
    preflight = None
    if a.profile == "demo" and fresh and not a.no_preflight and a.vae_steps is None:
        # Every stage for a few steps, so a problem on this machine shows within a minute, not at
        # the end. It runs beside the VAE phase (it took 52 s of the call when it ran first) and
        # is waited for before the MMDiT's; a failure ends the call at once. Its MMDiT steps run at
        # the run's batch and compiled when the run compiles, so the compiler's on-disk caches are
        # warm when the MMDiT phase starts (compiling took 44 s of the first call's MMDiT time).
        import subprocess

        preflight = (time.time(), subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--out", os.path.join(a.out, "preflight"), "--profile", "demo",
             "--vae-steps", "4", "--mmdit-steps", "4", "--batch", str(cfg["batch"]), "--vae-batch", "4",
             "--workers", "2", "--preview-steps", "2", "--minutes", "4", "--no-preflight",
             "--compile" if cfg.get("compile") and cuda else "--no-compile", "--cache", "64",
             "--tar-to", os.path.join(a.out, "preflight", "tar")]
            + (["--depth", str(a.depth)] if a.depth else []),
            stdout=subprocess.DEVNULL))

    def preflight_check(wait):
        """None while it runs; raises when it failed; logs and forgets it once it passed."""
        nonlocal preflight
        if preflight is None:
            return
        t, proc = preflight
        code = proc.wait() if wait else proc.poll()
        if code is None:
            return
        preflight = None
        if code != 0:
            raise SystemExit(f"preflight failed (exit {code}): see {os.path.join(a.out, 'preflight', 'log.jsonl')}")
        shutil.rmtree(os.path.join(a.out, "preflight"), ignore_errors=True)
        log(a.out, event="preflight passed", seconds=round(time.time() - t, 1))

    te = load_text_encoders(dev)
    vae = models.VAE(cfg["vae_ch"], cfg["vae_mult"], cfg["vae_nres"]).to(dev)
    mmdit = models.MMDiT(cfg["depth"], te.context_dim, te.pooled_dim, pos_max=cfg["pos_max"]).to(dev)
    ema = models.MMDiT(cfg["depth"], te.context_dim, te.pooled_dim, pos_max=cfg["pos_max"]).to(dev)
    ema.load_state_dict(mmdit.state_dict())
    ema.requires_grad_(False)
    opt = adamw(mmdit.parameters(), lr=cfg["lr"])
    st = dict(phase="vae", vae_step=0, vae_s=0.0, dec_step=0, step=0, mmdit_s=0.0, calls=0, profile=a.profile,
              depth=cfg["depth"])

    def vae_optimizer():
        if st["phase"] == "vae":
            return adamw(vae.parameters(), lr=cfg["vae_lr"])
        vae.encoder.requires_grad_(False)
        return adamw(vae.decoder.parameters(), lr=cfg["vae_lr"] / 2)

    ck = None
    if a.resume and os.path.exists(state_path):
        try:
            ck = torch.load(state_path, map_location=dev, weights_only=False)
        except TypeError:  # torch without weights_only
            ck = torch.load(state_path, map_location=dev)
        if ck["st"]["profile"] != a.profile:
            sys.exit(f"{state_path} is of profile {ck['st']['profile']}, not {a.profile}")
        st = ck["st"]
        vae.load_state_dict(ck["vae"])
        mmdit.load_state_dict(ck["mmdit"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        log(a.out, event="resumed", **st)
    elif a.resume and os.path.exists(os.path.join(a.out, "model-fp16", "checkpoints", CHECKPOINT)):
        # A cold machine: no state.pt, but the fp16 artefact of an earlier call was carried back.
        # Its metadata holds the counters; the optimizer starts afresh (with a short warm-up).
        sd, meta = st_io.read(os.path.join(a.out, "model-fp16", "checkpoints", CHECKPOINT))
        saved = json.loads(meta.get("atelier.train_state", "null"))
        if not saved or saved.get("profile") != a.profile or saved.get("phase") != "mmdit":
            sys.exit("model-fp16 has no usable atelier.train_state (profile/phase): cannot resume from it")
        P, V = "model.diffusion_model.", "first_stage_model."
        msd = {k[len(P):]: torch.from_numpy(v.astype(np.float32)) for k, v in sd.items() if k.startswith(P)}
        mmdit.load_state_dict(msd)
        ema.load_state_dict(msd)
        vae.load_state_dict({k[len(V):]: torch.from_numpy(v.astype(np.float32)) for k, v in sd.items() if k.startswith(V)})
        st = saved
        st["rewarm_from"] = st["step"]
        log(a.out, event="resumed from model-fp16 (optimizer reset)", **st)
    elif a.resume:
        log(a.out, event="no state to resume; starting afresh")
    vae_opt = vae_optimizer()
    if ck is not None and ck.get("vae_opt") is not None and st["phase"] in ("vae", "decoder"):
        vae_opt.load_state_dict(ck["vae_opt"])
    del ck
    st["calls"] += 1
    n_params = sum(p.numel() for p in mmdit.parameters())
    log(a.out, event="start", device=str(dev), torch=torch.__version__, mmdit_params=n_params,
        vae_params=sum(p.numel() for p in vae.parameters()), cfg=cfg, workers=a.workers,
        shm_free=shm_free(), loader_env=os.environ.get("ATELIER_TRAIN_LOADER"))

    def save():
        tmp = state_path + ".tmp"
        torch.save(dict(st=st, vae=vae.state_dict(), mmdit=mmdit.state_dict(), ema=ema.state_dict(),
                        vae_opt=vae_opt.state_dict() if st["phase"] != "mmdit" else None,
                        opt=opt.state_dict()), tmp)
        os.replace(tmp, state_path)

    def joint_done():
        if a.vae_steps is not None:
            return st["vae_step"] >= max(1, (2 * a.vae_steps + 2) // 3)
        return st["vae_s"] >= 0.75 * cfg["plan_vae_s"]

    def vae_done():
        if a.vae_steps is not None:
            return st["vae_step"] + st["dec_step"] >= a.vae_steps
        return st["vae_s"] >= cfg["plan_vae_s"]

    last_save = time.time()
    size = cfg["size"]

    # ---- phase 1: VAE, then the decoder alone on folded latents --------------------------------
    if st["phase"] in ("vae", "decoder"):
        data = loader(size, cfg["vae_batch"], a.seed * 100 + st["calls"], a.workers, 0.0)
        vae.train()
        t0 = time.time()
        while time.time() < deadline:
            if st["vae_step"] % 20 == 0:
                preflight_check(wait=False)
            if st["phase"] == "vae" and joint_done():
                fold_latents(vae, data, dev, amp, cfg, a.out)
                st["phase"] = "decoder"
                vae_opt = vae_optimizer()
                t0 = time.time()
            if st["phase"] == "decoder" and vae_done():
                st["phase"] = "mmdit"
                break
            imgs, *_ = next(data)
            x = to_pixels(imgs, dev)
            with amp():
                if st["phase"] == "vae":
                    h = vae.encoder(x).float()
                    mean, logvar = h.chunk(2, dim=1)
                    logvar = logvar.clamp(-30, 20)
                    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
                    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
                else:
                    with torch.no_grad():
                        mean = vae.encoder(x).float()[:, :16]
                    # Folded latents; noise in the sampler's space makes the decoder forgiving.
                    z = mean + torch.randn_like(mean) * (0.05 / LATENT_SCALE)
                    kl = torch.zeros((), device=dev)
                rec = vae.decoder(z).float()
            loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
            vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            vae_opt.step()
            key = "vae_step" if st["phase"] == "vae" else "dec_step"
            st[key] += 1
            now = time.time()
            st["vae_s"] += now - t0
            t0 = now
            if st[key] % 100 == 0 or a.vae_steps is not None:
                log(a.out, phase=st["phase"], step=st[key], loss=round(loss.item(), 5), kl=round(kl.item(), 3),
                    vae_s=round(st["vae_s"], 1))
            if now - last_save > 90:
                save()
                last_save = now
        del data
        save()

    # ---- phase 2: MMDiT ----------------------------------------------------------------------
    preflight_check(wait=True)
    vae.eval().requires_grad_(False)
    steps_this_call = 0
    if st["phase"] == "mmdit" and time.time() < deadline:
        cached = cfg.get("cache", 0) > 0
        # With the cache, caption dropout is applied per step (the cache holds real captions).
        data = loader(size, cfg["batch"], a.seed * 100 + 50 + st["calls"], a.workers, 0.0 if cached else 0.1)

        @torch.no_grad()
        def encode(batch):
            imgs, l, g, t5 = batch
            x = to_pixels(imgs, dev)
            with amp():
                mean = vae.encoder(x).float()[:, :16]
            ctx, y = te(l.to(dev), g.to(dev), t5.to(dev))
            return (mean - LATENT_SHIFT) * LATENT_SCALE, ctx, y

        cache = None
        cache_path = os.path.join(a.out, "cache.pt")
        if cached:
            empty = SD3Tokenizer(os.path.join(TEXT_DIR, "tokenizers"))("")
            ctx_empty, y_empty = te(*(torch.tensor([empty[j]], dtype=torch.long, device=dev) for j in range(3)))
            saved = SceneCache.load(cache_path, dev, (16, size // 8, size // 8), ctx_empty.shape[-1])
            cache = SceneCache(data, encode, cfg["cache"], cfg["cache_s"], cfg["refresh"], saved)
            loaded = saved is not None
            del saved
            log(a.out, event="cache", rows=cache.rows, seconds=round(cache.build_s, 1), refresh=cfg["refresh"],
                loaded=loaded)
        if a.last_call:
            # The plan is an estimate made before the first call; the last call knows how many
            # training seconds are left, so the cosine decay ends exactly when the call does.
            cfg["plan_mmdit_s"] = st["mmdit_s"] + max(1.0, deadline - time.time())
            log(a.out, event="last call: the plan ends with it", plan_mmdit_s=round(cfg["plan_mmdit_s"], 1))
        # A call that will end before the plan does keeps its cache for the next one.
        keep_cache = (cache is not None and not a.last_call
                      and st["mmdit_s"] + (deadline - time.time()) < cfg["plan_mmdit_s"])
        if keep_cache:
            deadline -= CACHE_SAVE_S
        forward = mmdit
        if cfg.get("compile") and cuda and hasattr(torch, "compile"):
            forward = torch.compile(mmdit)
            log(a.out, event="compiling the MMDiT (the first steps wait for it)")

        def train_loss(fwd):
            opt.zero_grad(set_to_none=True)
            with amp():
                v = fwd(xt, sigma * 1000, y, ctx)
            loss = F.mse_loss(v.float(), target)
            loss.backward()
            return loss
        mmdit.train()
        prof = None
        t0 = time.time()
        while time.time() < deadline:
            if a.mmdit_steps is not None and steps_this_call >= a.mmdit_steps:
                break
            if cuda and st["calls"] == 1 and steps_this_call == PROFILE_AT:
                prof, prof_t0 = start_profile()
            elif prof is not None and steps_this_call == PROFILE_AT + PROFILE_STEPS:
                log_profile(a.out, prof, prof_t0, PROFILE_STEPS)
                prof = None
            if cache is not None:
                with torch.profiler.record_function("cache.batch"):
                    lat, ctx, y = cache.batch(cfg["batch"], dev)
                drop = torch.rand(lat.shape[0], device=dev) < 0.1
                ctx = torch.where(drop.view(-1, 1, 1), ctx_empty.float(), ctx)
                y = torch.where(drop.view(-1, 1), y_empty.float(), y)
            # Data echoing: each drawn batch serves `echo` steps with fresh timesteps and noise, so
            # drawing, tokenizing and the VAE encoder (as costly as the MMDiT's own step at 256²)
            # run once per `echo` steps.
            elif steps_this_call % cfg.get("echo", 1) == 0:
                lat, ctx, y = encode(next(data))
            with torch.no_grad():
                b = lat.shape[0]
                t = torch.sigmoid(torch.randn(b, device=dev))
                sigma = SHIFT * t / (1 + (SHIFT - 1) * t)
                noise = torch.randn_like(lat)
                s4 = sigma.view(b, 1, 1, 1)
                xt = (1 - s4) * lat + s4 * noise
                target = noise - lat
            frac = st["mmdit_s"] / cfg["plan_mmdit_s"]
            lr = cfg["lr"] * min(1.0, (st["step"] + 1 - st.get("rewarm_from", 0)) / cfg["warmup"])
            if frac > 0.55:
                lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - 0.55) / 0.45)))
            for pg in opt.param_groups:
                pg["lr"] = lr
            try:
                with torch.profiler.record_function("train_step"):
                    loss = train_loss(forward)
            except Exception as e:  # noqa: BLE001 - a compiler failure (forward or backward) must not cost the call
                if forward is mmdit:
                    raise
                log(a.out, event="compile failed; eager from here", error=str(e).split("\n")[0][:300])
                forward = mmdit
                loss = train_loss(forward)
            gn = torch.nn.utils.clip_grad_norm_(mmdit.parameters(), 1.0)
            opt.step()
            st["step"] += 1
            steps_this_call += 1
            d = min(cfg["ema"], (1 + st["step"]) / (10 + st["step"]))
            with torch.no_grad():
                ep, mp = list(ema.parameters()), [p.detach() for p in mmdit.parameters()]
                torch._foreach_mul_(ep, d)
                torch._foreach_add_(ep, mp, alpha=1 - d)
            now = time.time()
            st["mmdit_s"] += now - t0
            t0 = now
            if st["step"] % 100 == 0 or a.mmdit_steps is not None:
                log(a.out, phase="mmdit", step=st["step"], loss=round(loss.item(), 5), grad=round(float(gn), 3),
                    lr=round(lr, 7), mmdit_s=round(st["mmdit_s"], 1))
            if now - last_save > 90:
                save()
                last_save = now
        del data
        save()
        if keep_cache:
            t_save = time.time()
            cache.save(cache_path)
            log(a.out, event="cache saved", rows=cache.rows, seconds=round(time.time() - t_save, 1))

    # ---- export ------------------------------------------------------------------------------
    ema.eval()
    msd = sd_numpy(ema, "model.diffusion_model.")
    vsd = sd_numpy(vae, "first_stage_model.")
    write_set(os.path.join(a.out, "model"), msd, vsd, cfg, fp8=True)
    write_set(os.path.join(a.out, "model-fp16"), msd, vsd, cfg, fp8=False, train_state=st)
    sizes = {
        name: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(a.out, name)) for f in fs)
        for name in ("model", "model-fp16")
    }
    log(a.out, event="exported", bytes=sizes, **st)

    if st["phase"] == "mmdit" and st["step"] > 0:
        tok = SD3Tokenizer(os.path.join(TEXT_DIR, "tokenizers"))
        held = world.held_out(16)
        caps = [s["caption"] for s in held]
        truth = np.stack([world.draw(s, size) for s in held])
        with open(os.path.join(a.out, "samples.txt"), "w") as f:
            f.write("\n".join(caps) + "\n")
        write_png(os.path.join(a.out, "samples-truth.png"), grid(truth, 4))
        for steps in [int(s) for s in a.preview_steps.split(",") if s]:
            with amp():
                imgs = sample(ema, vae, te, tok, caps, size, steps, 4.5, 0, dev)
            write_png(os.path.join(a.out, f"samples-{steps}steps.png"), grid(imgs, 4))
        log(a.out, event="previews", steps=a.preview_steps)

    if a.tar_to:
        pack(a.out, a.tar_to)
    log(a.out, event="done", seconds=round(time.time() - t_start, 1))


@torch.no_grad()
def fold_latents(vae, data, dev, amp, cfg, out):
    """Per-channel latent mean/std folded into the encoder's output and the decoder's input, so
    that (z − 0.0609) · 1.5305 is about N(0, 1) per channel."""
    vae.eval()
    means = []
    n = 0
    while n < (2048 if dev.type == "cuda" else 16):
        imgs, *_ = next(data)
        with amp():
            means.append(vae.encoder(to_pixels(imgs, dev)).float()[:, :16])
        n += imgs.shape[0]
    m = torch.cat(means)
    mu = m.mean(dim=(0, 2, 3))
    sd = m.std(dim=(0, 2, 3)).clamp(min=1e-3)
    a_c = sd * LATENT_SCALE  # z = (z' − shift) · a_c + mu
    co = vae.encoder.conv_out
    co.weight[:16] /= a_c.view(-1, 1, 1, 1)
    co.bias[:16] = (co.bias[:16] - mu) / a_c + LATENT_SHIFT
    co.bias[16:] -= 2 * torch.log(a_c)
    ci = vae.decoder.conv_in
    const = (mu - LATENT_SHIFT * a_c).view(1, -1, 1, 1)
    ci.bias += (ci.weight * const).sum(dim=(1, 2, 3))
    ci.weight *= a_c.view(1, -1, 1, 1)
    vae.train()
    log(out, event="latents folded", mean=[round(float(v), 3) for v in mu], std=[round(float(v), 3) for v in sd])


def pack(out, dest):
    os.makedirs(dest, exist_ok=True)
    tmp = os.path.join(out, "demo-model.tar.gz")
    with tarfile.open(tmp, "w:gz") as tf:
        for name in ("model", "model-fp16", "log.jsonl", "samples.txt"):
            if os.path.exists(os.path.join(out, name)):
                tf.add(os.path.join(out, name), arcname=name)
        for f in sorted(os.listdir(out)):
            if f.endswith(".png"):
                tf.add(os.path.join(out, f), arcname=f)
    part = 15 * 1024 * 1024
    with open(tmp, "rb") as f:
        i = 0
        while True:
            b = f.read(part)
            if not b:
                break
            with open(os.path.join(dest, f"demo-model.tar.gz.part{i:02d}"), "wb") as g:
                g.write(b)
            i += 1
    os.remove(tmp)


if __name__ == "__main__":
    main()
