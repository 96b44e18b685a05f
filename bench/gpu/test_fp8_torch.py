"""CPU tests of fp8_torch.py (PyTorch FP8 for the reference MMDiT) and of torch_bench.py's FP8 rows,
on any torch from 1.13 (where the layer emulates _scaled_mm in float32):

  /usr/bin/python3 -m unittest discover -s bench/gpu -p 'test_fp8_torch.py'

1. quantize_e4m3 against a table of every finite float8_e4m3fn value (nearest, ties to even code);
2. the emulated Fp8Linear against a float64 reference of the same quantized math (per-token
   activation scales, per-channel weight scales, bias), rows of very different magnitude and an
   all-zero row included;
3. on torch with float8 dtypes, the native cast agrees with the table (and on CUDA, _scaled_mm with
   the emulation);
4. to_fp8 on the reference MMDiT-X (Medium: attn2, adaLN, pre-only last block) built from tiny
   files: every nn.Linear of the joint blocks swapped, none left there, the final layer and the
   embedders untouched, the output close to the unquantized model's;
5. torch_bench.py --fp8 and --plan issue10: FP8 rows with precision fp8 after the bf16 ones.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fp8_torch  # noqa: E402
import test_torch_bench as tb  # noqa: E402  (a module, so its TestCases are not collected here)


def e4m3_table() -> np.ndarray:
    """Every finite non-negative float8_e4m3fn value, in code order (code = 8·exponent + mantissa)."""
    values = []
    for code in range(0x7F):  # 0x7F is NaN
        e, m = code >> 3, code & 7
        values.append(m / 8 * 2.0**-6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
    return np.array(values, dtype=np.float64)


TABLE = e4m3_table()


def round_e4m3_reference(v: np.ndarray) -> np.ndarray:
    """float64 → nearest e4m3 value by table search, ties to the even code, saturating at 448."""
    a = np.minimum(np.abs(v), 448.0)
    hi = np.clip(np.searchsorted(TABLE, a), 1, len(TABLE) - 1)
    lo = hi - 1
    d_lo, d_hi = a - TABLE[lo], TABLE[hi] - a
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    out = np.where(pick_hi, TABLE[hi], TABLE[lo])
    out = np.where(a == TABLE[hi], TABLE[hi], out)
    return np.sign(v) * out


def reference_linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """W8A8 in float64: y = (s_x · q(x/s_x)) · (s_w · q(w/s_w))ᵀ + b, s = amax(row)/448."""
    sx = np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12) / 448.0
    sw = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) / 448.0
    xq = round_e4m3_reference(np.clip(x / sx, -448, 448)) * sx
    wq = round_e4m3_reference(np.clip(w / sw, -448, 448)) * sw
    y = xq @ wq.T
    return y + b if b is not None else y


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


class QuantizeTest(unittest.TestCase):
    def test_the_e4m3_grid_matches_the_table_ties_to_even(self):
        # Every table value, every midpoint between neighbours (ties), and random values.
        mids = (TABLE[1:] + TABLE[:-1]) / 2
        rng = np.random.default_rng(0)
        rand = rng.uniform(-448, 448, 20000) * rng.choice([1, 1e-2, 1e-4], 20000)
        v = np.concatenate([TABLE, -TABLE, mids, -mids, rand, [448.0, -448.0, 0.0]]).astype(np.float32)
        got = fp8_torch.quantize_e4m3(torch.from_numpy(v)).double().numpy()
        np.testing.assert_array_equal(got, round_e4m3_reference(v.astype(np.float64)))
        self.assertEqual(len(TABLE), 127)
        self.assertEqual(TABLE[-1], 448.0)
        self.assertEqual(TABLE[1], 2.0**-9)

    @unittest.skipUnless(hasattr(torch, "float8_e4m3fn"), "this torch has no float8 dtypes")
    def test_the_native_cast_agrees_with_the_emulation(self):
        v = torch.linspace(-448, 448, 100001)
        native = v.to(torch.float8_e4m3fn).float()
        self.assertTrue(torch.equal(native, fp8_torch.quantize_e4m3(v)))


class Fp8LinearTest(unittest.TestCase):
    def layer(self, n_in: int, n_out: int, bias: bool = True) -> torch.nn.Linear:
        torch.manual_seed(1)
        lin = torch.nn.Linear(n_in, n_out, bias=bias)
        with torch.no_grad():
            lin.weight.mul_(torch.logspace(-2, 1, n_out).unsqueeze(1))  # channels of different scales
        return lin

    def test_emulated_layer_equals_the_float64_quantized_math(self):
        lin = self.layer(96, 40)
        x = torch.randn(3, 7, 96) * torch.logspace(-3, 2, 7).reshape(1, 7, 1)  # tokens of different scales
        x[1, 2] = 0.0  # a zero token: scale floor, output = bias
        fp8 = fp8_torch.Fp8Linear(lin, native=False)
        y = fp8(x)
        self.assertEqual(tuple(y.shape), (3, 7, 40))
        self.assertEqual(y.dtype, torch.float32)
        ref = reference_linear(
            x.reshape(-1, 96).double().numpy(), lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        ).reshape(3, 7, 40)
        # Row by row: each token's error relative to its own size (the rows span five decades).
        for r in range(3):
            for t in range(7):
                if t == 2 and r == 1:
                    np.testing.assert_allclose(y[r, t].double().numpy(), lin.bias.detach().double().numpy(), rtol=1e-6)
                    continue
                self.assertLess(rel_l2(y[r, t].detach().numpy(), ref[r, t]), 1e-5, (r, t))
        # And it is a real quantization: ~2-5 % from the float layer, not 0.
        err = rel_l2(y.detach().numpy(), lin(x).detach().numpy())
        self.assertGreater(err, 1e-3)
        self.assertLess(err, 0.1)

    def test_weight_and_activation_scales_are_per_channel_and_per_token(self):
        lin = self.layer(32, 16, bias=False)
        fp8 = fp8_torch.Fp8Linear(lin, native=False)
        self.assertEqual(tuple(fp8.weight_scale.shape), (1, 16))
        np.testing.assert_allclose(
            fp8.weight_scale.numpy()[0], lin.weight.detach().abs().amax(dim=1).numpy() / 448, rtol=1e-6
        )
        # Each weight row's largest element lands on ±448 exactly.
        self.assertTrue(torch.equal(fp8.weight_fp8.abs().amax(dim=1), torch.full((16,), 448.0)))
        x2 = torch.randn(5, 32) * 1e3
        q, s = fp8_torch.quantize_rows(x2, native=False)
        self.assertEqual(tuple(s.shape), (5, 1))
        self.assertTrue(torch.equal(q.abs().amax(dim=1), torch.full((5,), 448.0)))
        self.assertIsNone(fp8.bias)
        self.assertIn("emulated", repr(fp8))

    @unittest.skipUnless(fp8_torch.native_available("cuda") and torch.cuda.is_available(), "needs CUDA with _scaled_mm")
    def test_scaled_mm_agrees_with_the_emulation_on_cuda(self):
        lin = self.layer(256, 128).cuda().to(torch.bfloat16)
        x = torch.randn(2, 333, 256, device="cuda", dtype=torch.bfloat16)  # 666 rows: padded to 672
        native = fp8_torch.Fp8Linear(lin, native=True)(x).float().cpu().numpy()
        emulated = fp8_torch.Fp8Linear(lin.float(), native=False)(x.float()).cpu().numpy()
        self.assertLess(rel_l2(native, emulated), 1e-2)  # bf16 output and weights


class SwapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tb.stand_in_for_missing_packages()
        cls.ref = os.path.join(tb.ROOT, ".gpu", "ref")
        if not os.path.isfile(os.path.join(cls.ref, "sd3_impls.py")):
            import subprocess

            subprocess.run(["bash", os.path.join(HERE, "fetch-reference.sh"), cls.ref], check=True, cwd=tb.ROOT)
        tb.ref_shims.install(cls.ref)
        cls.dir = tempfile.mkdtemp(prefix="atelier-fp8-torch-")
        cls.models = os.path.join(cls.dir, "models")
        tb.quiet(tb.make_weights.main, [cls.models, "--tiny", "--precisions", "fp16"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def load(self, name):
        import torch_models

        path = os.path.join(self.models, "checkpoints", f"sd3.5_{name}.safetensors")
        return tb.quiet(torch_models.load_mmdit, path, torch.device("cpu"), torch.float32)

    def test_every_joint_block_linear_is_swapped_and_nothing_else(self):
        base = self.load("medium")
        dm = base.diffusion_model
        before = {n for n, m in dm.named_modules() if isinstance(m, torch.nn.Linear)}
        in_blocks = {n for n in before if n.startswith("joint_blocks.")}
        self.assertEqual(set(fp8_torch.joint_block_linears(dm)), in_blocks)
        # What the scope claims: qkv, proj, attn2 (MMDiT-X), fc1, fc2 and adaLN, in x and context blocks.
        for part in ("attn.qkv", "attn.proj", "attn2.qkv", "attn2.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1"):
            self.assertTrue(any(n.endswith(part) for n in in_blocks), part)
        last = len(dm.joint_blocks) - 1
        self.assertFalse(any(n.startswith(f"joint_blocks.{last}.context_block.mlp") for n in in_blocks))  # pre-only

        torch.manual_seed(0)
        x = torch.randn(2, 16, 16, 16)
        t = torch.tensor([0.9, 0.9])
        y = torch.randn(2, dm.y_embedder.mlp[0].in_features)
        ctx = torch.randn(2, 10, dm.context_embedder.in_features)
        with torch.no_grad():
            want = dm(x, t, y=y, context=ctx)
            info = fp8_torch.to_fp8(dm, native=False)
            got = dm(x, t, y=y, context=ctx)
        after = {n for n, m in dm.named_modules() if isinstance(m, torch.nn.Linear)}
        swapped = {n for n, m in dm.named_modules() if isinstance(m, fp8_torch.Fp8Linear)}
        self.assertEqual(swapped, in_blocks)
        self.assertEqual(after, before - in_blocks)
        self.assertIn("final_layer.linear", after)
        self.assertIn("context_embedder", after)
        self.assertEqual(info["fp8_linear_layers"], len(in_blocks))
        self.assertEqual(info["fp8_kernel"], "emulated")
        self.assertTrue(torch.isfinite(got).all())
        err = rel_l2(got.numpy(), want.numpy())
        print(f"\ntiny Medium MMDiT-X, W8A8 (emulated) vs float32: rel L2 {err:.4f}", file=sys.stderr)
        self.assertGreater(err, 1e-4)
        self.assertLess(err, 0.1)

    def bench(self, out, *extra):
        argv = ["--models-dir", self.models, "--out", out, "--ref-dir", self.ref, "--device", "cpu", "--dtype", "fp32"]
        argv += ["--width", "128", "--height", "128", "--encoder-runs", "1", "--vae-runs", "1", "--no-encoders", *extra]
        self.assertEqual(tb.quiet(tb.torch_bench.main, argv), 0)
        return tb.read_json(out)

    def test_fp8_rows_come_after_the_bf16_rows(self):
        result = self.bench(os.path.join(self.dir, "fp8.json"), "--steps", "2", "--batches", "1", "--fp8")
        rows = [(r["model"], r["precision"], r["mode"]) for r in result["rows"]]
        self.assertEqual(
            rows,
            [
                ("sd3.5-large", "fp32", "eager"),
                ("sd3.5-medium", "fp32", "eager"),
                # The model loaded last first: Medium's FP8 rows need no reload of Large.
                ("sd3.5-medium", "fp8", "eager"),
                ("sd3.5-large", "fp8", "eager"),
            ],
        )
        for r in result["rows"][2:]:
            self.assertEqual(r["compute_dtype"], "fp32")
            self.assertEqual(r["fp8_kernel"], "emulated")
            self.assertGreater(r["fp8_linear_layers"], 0)
            self.assertTrue(r["finite"])
        self.assertIn("fp8", result["models"]["sd3.5-medium"])

    def test_the_issue10_plan(self):
        args = tb.torch_bench.parse_args(["--models-dir", "m", "--out", "o", "--plan", "issue10"])
        got = [(p.model, p.mode, p.precision) for p in tb.torch_bench.phases(args)]
        self.assertEqual(
            got,
            [
                ("large", "eager", None),
                ("large", "compile", None),
                ("large", "eager", "fp8"),
                ("large", "compile", "fp8"),
                ("medium", "eager", None),
                ("medium", "compile", None),
                ("medium", "eager", "fp8"),
                ("medium", "compile", "fp8"),
            ],
        )
        self.assertEqual((args.device, args.steps, args.batches, args.compile), ("cuda:0", (28,), (1,), True))
        args = tb.torch_bench.parse_args(["--models-dir", "m", "--out", "o", "--plan", "issue9", "--fp8"])
        tail = [(p.model, p.mode, p.precision) for p in tb.torch_bench.phases(args)][-4:]
        self.assertEqual(
            tail, [("large", "eager", "fp8"), ("large", "compile", "fp8"), ("medium", "eager", "fp8"), ("medium", "compile", "fp8")]
        )

    def test_a_bf16_phase_after_an_fp8_one_reloads_the_model(self):
        result = self.bench(os.path.join(self.dir, "i10.json"), "--plan", "issue10", "--steps", "2", "--models", "medium,large")
        rows = [(r["model"], r["precision"], r["mode"]) for r in result["rows"]]
        # torch 1.13 has no torch.compile: the compiled phases are skipped, the eager ones all run.
        if not hasattr(torch, "compile"):
            self.assertEqual(
                rows,
                [
                    ("sd3.5-large", "fp32", "eager"),
                    ("sd3.5-large", "fp8", "eager"),
                    ("sd3.5-medium", "fp32", "eager"),
                    ("sd3.5-medium", "fp8", "eager"),
                ],
            )
            self.assertEqual(
                [(s["model"], s["precision"]) for s in result["skipped"]],
                [("sd3.5-large", "fp32"), ("sd3.5-large", "fp8"), ("sd3.5-medium", "fp32"), ("sd3.5-medium", "fp8")],
            )
        # The bf16 (here fp32) row after an FP8 phase runs unquantized weights again.
        self.assertNotIn("fp8_kernel", result["rows"][2])


if __name__ == "__main__":
    unittest.main()
