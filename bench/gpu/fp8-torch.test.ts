/**
 * The PyTorch FP8 anchor of issue 10 (bench/gpu/fp8_torch.py), checked on the CPU with Debian's
 * PyTorch, where the FP8 linear layer emulates torch._scaled_mm in float32: the emulation against a
 * float64 reference of the same quantized math and the e4m3 rounding against a table of every value;
 * where Stability's reference is at hand (.gpu/ref, or the mirror fetch-reference.sh copies it from),
 * the module swap on the reference MMDiT-X built from tiny files (every linear layer of the joint
 * blocks, nothing else). The torch_bench.py runs with FP8 rows (~1.5 min more) run with
 * `/usr/bin/python3 -m unittest discover -s bench/gpu -p 'test_fp8_torch.py'`.
 * Needs /usr/bin/python3 with torch and numpy (`apt-get install python3-torch python3-numpy`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const HERE = import.meta.dirname;
const PYTHON = process.env.ATELIER_TRAIN_PYTHON ?? '/usr/bin/python3';
const REFERENCE =
  existsSync(join(HERE, '../../.gpu/ref/sd3_impls.py')) ||
  existsSync(process.env.SD35_MIRROR ?? '/work/.mirror/Stability-AI+sd3.5/repo');

function unittest(tests: string[]): void {
  const probe = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (probe.status !== 0)
    throw new Error(
      `bench/gpu/test_fp8_torch.py needs PyTorch and numpy for ${PYTHON}: apt-get install python3-torch python3-numpy ` +
        `(or set ATELIER_TRAIN_PYTHON). ${(probe.stderr || String(probe.error ?? '')).trim().split('\n').at(-1)}`,
    );
  const r = spawnSync(PYTHON, ['-m', 'unittest', '-v', ...tests.map((t) => `test_fp8_torch.${t}`)], {
    cwd: HERE,
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: '2' },
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${r.stdout}\n${r.stderr}`;
  expect(r.status, output).toBe(0);
  expect(output).toMatch(/\nOK\b/);
}

it('PyTorch FP8 linear layer: the emulation equals float64 W8A8 math, e4m3 rounding equals the table', () => {
  unittest(['QuantizeTest', 'Fp8LinearTest']);
}, 120_000);

it.skipIf(!REFERENCE)(
  'PyTorch FP8 swap: every linear layer of the reference MMDiT-X joint blocks, nothing else (needs the reference)',
  () => {
    unittest([
      'SwapTest.test_every_joint_block_linear_is_swapped_and_nothing_else',
      'SwapTest.test_the_issue10_plan',
    ]);
  },
  300_000,
);
