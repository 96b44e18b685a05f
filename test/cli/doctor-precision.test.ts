/**
 * `atelier doctor`'s precision line: at fp8 it names the route the pipeline will take (W8A8 on FP8
 * tensor cores, or weight-only) and why, in the words of the start log; and its attention line: which
 * kernel runs the MMDiT's attention (FlashAttention-3, or MultiHeadAttention and why). The GPU's
 * compute capability is handed in, so the CUDA cases run without a GPU.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { doctor } from '../../src/cli/doctor.js';
import { loadConfig } from '../../src/config/index.js';
import type { ComputeCapability } from '../../src/pipeline/ort/cuda-runtime.js';
import { builtCustomOpsLibrary, customOpsFeatures } from '../../src/pipeline/ort/custom-ops.js';
import { workdir } from '../config/helpers.js';

/** A checkout where `npm run build:native` has not run: the built library is hidden while set. */
const unbuilt = vi.hoisted(() => ({ on: false }));
vi.mock('../../src/pipeline/ort/custom-ops.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/pipeline/ort/custom-ops.js')>();
  return {
    ...real,
    builtCustomOpsLibrary: (kind: 'cpu' | 'cuda') =>
      unbuilt.on ? undefined : real.builtCustomOpsLibrary(kind),
  };
});
afterEach(() => {
  unbuilt.on = false;
});

async function doctorLine(
  label: string,
  env: Record<string, string>,
  capability?: ComputeCapability,
): Promise<{ line: string | undefined; asked: number[] }> {
  const config = loadConfig({ env, cwd: workdir() });
  const lines: string[] = [];
  const asked: number[] = [];
  await doctor(
    config,
    (line) => lines.push(line),
    () => undefined,
    (deviceId) => {
      asked.push(deviceId);
      return capability;
    },
  );
  return { line: lines.find((l) => l.startsWith(`${label} `)), asked };
}

const precisionLine = (env: Record<string, string>, capability?: ComputeCapability) =>
  doctorLine('precision', env, capability);

describe('atelier doctor: precision', () => {
  it('says fp8 runs weight-only on the CPU, and why', async () => {
    const { line, asked } = await precisionLine({ ATELIER_MODELS__PRECISION: 'fp8' });
    expect(line).toMatch(/^precision +fp8: weight-only \(CPU has no FP8 GEMM\)$/);
    expect(asked).toEqual([]);
  }, 60_000);

  it('says nothing of fp8 at fp32 (auto on the CPU) and fp16', async () => {
    expect((await precisionLine({})).line).toMatch(/^precision +auto \(fp32\)$/);
    expect((await precisionLine({ ATELIER_MODELS__PRECISION: 'fp16' })).line).toMatch(/^precision +fp16$/);
  }, 60_000);

  it('says fp8-weights is weight-only as asked', async () => {
    const { line } = await precisionLine({ ATELIER_MODELS__PRECISION: 'fp8-weights' });
    expect(line).toMatch(/^precision +fp8-weights: weight-only \(as asked\)$/);
  }, 60_000);

  const cuda = { ATELIER_MODELS__EXECUTION_PROVIDER: 'cuda', ATELIER_MODELS__DEVICE_ID: '1' };
  // Whether W8A8 can run depends on the CUDA op library being built (npm run build:native, nvcc).
  const built = builtCustomOpsLibrary('cuda') !== undefined;

  it.runIf(built)(
    'on CUDA with the op library: W8A8 on Hopper, weight-only on an sm_86 GPU',
    async () => {
      const hopper = await precisionLine(cuda, { major: 9, minor: 0 });
      expect(hopper.line).toMatch(
        /^precision +auto \(fp8\): fp8: W8A8 on Hopper tensor cores \(atelier:Fp8Linear\)$/,
      );
      // The GPU asked is the configured one (the attention line asks it too).
      expect(new Set(hopper.asked)).toEqual(new Set([1]));
      const ampere = await precisionLine(
        { ...cuda, ATELIER_MODELS__PRECISION: 'fp8' },
        { major: 8, minor: 6 },
      );
      expect(ampere.line).toMatch(/^precision +fp8: weight-only \(GPU sm_86 has no FP8 tensor cores\)$/);
      const weights = await precisionLine(
        { ...cuda, ATELIER_MODELS__PRECISION: 'fp8-weights' },
        { major: 9, minor: 0 },
      );
      expect(weights.line).toMatch(
        /^precision +fp8-weights: weight-only \(as asked; fp8 would run W8A8 on Hopper tensor cores\)$/,
      );
      const stock = await precisionLine(
        { ...cuda, ATELIER_MODELS__RUNTIME: 'stock' },
        { major: 9, minor: 0 },
      );
      expect(stock.line).toMatch(/^precision +auto \(fp8\): fp8: weight-only \(stock runtime: /);
      expect(stock.asked).toEqual([]);
    },
    120_000,
  );

  it('on CUDA without the op library: weight-only, and how to build it', async () => {
    unbuilt.on = true;
    const { line, asked } = await precisionLine(cuda, { major: 9, minor: 0 });
    expect(line).toMatch(
      /^precision +auto \(fp8\): fp8: weight-only \(op library not built: npm run build:native\)$/,
    );
    expect(asked).toEqual([]);
  }, 60_000);
});

describe('atelier doctor: attention', () => {
  const cuda = { ATELIER_MODELS__EXECUTION_PROVIDER: 'cuda' };

  it('says MultiHeadAttention on the CPU, and why', async () => {
    const { line } = await doctorLine('attention', {});
    expect(line).toMatch(
      /^attention +MultiHeadAttention \((CPU: FlashAttention-3 is a GPU kernel|op library not built: npm run build:native)\)$/,
    );
  }, 60_000);

  it('on CUDA without the op library: MultiHeadAttention, and how to build it', async () => {
    unbuilt.on = true;
    const { line, asked } = await doctorLine('attention', cuda, { major: 9, minor: 0 });
    expect(line).toMatch(/^attention +MultiHeadAttention \(op library not built: npm run build:native\)$/);
    expect(asked).toEqual([]);
  }, 60_000);

  const library = builtCustomOpsLibrary('cuda');
  const withFa3 = library !== undefined && customOpsFeatures(library)?.has('fa3') === true;

  it.runIf(withFa3)(
    'on CUDA with a library built with FlashAttention-3: FA3 on Hopper, MultiHeadAttention on Blackwell',
    async () => {
      expect((await doctorLine('attention', cuda, { major: 9, minor: 0 })).line).toMatch(
        /^attention +FlashAttention-3 on Hopper \(atelier:FlashAttention\)$/,
      );
      expect((await doctorLine('attention', cuda, { major: 10, minor: 0 })).line).toMatch(
        /^attention +MultiHeadAttention \(FlashAttention-3 runs on Hopper \(sm_90\), this GPU is sm_100\)$/,
      );
    },
    120_000,
  );
});
