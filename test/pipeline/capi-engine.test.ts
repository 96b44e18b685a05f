/**
 * The SD3.5 engine on the C-API path (models.runtime: capi), on the CPU provider with our CPU
 * custom-op library: the same images as the stock path for every kind of job, previews and cancels
 * between steps, the shapes it keeps loaded, and which path `auto` picks where.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { CancelledError } from '../../src/errors.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import type { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { GenerationRequest, RawImage } from '../../src/pipeline/types.js';
import { tinyEngines, tinyRequest } from '../fixtures/tiny-engines.js';

const { ModelProto } = onnxProto.onnx;
const tiny = tinyEngines('atelier-capi-', { maxSteps: 12 });
const { engine } = tiny;
let stock: Sd35Engine;
let capi: Sd35Engine;

beforeAll(async () => {
  stock = await engine({ runtime: 'stock' });
  capi = await engine({ runtime: 'capi', customOpsLibrary: buildCustomOpsLibrary('cpu'), capiShapes: 2 });
});

const request = tinyRequest;

/** More than 76 T5 tokens: the prompt's context is longer than the negative prompt's. */
const LONG_PROMPT = 'qzx vkj wpf '.repeat(19);

/** The op types of every graph in the data dir's graph cache. */
function cachedGraphOps(dataDir: string): Set<string>[] {
  const files = readdirSync(join(dataDir, 'graphs'), { recursive: true, encoding: 'utf8' }).filter((f) =>
    f.endsWith('.onnx'),
  );
  return files.map(
    (f) =>
      new Set(ModelProto.decode(readFileSync(join(dataDir, 'graphs', f))).graph!.node!.map((n) => n.opType!)),
  );
}

/** The op types of every W8A8 C-API step graph in the graph cache (those with our quantizing AdaLN ops). */
function stepGraphOps(dataDir: string): Set<string>[] {
  return cachedGraphOps(dataDir).filter(
    (ops) => ops.has('AdaLNModulateQuant') || ops.has('AdaLNResidualQuant'),
  );
}

/** Largest difference in 8-bit levels between two sets of images. */
function maxLevelDiff(a: RawImage[], b: RawImage[]): number {
  let max = 0;
  a.forEach((image, i) => {
    for (let k = 0; k < image.data.length; k++) max = Math.max(max, Math.abs(image.data[k] - b[i].data[k]));
  });
  return max;
}

describe('the C-API path', () => {
  it('says it runs, with our kernels loaded', () => {
    expect(capi.info().runtime).toEqual({
      path: 'capi',
      cudaGraph: false,
      customOps: true,
      // fp16 layers: no W8A8 GEMMs to accumulate fast or hand codes between.
      stepGraph: {
        fp8FastAccumulation: false,
        fp8MlpHandoff: false,
        fp8Attention: false,
        flashAttention: false,
        stepFusions: true,
        pairedNorms: false,
        sharedRows: false,
      },
      attention: {
        kernel: 'multi-head-attention',
        reason: 'CPU: FlashAttention-3 is a GPU kernel',
        summary: 'MultiHeadAttention (CPU: FlashAttention-3 is a GPU kernel)',
      },
      // Two steps are queued on CUDA only (a stream of our own and its events).
      stepsQueued: 1,
    });
    expect(stock.info().runtime).toMatchObject({ path: 'stock', reason: 'models.runtime is stock' });
  });

  it.each<[string, Partial<GenerationRequest>]>([
    ['text to image with CFG (Euler)', {}],
    ['a batch of 2 with DPM++ 2M', { count: 2, sampler: 'dpmpp_2m', seed: 5 }],
    ['no unconditional pass (guidance 1, as Turbo)', { guidance: 1, steps: 3 }],
    ['another size', { width: 96, height: 128 }],
    ['a prompt longer than its negative (two passes a step)', { prompt: LONG_PROMPT }],
  ])('gives the stock path’s pixels: %s', async (_name, overrides) => {
    const expected = await stock.generate(request(overrides));
    const actual = await capi.generate(request(overrides));
    expect(actual.seeds).toEqual(expected.seeds);
    expect(actual.images).toHaveLength(expected.images.length);
    // Same arithmetic but regrouped (fused modulate, the sampler folded into the graph): a level at most.
    expect(maxLevelDiff(actual.images, expected.images)).toBeLessThanOrEqual(1);
    expect(actual.timings?.hostMsPerStep).toBeGreaterThan(0);
  });

  it('meets such a prompt in the test above (longer context than the negative)', async () => {
    const prepared = await capi.prepare(request({ prompt: LONG_PROMPT }));
    expect(prepared.cond.tokens).toBeGreaterThan(prepared.uncond.tokens);
  });

  it('gives the stock path’s pixels for image to image (a truncated schedule)', async () => {
    const init = (await stock.generate(request({ seed: 9 }))).images[0];
    const overrides = { init: { image: init, strength: 0.6 }, steps: 6 };
    const expected = await stock.generate(request(overrides));
    const actual = await capi.generate(request(overrides));
    expect(maxLevelDiff(actual.images, expected.images)).toBeLessThanOrEqual(1);
  });

  it('reports every step with a preview, and stops between steps when cancelled', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const job = capi.generate(request({ steps: 8 }), {
      signal: controller.signal,
      onStep: ({ step, total, preview }) => {
        steps.push(step);
        expect(total).toBe(8);
        expect(preview).toMatchObject({ width: 16, height: 12 });
        if (step === 3) controller.abort();
      },
    });
    await expect(job).rejects.toBeInstanceOf(CancelledError);
    expect(steps).toEqual([1, 2, 3]);
    // The shape's buffers are reused by the next job, which starts clean.
    const again = await capi.generate(request());
    expect(maxLevelDiff(again.images, (await stock.generate(request())).images)).toBeLessThanOrEqual(1);
  });

  it('keeps only `capiShapes` shapes loaded, reloading one that was dropped', async () => {
    const one = await engine({ runtime: 'capi', customOpsLibrary: null, capiShapes: 1 });
    expect(one.info().runtime).toMatchObject({ path: 'capi', cudaGraph: false, customOps: false });
    for (const size of [
      { width: 128, height: 96 },
      { width: 96, height: 96 },
      { width: 128, height: 96 },
    ]) {
      const expected = await stock.generate(request(size));
      expect(maxLevelDiff((await one.generate(request(size))).images, expected.images)).toBeLessThanOrEqual(
        1,
      );
    }
  });

  it('refuses more steps than its table holds, in words', async () => {
    await expect(capi.generate(request({ steps: 13 }))).rejects.toThrow(
      'A schedule of 13 steps does not fit a step graph of at most 12 steps',
    );
  });

  it('runs fp8 weights as W8A8 (our Fp8Linear) when asked, close to the weight-only fp8 image', async () => {
    const library = buildCustomOpsLibrary('cpu');
    const fp8 = { precision: 'fp8' as const, runtime: 'capi' as const, customOpsLibrary: library };
    const weightOnly = await engine(fp8);
    const w8a8 = await engine({ ...fp8, fp8Linear: 'w8a8' });
    const [a, b] = [await weightOnly.generate(request()), await w8a8.generate(request())];
    // Activations on the e4m3 grid move the pixels, but not far: the same picture.
    const diff = maxLevelDiff(a.images, b.images);
    expect(diff).toBeGreaterThan(0);
    let sum = 0;
    for (let k = 0; k < a.images[0].data.length; k++)
      sum += Math.abs(a.images[0].data[k] - b.images[0].data[k]);
    expect(sum / a.images[0].data.length).toBeLessThan(8);
  });

  it('builds W8A8 step graphs with step 8’s fused residual and split ops, the same pixels as the separate chains', async () => {
    const library = buildCustomOpsLibrary('cpu');
    const w8a8 = {
      precision: 'fp8' as const,
      runtime: 'capi' as const,
      customOpsLibrary: library,
      fp8Linear: 'w8a8' as const,
    };
    // (JointSplitQuant is in both: SiLU(c)'s rows are quantized once either way.)
    const fusedOps = ['AdaLNResidualQuant', 'AdaLNResidual'];
    const separate = await engine({ ...w8a8, stepFusions: false });
    // What the step graph was built with, as benchmark rows report it: fast accumulation, the
    // per-tensor MLP, the paired norms and SiLU(c) quantized once by default.
    expect(separate.info().runtime?.stepGraph).toEqual({
      fp8FastAccumulation: true,
      fp8MlpHandoff: true,
      fp8Attention: false,
      flashAttention: false,
      stepFusions: false,
      pairedNorms: true,
      sharedRows: true,
    });
    const expected = await separate.generate(request());
    // The graph cache holds every step graph this file built: one of them is the separate chain's.
    expect(stepGraphOps(tiny.dataDir).some((ops) => !fusedOps.some((op) => ops.has(op)))).toBe(true);
    const fused = await engine(w8a8);
    const actual = await fused.generate(request());
    expect(
      stepGraphOps(tiny.dataDir).some((ops) => ops.has('AdaLNResidualQuant') && ops.has('JointSplitQuant')),
    ).toBe(true);
    // Exact on the CPU in float32: the same pixels.
    expect(maxLevelDiff(actual.images, expected.images)).toBe(0);
  });

  it('runs the step’s attention as atelier:FlashAttention when asked, with the images of MultiHeadAttention', async () => {
    const library = buildCustomOpsLibrary('cpu');
    const flash = await engine({ runtime: 'capi', customOpsLibrary: library, flashAttention: true });
    expect(flash.info().runtime).toMatchObject({
      stepGraph: { flashAttention: true },
      attention: {
        kernel: 'flash-attention',
        summary: 'atelier:FlashAttention (its CPU reference, as asked)',
      },
    });
    const actual = await flash.generate(request());
    expect(
      cachedGraphOps(tiny.dataDir).some((ops) => ops.has('FlashAttention') && !ops.has('MultiHeadAttention')),
    ).toBe(true);
    const expected = await capi.generate(request());
    // The op rounds attention's output to float16 once in this float32 graph: a level at most.
    expect(maxLevelDiff(actual.images, expected.images)).toBeLessThanOrEqual(1);
  });

  it('is not what `auto` picks on the CPU, and says so', async () => {
    const auto = await engine({});
    expect(auto.info().runtime).toMatchObject({
      path: 'stock',
      reason: expect.stringContaining('auto on the CPU'),
    });
  });
});
