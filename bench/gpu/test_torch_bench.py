"""CPU test of torch_bench.py on the tiny weights: the reference builds every model from our files
(key names and shapes checked), and the rows come out as the results format wants them. Needs a
Python with torch (any version from 1.13; here Debian's python3-torch):

  /usr/bin/python3 -m unittest discover -s bench/gpu -p 'test_torch_bench.py'

Where the GPU machine has packages this one lacks, the test stands in for them, inside the test
only: `safetensors` by a reader over st_io, and F.scaled_dot_product_attention (torch < 2.0) by
its textbook formula.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import make_weights  # noqa: E402
import ref_shims  # noqa: E402
import st_io  # noqa: E402
import torch_bench  # noqa: E402


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    weights = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)
    if attn_mask is not None:
        weights = weights + attn_mask
    return torch.softmax(weights, dim=-1) @ v


class _SafeOpen:
    """safetensors.safe_open over st_io, for the calls the reference makes (keys, get_tensor)."""

    def __init__(self, path, framework="pt", device="cpu"):
        self.path = path
        self.entries, _, self.start = st_io.read_header(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return list(self.entries)

    def get_tensor(self, name):
        entry = self.entries[name]
        array = st_io.read_array(self.path, entry, self.start)
        if entry.dtype == "BF16":
            return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(array.copy())


def stand_in_for_missing_packages():
    if not hasattr(F, "scaled_dot_product_attention"):
        F.scaled_dot_product_attention = _sdpa
    try:
        import safetensors  # noqa: F401
    except ImportError:
        module = types.ModuleType("safetensors")
        module.safe_open = _SafeOpen
        sys.modules["safetensors"] = module


def read_text(path):
    with open(path) as f:
        return f.read().strip()


def read_json(path):
    with open(path) as f:
        return json.load(f)


def quiet(fn, *args):
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        return fn(*args)


class TorchBenchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        stand_in_for_missing_packages()
        cls.ref = os.path.join(ROOT, ".gpu", "ref")
        if not os.path.isfile(os.path.join(cls.ref, "sd3_impls.py")):
            subprocess.run(["bash", os.path.join(HERE, "fetch-reference.sh"), cls.ref], check=True, cwd=ROOT)
        cls.dir = tempfile.mkdtemp(prefix="atelier-torch-bench-")
        cls.models = os.path.join(cls.dir, "models")
        quiet(make_weights.main, [cls.models, "--tiny", "--precisions", "fp16"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def bench(self, out, *extra):
        argv = ["--models-dir", self.models, "--out", out, "--ref-dir", self.ref, "--device", "cpu", "--dtype", "fp32"]
        argv += ["--width", "128", "--height", "128", "--encoder-runs", "1", "--vae-runs", "1", *extra]
        self.assertEqual(quiet(torch_bench.main, argv), 0)
        return read_json(out)

    def test_times_every_model_batch_and_step_count_from_our_files(self):
        result = self.bench(os.path.join(self.dir, "all.json"), "--steps", "3,2", "--batches", "1,2")
        rows = result["rows"]
        self.assertEqual(
            sorted((r["model"], r["batch"], r["steps"]) for r in rows),
            sorted((m, b, s) for m in ("sd3.5-large", "sd3.5-medium") for b in (1, 2) for s in (2, 3)),
        )
        for r in rows:
            self.assertEqual((r["engine"], r["precision"], r["mode"]), ("pytorch", "fp32", "eager"))
            self.assertEqual((r["width"], r["height"], r["cfg_batch"]), (128, 128, 2 * r["batch"]))
            self.assertGreater(r["seconds_per_image"], 0)
            self.assertAlmostEqual(r["denoise_seconds_per_image"] * r["batch"], r["denoise_seconds"], places=3)
            # Per image, as atelier-bench.ts counts it: the generation's text encoding, denoising, decode.
            self.assertEqual(r["seconds_per_image_includes"], "VAE decode + denoising + text encoding")
            expected = r["text_encode_seconds"] / r["batch"] + r["denoise_seconds_per_image"] + r["vae_decode_seconds"]
            self.assertAlmostEqual(r["seconds_per_image"], expected, places=3)
            self.assertTrue(r["finite"])
            self.assertIn("load_seconds", r)
            self.assertNotIn("measured_steps", r)
        encoders = result["text_encoders"]
        self.assertEqual(set(encoders["encode_seconds_per_prompt"]), {"clip_l", "clip_g", "t5xxl"})
        self.assertEqual(encoders["configs"]["t5xxl"]["num_heads"], 4)
        self.assertEqual(result["models"]["sd3.5-medium"]["config"]["x_block_self_attn_layers"], [0, 1])
        self.assertEqual(result["reference_commit"], read_text(os.path.join(self.ref, "COMMIT")))

    def test_the_issue9_plan_times_the_issue_rows_most_important_first(self):
        result = self.bench(os.path.join(self.dir, "issue9.json"), "--plan", "issue9", "--steps", "3", "--turbo-steps", "2")
        eager = [r for r in result["rows"] if r["mode"] == "eager"]
        self.assertEqual(
            [(r["model"], r["weights"], r["width"], r["steps"], r["batch"], r["cfg"], r["cfg_batch"]) for r in eager],
            [
                ("sd3.5-large", "sd3.5-large", 128, 3, 1, True, 2),
                # Turbo-like: Large's files, few steps, the conditional pass alone.
                ("sd3.5-large-turbo", "sd3.5-large", 128, 2, 1, False, 1),
                ("sd3.5-medium", "sd3.5-medium", 128, 3, 1, True, 2),
                ("sd3.5-medium", "sd3.5-medium", 64, 3, 1, True, 2),
            ],
        )
        turbo = eager[1]
        self.assertIsNone(turbo["guidance"])
        self.assertTrue(turbo["finite"])
        # The half-size row decodes at its own size, so its VAE time is its own.
        self.assertNotEqual(eager[3]["vae_decode_seconds"], eager[2]["vae_decode_seconds"])
        # Then torch.compile: Medium and Large at full size, then the optional ones (skipped here
        # where this torch has no torch.compile).
        if not hasattr(torch, "compile"):
            skipped = [(s["model"], s["mode"]) for s in result["skipped"]]
            self.assertEqual(skipped, [("sd3.5-medium", "compile"), ("sd3.5-large", "compile")] * 2)

    def test_a_plain_cuda_device_means_the_first_gpu(self):
        args = torch_bench.parse_args(["--models-dir", "m", "--out", "o"])
        self.assertEqual((args.device, args.steps, args.batches, args.compile), ("cuda:0", (28, 20), (1, 4), False))
        args = torch_bench.parse_args(["--models-dir", "m", "--out", "o", "--plan", "issue9", "--device", "cuda:1"])
        self.assertEqual((args.device, args.steps, args.batches, args.compile), ("cuda:1", (28,), (1,), True))

    def test_a_configuration_over_its_budget_is_timed_on_fewer_steps_and_scaled(self):
        out = os.path.join(self.dir, "budget.json")
        result = self.bench(out, "--models", "large", "--steps", "2000", "--batches", "1", "--config-budget-s", "4", "--no-encoders")
        (row,) = result["rows"]
        self.assertEqual(row["steps"], 2000)
        self.assertLess(row["measured_steps"], 2000)
        self.assertGreaterEqual(row["measured_steps"], 2)
        self.assertAlmostEqual(row["steps_per_second"], 2000 / row["denoise_seconds"], places=2)

    def broken_copy(self, path, dropped):
        """`path` rewritten without the tensor `dropped`."""
        entries, metadata, start = st_io.read_header(path)
        kept = [e for n, e in entries.items() if n != dropped]
        header, _ = st_io.plan_header([(e.name, e.dtype, e.shape) for e in kept], metadata)
        chunks = []
        with open(path, "rb") as src:
            for e in kept:
                src.seek(start + e.begin)
                chunks.append(src.read(e.end - e.begin))
        broken = os.path.join(self.dir, "broken.safetensors")
        st_io.write_file(broken, header, chunks)
        return broken

    def test_refuses_a_checkpoint_that_does_not_match_the_reference(self):
        import torch_models

        dropped = "model.diffusion_model.joint_blocks.0.x_block.mlp.fc2.bias"
        broken = self.broken_copy(os.path.join(self.models, "checkpoints", "sd3.5_large.safetensors"), dropped)
        with self.assertRaisesRegex(torch_models.WeightsMismatch, f"missing {dropped}"):
            quiet(torch_models.load_mmdit, broken, torch.device("cpu"), torch.float32)

    def test_a_model_that_fails_to_load_is_reported_and_the_other_still_runs(self):
        models = os.path.join(self.dir, "half-broken")
        os.makedirs(os.path.join(models, "checkpoints"), exist_ok=True)
        os.symlink(os.path.join(self.models, "text_encoders"), os.path.join(models, "text_encoders"))
        os.symlink(
            os.path.join(self.models, "checkpoints", "sd3.5_medium.safetensors"),
            os.path.join(models, "checkpoints", "sd3.5_medium.safetensors"),
        )
        broken = self.broken_copy(
            os.path.join(self.models, "checkpoints", "sd3.5_large.safetensors"), "model.diffusion_model.pos_embed"
        )
        os.replace(broken, os.path.join(models, "checkpoints", "sd3.5_large.safetensors"))
        argv = ["--models-dir", models, "--out", os.path.join(self.dir, "half.json"), "--ref-dir", self.ref]
        argv += ["--device", "cpu", "--dtype", "fp32", "--width", "128", "--height", "128", "--steps", "2"]
        argv += ["--batches", "1", "--encoder-runs", "1", "--vae-runs", "1"]
        self.assertEqual(quiet(torch_bench.main, argv), 0)
        result = read_json(os.path.join(self.dir, "half.json"))
        self.assertEqual([r["model"] for r in result["rows"]], ["sd3.5-medium"])
        (skipped,) = result["skipped"]
        self.assertEqual(skipped["model"], "sd3.5-large")
        self.assertIn("pos_embed", skipped["reason"])


class RearrangeTest(unittest.TestCase):
    """The einops stand-in, on the patterns the reference uses."""

    def test_patterns_of_the_reference(self):
        pos = torch.arange(1 * 6 * 4, dtype=torch.float32).reshape(1, 6, 4)
        grid = ref_shims.rearrange(pos, "1 (h w) c -> 1 h w c", h=3, w=2)
        self.assertTrue(torch.equal(grid, pos.reshape(1, 3, 2, 4)))
        self.assertTrue(torch.equal(ref_shims.rearrange(grid, "1 h w c -> 1 (h w) c"), pos))
        image = torch.randn(2, 5, 3, 4)
        tokens = ref_shims.rearrange(image, "b c h w -> b 1 (h w) c")
        self.assertTrue(torch.equal(tokens, image.permute(0, 2, 3, 1).reshape(2, 1, 12, 5)))
        back = ref_shims.rearrange(tokens, "b 1 (h w) c -> b c h w", h=3, w=4, c=5, b=2)
        self.assertTrue(torch.equal(back, image))


if __name__ == "__main__":
    unittest.main()
