"""Tests of the weight files, FLOP floor and result merging (numpy only):

  python3 -m unittest discover -s bench/gpu -p 'test_weights.py'
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace
from unittest import mock

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_weights  # noqa: E402
import make_weights  # noqa: E402
import merge_results  # noqa: E402
import st_io  # noqa: E402
from sd35_flops import MODELS, floor_seconds, forward_flops  # noqa: E402
from sd35_shapes import REAL, TINY, ClipConfig, MMDiTConfig, T5Config, VAEConfig  # noqa: E402
from sd35_shapes import clip_tensors, mmdit_tensors, t5_tensors, vae_tensors  # noqa: E402
from weight_plan import build_plan, parameter_count  # noqa: E402

GOLDEN = os.environ.get("ATELIER_GOLDEN_DIR", os.path.join(HERE, "..", "..", "..", "shared", "golden"))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def quiet(fn, *args):
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        return fn(*args)


class RealSizeTest(unittest.TestCase):
    """Parameter counts and file sizes from the real shapes, nothing allocated."""

    def plan(self):
        return {f.path: f for f in build_plan(REAL)}

    def test_parameter_counts_match_the_published_models(self):
        plan = self.plan()
        large = parameter_count(plan["checkpoints/sd3.5_large.safetensors"])
        medium = parameter_count(plan["checkpoints/sd3.5_medium.safetensors"])
        # SD3.5 Large "8.1B": 8.06 B parameters plus the 192² × 2432 sin-cos pos_embed buffer.
        self.assertEqual(large["mmdit_without_pos_embed"], 8_056_627_520)
        self.assertEqual(large["mmdit"], 8_146_280_768)
        # SD3.5 Medium "2.5B": 2.47 B with its 384² × 1536 pos_embed.
        self.assertEqual(medium["mmdit"], 2_469_663_936)
        self.assertEqual(large["vae"], 83_819_683)
        self.assertEqual(parameter_count(plan["text_encoders/t5xxl_fp16.safetensors"]), {"t5": 4_762_310_656})
        self.assertEqual(parameter_count(plan["text_encoders/clip_g.safetensors"]), {"clip_g": 694_659_840})
        self.assertEqual(parameter_count(plan["text_encoders/clip_l.safetensors"]), {"clip_l": 123_060_480})

    def test_file_sizes_match_the_released_files(self):
        # Sizes as Hugging Face lists the released files (GB = 1e9 bytes, rounded as listed).
        released = {
            "checkpoints/sd3.5_large.safetensors": 16.5,
            "checkpoints/sd3.5_medium.safetensors": 5.11,
            "text_encoders/t5xxl_fp16.safetensors": 9.79,
            "text_encoders/t5xxl_fp8_e4m3fn.safetensors": 4.89,
            "text_encoders/clip_g.safetensors": 1.39,
            "text_encoders/clip_l.safetensors": 0.246,
        }
        plan = self.plan()
        for path, gb in released.items():
            digits = len(str(gb).split(".")[1])
            self.assertEqual(round(plan[path].size / 1e9, digits), gb, path)

    def test_real_hyperparameters_are_the_reference_configs(self):
        self.assertEqual((REAL.large.hidden, REAL.large.heads), (2432, 38))
        self.assertEqual((REAL.medium.hidden, REAL.medium.heads), (1536, 24))
        names = {t.name for t in mmdit_tensors(REAL.medium)}
        dual = sorted({int(n.split(".")[3]) for n in names if ".x_block.attn2." in n})
        self.assertEqual(dual, list(range(13)))
        shapes = {t.name: t.shape for t in mmdit_tensors(REAL.large)}
        self.assertEqual(shapes["model.diffusion_model.pos_embed"], (1, 192 * 192, 2432))
        self.assertEqual(shapes["model.diffusion_model.x_embedder.proj.weight"], (2432, 16, 2, 2))
        self.assertEqual(shapes["model.diffusion_model.joint_blocks.37.context_block.adaLN_modulation.1.weight"], (4864, 2432))
        self.assertNotIn("model.diffusion_model.joint_blocks.37.context_block.mlp.fc1.weight", shapes)

    def test_scaled_fp8_checkpoint_quantizes_every_matrix_of_the_mmdit_only(self):
        plan = self.plan()["checkpoints/sd3.5_large_fp8_scaled.safetensors"]
        tensors = {t.name: t for t in plan.tensors}
        self.assertEqual(tensors["model.diffusion_model.scaled_fp8"].shape, (0,))
        for t in plan.tensors:
            in_mmdit = t.name.startswith("model.diffusion_model.") and t.name != "model.diffusion_model.scaled_fp8"
            if in_mmdit and t.name.endswith(".weight") and len(t.shape) >= 2:
                self.assertEqual(t.dtype, "F8_E4M3", t.name)
                scale = tensors[t.name.replace(".weight", ".scale_weight")]
                self.assertEqual((scale.dtype, scale.shape), ("F32", ()))
            elif not t.name.endswith((".scale_weight", "scaled_fp8")):
                self.assertEqual(t.dtype, "F16", t.name)
        t5 = self.plan()["text_encoders/t5xxl_fp8_e4m3fn.safetensors"]
        self.assertEqual({t.dtype for t in t5.tensors}, {"F8_E4M3"})


class GoldenLayoutTest(unittest.TestCase):
    """The shape builders reproduce the key layout of files the reference itself wrote."""

    def shapes(self, path):
        entries, _, _ = st_io.read_header(path)
        return {n: e.shape for n, e in entries.items()}

    def test_tiny_checkpoint_and_encoders_of_the_golden_set(self):
        manifest = read_json(os.path.join(GOLDEN, "manifest.json"))["components"]
        e2e = manifest["e2e"]["configs"]
        models = os.path.join(GOLDEN, "e2e", "models")
        checkpoint = self.shapes(os.path.join(models, "checkpoints", "atelier_tiny_sd35.safetensors"))
        pos = int(round(checkpoint["model.diffusion_model.pos_embed"][1] ** 0.5))
        mmdit = MMDiTConfig(
            depth=e2e["mmdit_depth"],
            pos_embed_max_size=pos,
            adm_in_channels=e2e["clip_l"]["hidden_size"] + e2e["clip_g"]["hidden_size"],
            context_dim=e2e["t5"]["d_model"],
        )
        res_blocks = 1 + max(
            int(k.split(".")[5]) for k in checkpoint if k.startswith("first_stage_model.encoder.down.0.block.")
        )
        vae = VAEConfig(ch=e2e["vae"]["ch"], ch_mult=tuple(e2e["vae"]["ch_mult"]), num_res_blocks=res_blocks)
        mine = {t.name: t.shape for t in mmdit_tensors(mmdit) + vae_tensors(vae)}
        self.assertEqual(mine, checkpoint)
        for name in ("clip_l", "clip_g"):
            c = e2e[name]
            cfg = ClipConfig(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], projection=True)
            golden = self.shapes(os.path.join(models, "text_encoders", f"{name}.safetensors"))
            self.assertEqual({t.name: t.shape for t in clip_tensors(cfg)}, golden, name)
        t = e2e["t5"]
        cfg = T5Config(t["d_model"], t["d_ff"], t["num_layers"], t["num_heads"], t["vocab_size"])
        golden = self.shapes(os.path.join(models, "text_encoders", "t5xxl_tiny.safetensors"))
        mine = {s.name: s.shape for s in t5_tensors(cfg) if s.name != "shared.weight"}
        self.assertEqual(mine, golden)

    def test_dual_attention_medium_of_the_golden_set(self):
        c = read_json(os.path.join(GOLDEN, "manifest.json"))["components"]["mmdit_medium"]
        cfg = MMDiTConfig(
            depth=c["depth"],
            pos_embed_max_size=c["pos_embed_max_size"],
            adm_in_channels=c["adm_in_channels"],
            context_dim=c["context_dim"],
            x_block_self_attn_layers=tuple(c["x_block_self_attn_layers"]),
        )
        golden = self.shapes(os.path.join(GOLDEN, c["weights"]))
        self.assertEqual({t.name: t.shape for t in mmdit_tensors(cfg)}, golden)

    def test_e4m3_rounding_matches_torch_on_the_golden_fp8_weights(self):
        fp16_path = os.path.join(GOLDEN, "mmdit_large.weights.safetensors")
        fp8_path = os.path.join(GOLDEN, "mmdit_large_fp8.weights.safetensors")
        half, _, half_start = st_io.read_header(fp16_path)
        eight, _, eight_start = st_io.read_header(fp8_path)
        checked = 0
        for name, e in eight.items():
            if e.dtype != "F8_E4M3":
                continue
            values = st_io.read_array(fp16_path, half[name], half_start).astype(np.float32)
            np.testing.assert_array_equal(st_io.to_e4m3fn(values), st_io.read_array(fp8_path, e, eight_start), name)
            checked += 1
        self.assertGreater(checked, 10)


class TinyFilesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="atelier-weights-")
        cls.code = quiet(make_weights.main, [cls.dir, "--tiny"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_every_planned_file_is_written_as_planned(self):
        self.assertEqual(self.code, 0)
        for plan in build_plan(TINY):
            self.assertEqual(check_weights.check_file(self.dir, plan, 0.02), [], plan.path)
        manifest = read_json(os.path.join(self.dir, "weights-manifest.json"))
        self.assertEqual(manifest["set"], "tiny")
        self.assertEqual(len(manifest["files"]), 8)

    def test_each_model_gets_a_folder_of_links_to_its_files(self):
        for model in ("large", "medium"):
            folder = os.path.join(self.dir, model)
            self.assertEqual(
                sorted(os.listdir(os.path.join(folder, "checkpoints"))),
                [f"sd3.5_{model}.safetensors", f"sd3.5_{model}_fp8_scaled.safetensors"],
            )
            linked = os.path.join(folder, "checkpoints", f"sd3.5_{model}.safetensors")
            self.assertTrue(os.path.samefile(linked, os.path.join(self.dir, "checkpoints", f"sd3.5_{model}.safetensors")))
            self.assertIn("t5xxl_fp8_e4m3fn.safetensors", os.listdir(os.path.join(folder, "text_encoders")))

    def test_scaled_fp8_values_dequantize_to_the_planned_spread(self):
        path = os.path.join(self.dir, "checkpoints", "sd3.5_large_fp8_scaled.safetensors")
        entries, _, start = st_io.read_header(path)
        name = "model.diffusion_model.joint_blocks.0.x_block.mlp.fc1"
        codes = st_io.read_array(path, entries[f"{name}.weight"], start)
        scale = float(st_io.read_array(path, entries[f"{name}.scale_weight"], start))
        values = st_io.from_e4m3fn(codes) * scale
        self.assertLessEqual(int(np.abs(st_io.from_e4m3fn(codes)).max()), 448)
        self.assertAlmostEqual(float(values.std()), 0.02, delta=0.002)

    def test_an_fp8_file_holds_its_fp16_counterparts_values_quantized(self):
        # One model in two storages, as the released files are: the FP8 quality report relies on it.
        ckpt = os.path.join(self.dir, "checkpoints")
        fp16_path, fp8_path = (os.path.join(ckpt, f) for f in ("sd3.5_medium.safetensors", "sd3.5_medium_fp8_scaled.safetensors"))
        e16, _, s16 = st_io.read_header(fp16_path)
        e8, _, s8 = st_io.read_header(fp8_path)
        compared = 0
        for name, entry in e8.items():
            if entry.dtype != "F8_E4M3" or not entry.shape or entry.shape[0] == 0:
                continue
            want = st_io.read_array(fp16_path, e16[name], s16).astype(np.float64)
            scale = float(st_io.read_array(fp8_path, e8[name[: -len(".weight")] + ".scale_weight"], s8))
            got = st_io.from_e4m3fn(st_io.read_array(fp8_path, entry, s8)).astype(np.float64) * scale
            # e4m3's 3 mantissa bits: ≤ 1/16 relative per element (subnormals aside), ~2.5 % rel L2.
            self.assertLess(np.linalg.norm(got - want) / np.linalg.norm(want), 0.05, name)
            compared += 1
        self.assertGreater(compared, 10)
        t16 = os.path.join(self.dir, "text_encoders", "t5xxl_fp16.safetensors")
        t8 = os.path.join(self.dir, "text_encoders", "t5xxl_fp8_e4m3fn.safetensors")
        (e16, _, s16), (e8, _, s8) = st_io.read_header(t16), st_io.read_header(t8)
        name = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
        want = st_io.read_array(t16, e16[name], s16).astype(np.float64)
        got = st_io.from_e4m3fn(st_io.read_array(t8, e8[name], s8)).astype(np.float64)
        self.assertLess(np.linalg.norm(got - want) / np.linalg.norm(want), 0.1)
        self.assertEqual(make_weights.fp16_counterpart("checkpoints/sd3.5_large_fp8_scaled.safetensors"), "checkpoints/sd3.5_large.safetensors")

    def test_a_second_run_keeps_the_files_and_a_changed_file_is_reported(self):
        out = quiet(lambda: self._run_capture([self.dir, "--tiny"]))
        self.assertIn("to write: 0 files", out)
        other = tempfile.mkdtemp(prefix="atelier-weights-")
        try:
            quiet(make_weights.main, [other, "--tiny", "--models", "large", "--precisions", "fp16", "--encoders", "none"])
            path = os.path.join(other, "checkpoints", "sd3.5_large.safetensors")
            with open(path, "r+b") as f:  # a tensor renamed: same size, different header
                data = f.read()
                f.seek(0)
                f.write(data.replace(b"final_layer.linear.weight", b"final_layer.linear.weighs", 1))
            plan = build_plan(TINY, ("large",), ("fp16",), ())[0]
            problems = check_weights.check_file(other, plan, 0.02)
            self.assertTrue(any("no tensor model.diffusion_model.final_layer.linear.weight" in p for p in problems))
            self.assertFalse(make_weights.is_current(path, plan))
        finally:
            shutil.rmtree(other, ignore_errors=True)

    def _run_capture(self, argv):
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            make_weights.main(argv)
        return buffer.getvalue()

    def test_refuses_to_start_without_room_for_the_files(self):
        other = tempfile.mkdtemp(prefix="atelier-weights-")
        try:
            tiny_disk = SimpleNamespace(total=10**9, used=10**9, free=10**6)
            with mock.patch("shutil.disk_usage", return_value=tiny_disk):
                code = quiet(make_weights.main, [other, "--tiny"])
            self.assertEqual(code, 2)
            self.assertEqual(os.listdir(other), [])
        finally:
            shutil.rmtree(other, ignore_errors=True)

    def test_dry_run_writes_nothing(self):
        other = tempfile.mkdtemp(prefix="atelier-weights-")
        try:
            self.assertEqual(quiet(make_weights.main, [other, "--dry-run"]), 0)
            self.assertEqual(os.listdir(other), [])
        finally:
            shutil.rmtree(other, ignore_errors=True)


class FlopsTest(unittest.TestCase):
    def test_floor_reproduces_the_issue_numbers(self):
        large = forward_flops(MODELS["sd3.5-large"], 1024, 1024, 333)
        medium = forward_flops(MODELS["sd3.5-medium"], 1024, 1024, 333)
        self.assertAlmostEqual(large.total / 1e12, 31.1, delta=0.05)
        self.assertAlmostEqual(medium.total / 1e12, 11.25, delta=0.01)
        # ×2 for CFG ×28 steps at 783 TFLOP/s: 2.2 s; FP8 linears at 1408: ≈ 1.5 s; Medium 0.8 s.
        self.assertAlmostEqual(floor_seconds("sd3.5-large", "bf16", 1024, 1024, 28), 2.2, delta=0.05)
        self.assertAlmostEqual(floor_seconds("sd3.5-large", "fp8", 1024, 1024, 28), 1.5, delta=0.05)
        self.assertAlmostEqual(floor_seconds("sd3.5-medium", "fp16", 1024, 1024, 28), 0.8, delta=0.01)


class MergeTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="atelier-merge-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(data, f)
        return path

    def row(self, engine, precision, seconds, **extra):
        return {
            "engine": engine,
            "model": "sd3.5-large",
            "precision": precision,
            "width": 1024,
            "height": 1024,
            "steps": 28,
            "batch": 1,
            "seconds_per_image": seconds,
            "peak_gpu_mem_gb": 30.0,
            "load_seconds": 20.0,
            **extra,
        }

    def test_merges_engines_with_ratios_and_mfu(self):
        # PyTorch rows as torch_bench.py writes them; atelier rows as atelier-bench.ts does
        # (seconds_per_image: wall per image; denoise_seconds: per generation).
        torch_file = self.write(
            "torch.json",
            {
                "engine": "pytorch",
                "device": "NVIDIA H100 80GB HBM3",
                "driver": "580.65.06",
                "date": "2026-11-24",
                "rows": [
                    self.row("pytorch", "bf16", 5.6, mode="eager", denoise_seconds_per_image=5.28),
                    self.row("pytorch", "bf16", 3.9, mode="compile", denoise_seconds_per_image=3.64),
                ],
            },
        )
        ours = self.write(
            "atelier.json",
            {
                "rows": [
                    self.row("atelier", "fp16", 2.9, denoise_seconds=2.64),
                    self.row("atelier", "fp8", 4.0, batch=4, denoise_seconds=7.04),
                ]
            },
        )
        out_dir = os.path.join(self.dir, "results")
        with mock.patch.object(merge_results, "gpu_from_nvidia_smi", return_value={}):
            code = quiet(merge_results.main, [torch_file, ours, "--out-dir", out_dir, "--ort", "1.29.0", "--command", "cmd"])
        self.assertEqual(code, 0)
        result = read_json(os.path.join(out_dir, "gpu-2026-11-24.json"))
        self.assertEqual(
            {k: result[k] for k in ("device", "driver", "ort", "date", "command")},
            {"device": "NVIDIA H100 80GB HBM3", "driver": "580.65.06", "ort": "1.29.0", "date": "2026-11-24", "command": "cmd"},
        )
        self.assertEqual(len(result["runs"]), 4)
        fp16 = next(c for c in result["comparisons"] if c["precision"] == "fp16")
        self.assertAlmostEqual(fp16["ratio_vs_pytorch_eager"], 0.5, places=3)
        self.assertAlmostEqual(fp16["ratio_vs_pytorch_compile"], round(2.64 / 3.64, 3), places=3)
        self.assertAlmostEqual(fp16["image_ratio_vs_pytorch_eager"], round(2.9 / 5.6, 3), places=3)
        # Batch 4 has no PyTorch row to compare with; its denoising time is per image.
        fp8_run = next(r for r in result["runs"] if r["precision"] == "fp8")
        self.assertAlmostEqual(fp8_run["denoise_seconds_per_image"], 1.76, places=4)
        self.assertAlmostEqual(fp8_run["mfu"], floor_seconds("sd3.5-large", "fp8", 1024, 1024, 28) / 1.76, places=3)
        fp8 = next(c for c in result["comparisons"] if c["precision"] == "fp8")
        self.assertNotIn("ratio_vs_pytorch_eager", fp8)
        # A second merge the same day gets its own file.
        with mock.patch.object(merge_results, "gpu_from_nvidia_smi", return_value={}):
            quiet(merge_results.main, [torch_file, ours, "--out-dir", out_dir])
        self.assertTrue(os.path.isfile(os.path.join(out_dir, "gpu-2026-11-24-2.json")))

    def test_compares_the_capi_path_with_the_stock_path_and_labels_both(self):
        # Rows as atelier-bench.ts writes them since issue 9: one per runtime path that ran.
        def ours(path, denoise, **extra):
            return self.row("atelier", "fp16", denoise + 0.3, denoise_seconds=denoise, path=path, **extra)

        torch_file = self.write(
            "torch.json",
            [
                self.row("pytorch", "bf16", 5.6, mode="eager", denoise_seconds_per_image=5.0),
                self.row("pytorch", "bf16", 3.9, mode="compile", denoise_seconds_per_image=3.5),
                # Turbo-like: Large's files, 4 steps, no CFG.
                self.row("pytorch", "bf16", 0.6, mode="eager", steps=4, model="sd3.5-large-turbo", weights="sd3.5-large", cfg=False, denoise_seconds_per_image=0.4),
            ],
        )
        atelier_file = self.write(
            "atelier.json",
            {
                "rows": [
                    ours("stock", 5.0, host_ms_per_step=None, child_ping_p99_ms=180.0),
                    ours("capi", 4.0, host_ms_per_step=1.5, cuda_graph=True, child_ping_p99_ms=2.0),
                    # A capi request that fell back: a stock row, not the stock baseline.
                    ours("stock", 9.0, runtime_requested="capi", fallback_reason="no CUDA provider"),
                    ours("capi", 0.3, steps=4, model="sd3.5-large-turbo", weights="sd3.5-large", cfg=False),
                    ours("stock", 0.5, steps=4, model="sd3.5-large-turbo", weights="sd3.5-large", cfg=False),
                    ours("capi", 0.0, model="sd3.5-medium", error="CUDA graph capture failed"),
                ]
            },
        )
        out_dir = os.path.join(self.dir, "results")
        with mock.patch.object(merge_results, "gpu_from_nvidia_smi", return_value={}):
            quiet(merge_results.main, [torch_file, atelier_file, "--out-dir", out_dir, "--date", "2026-12-02", "--markdown", os.path.join(self.dir, "t.md")])
        result = read_json(os.path.join(out_dir, "gpu-2026-12-02.json"))
        self.assertEqual(len(result["runs"]), 9)
        by = {(c["label"], c["steps"], c.get("fallback_reason")): c for c in result["comparisons"]}
        self.assertEqual(len(by), 5)  # the failed row is kept in runs, never compared
        capi = by[("atelier capi", 28, None)]
        self.assertEqual((capi["ratio_vs_stock"], capi["ratio_vs_pytorch_eager"], capi["ratio_vs_pytorch_compile"]), (0.8, 0.8, round(4.0 / 3.5, 3)))
        self.assertEqual((capi["host_ms_per_step"], capi["cuda_graph"], capi["stock_child_ping_p99_ms"]), (1.5, True, 180.0))
        self.assertNotIn("ratio_vs_stock", by[("atelier stock", 28, None)])
        turbo = by[("atelier capi", 4, None)]
        self.assertEqual((turbo["model"], turbo["cfg"], turbo["ratio_vs_stock"], turbo["ratio_vs_pytorch_eager"]), ("sd3.5-large-turbo", False, 0.6, 0.75))
        # Turbo's floor: Large's FLOPs, one forward per step.
        turbo_run = next(r for r in result["runs"] if r["model"] == "sd3.5-large-turbo" and r.get("path") == "capi")
        self.assertAlmostEqual(turbo_run["floor_seconds_per_image"], floor_seconds("sd3.5-large", "fp16", 1024, 1024, 4, cfg_batch=1), places=4)
        with open(os.path.join(self.dir, "t.md")) as f:
            markdown = f.read()
        self.assertIn("| sd3.5-large | 1024² | 28 | 1 | atelier capi | fp16 | 4.000 |", markdown)
        self.assertIn("atelier capi (error)", markdown)
        self.assertIn("atelier capi no-CFG", markdown)

    def test_pytorch_fp8_rows_are_a_baseline_of_their_own(self):
        torch_file = self.write(
            "torch.json",
            [
                self.row("pytorch", "bf16", 3.9, mode="compile", denoise_seconds_per_image=3.5),
                self.row("pytorch", "fp8", 3.3, mode="compile", denoise_seconds_per_image=2.8, compute_dtype="bf16"),
                self.row("pytorch", "fp8", 6.5, mode="eager", denoise_seconds_per_image=6.2, compute_dtype="bf16"),
            ],
        )
        ours = self.write("atelier.json", [self.row("atelier", "fp8", 3.7, denoise_seconds=3.5, path="capi")])
        out_dir = os.path.join(self.dir, "results")
        with mock.patch.object(merge_results, "gpu_from_nvidia_smi", return_value={}):
            quiet(merge_results.main, [torch_file, ours, "--out-dir", out_dir, "--date", "2026-12-03", "--markdown", os.path.join(self.dir, "t.md")])
        (c,) = read_json(os.path.join(out_dir, "gpu-2026-12-03.json"))["comparisons"]
        self.assertEqual(c["ratio_vs_pytorch_compile"], 1.0)
        self.assertEqual(c["ratio_vs_pytorch_fp8_compile"], 1.25)
        self.assertEqual(c["ratio_vs_pytorch_fp8_eager"], round(3.5 / 6.2, 3))
        self.assertNotIn("ratio_vs_pytorch_eager", c)
        with open(os.path.join(self.dir, "t.md")) as f:
            markdown = f.read()
        self.assertIn("× torch fp8 compile |", markdown)
        self.assertIn("| pytorch compile | fp8 |", markdown)

    def test_a_row_without_its_time_is_refused(self):
        bad = self.row("atelier", "fp16", 1.0)
        del bad["seconds_per_image"]
        path = self.write("bad.json", [bad])
        with self.assertRaisesRegex(ValueError, "seconds_per_image"):
            quiet(merge_results.main, [path, "--out-dir", os.path.join(self.dir, "r")])


if __name__ == "__main__":
    unittest.main()
