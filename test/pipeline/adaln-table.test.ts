/**
 * The adaLN modulation table (models/adaln-table.ts): the step graph built with `adalnTable` reads
 * every layer's modulation from a table computed once per job, and must give the same denoised
 * estimate at every step, and the same final latent, as today's step graph, which computes
 * Linear(SiLU(c)) per step: guided, unguided and split-uncond layouts, float32 and float16 compute,
 * and W8A8 (our CPU kernels) on the golden fp8 weights; a job of fewer steps than the graph's rows.
 * Weights, conditioning, steps and tolerances come from the golden manifest.
 */
import { createHash } from 'node:crypto';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adalnTableBytes, buildAdaLNTable } from '../../src/pipeline/models/adaln-table.js';
import {
  MAX_SPLIT_OUTPUTS,
  type MmditConfig,
  mmditConfig,
  modulationLayout,
  modulationSplit,
} from '../../src/pipeline/models/mmdit.js';
import {
  buildSamplerStep,
  conditioningDims,
  modulationTableDims,
  type SamplerStepOptions,
  type SamplerStepShape,
  STEP_COEFFICIENTS,
  stepCoefficients,
  stepConditioning,
} from '../../src/pipeline/models/sampler-step.js';
import { type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net, type NetOptions } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import type { Conditioning } from '../../src/pipeline/sampling/cfg.js';
import { noiseScaling, sigmas } from '../../src/pipeline/sampling/schedule.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type GoldenComponent, type GoldenSampler, goldenSets, relL2 } from '../golden/manifest.js';

type Precision = 'float32' | 'float16' | 'w8a8';
type Layout = 'guided' | 'unguided' | 'split';

describe.each(goldenSets('sampler'))('the adaLN table on the $name golden set', (set) => {
  const golden = set.component<GoldenSampler>('sampler');
  const mmdit = Object.values(set.manifest.components).find(
    (c): c is GoldenComponent & { weights: string; tolerance_rel_l2: number } =>
      c.weights === golden.weights && c.key_prefix !== undefined && typeof c.depth === 'number',
  );
  /** The fp8 copy of the sampler's model, for the W8A8 case (absent in a set without one). */
  const fp8Name = set.has('mmdit_large_fp8') && golden.weights === set.component('mmdit_large').weights;
  const steps = golden.txt2img.steps;
  // Spare rows: every job here runs fewer steps than the graphs were built for.
  const maxSteps = steps + 2;

  const files: SafetensorsFile[] = [];
  const sessions: CapiSession[] = [];
  let library: string;
  let cfg: MmditConfig;
  let cond: Conditioning;
  let uncond: Conditioning;
  let noise: Float32Array;
  let latentDims: number[];

  const weightsOf = (precision: Precision) => {
    const c = precision === 'w8a8' ? set.component('mmdit_large_fp8') : mmdit!;
    const file = set.open(c.weights!);
    files.push(file);
    return new FileWeightSource(file, c.key_prefix ?? mmdit!.key_prefix ?? '');
  };
  const netOptions = (precision: Precision): NetOptions =>
    precision === 'w8a8'
      ? { ...DEFAULT_NET_OPTIONS, fp8Linear: 'w8a8', customOps: true }
      : DEFAULT_NET_OPTIONS;
  const computeOf = (precision: Precision) => (precision === 'float16' ? 'float16' : 'float32');

  function build(precision: Precision, what: (net: Net) => void): BuiltModel {
    const g = new GraphBuilder('adaln');
    what(new Net(g, new Params(g, weightsOf(precision), computeOf(precision)), netOptions(precision)));
    return g.build();
  }

  async function open(model: BuiltModel): Promise<CapiSession> {
    const session = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library] });
    sessions.push(session);
    return session;
  }

  beforeAll(() => {
    library = buildCustomOpsLibrary('cpu');
    const file = set.open(golden.weights!);
    const io = set.open(golden.io);
    files.push(file, io);
    const g = new GraphBuilder('probe');
    cfg = mmditConfig(new Params(g, new FileWeightSource(file, mmdit!.key_prefix ?? ''), 'float32'));
    const conditioning = (prefix: 'cond' | 'uncond'): Conditioning => ({
      context: io.readFloat32(`${prefix}_context`),
      tokens: io.get(`${prefix}_context`).shape[1],
      y: io.readFloat32(`${prefix}_y`),
    });
    cond = conditioning('cond');
    uncond = conditioning('uncond');
    noise = io.readFloat32('noise');
    latentDims = io.get('noise').shape;
  });

  afterAll(() => {
    for (const s of sessions) s.release();
    for (const f of files) f.close();
  });

  /** The prompts of a layout: a split one has a prompt of more context tokens than the negative. */
  function prompts(layout: Layout): { cond: Conditioning; uncond: Conditioning; guidance: number } {
    const guidance = layout === 'unguided' ? 1 : golden.txt2img.cfg;
    if (layout !== 'split') return { cond, uncond, guidance };
    const width = cond.context.length / cond.tokens;
    const extra = 4;
    const context = new Float32Array((cond.tokens + extra) * width);
    context.set(cond.context);
    for (let k = cond.context.length; k < context.length; k++) context[k] = Math.sin(0.37 * k + 1.1);
    return { cond: { ...cond, context, tokens: cond.tokens + extra }, uncond, guidance };
  }

  function job(layout: Layout, images: number) {
    const p = prompts(layout);
    const conditioning = stepConditioning(p.cond, p.uncond, p.guidance, images);
    const [, , height, width] = latentDims;
    const shape: SamplerStepShape = {
      images,
      height: height!,
      width: width!,
      maxSteps,
      ...conditioning.shape,
    };
    return { shape, conditioning, guidance: p.guidance };
  }

  interface Trace {
    x: Float32Array;
    denoised: Float32Array[];
  }

  const f32 = (data: Float32Array, dims: number[]): HostTensor => ({ type: 'float32', dims, data });

  /** The step graph run step by step; `mods` is the table when the graph reads one. */
  async function run(
    session: CapiSession,
    j: ReturnType<typeof job>,
    schedule: Float32Array,
    coeffs: Float32Array,
    mods?: HostTensor,
  ): Promise<Trace> {
    const { images } = j.shape;
    const dims = [images, ...latentDims.slice(1)];
    const start = new Float32Array(images * noise.length);
    for (let i = 0; i < images; i++) start.set(i % 2 ? noise.slice().reverse() : noise, i * noise.length);
    let x = f32(noiseScaling(schedule[0]!, start), dims);
    let prev = f32(new Float32Array(start.length), dims);
    let step: HostTensor = { type: 'int64', dims: [1], data: new BigInt64Array([0n]) };
    const feeds: Record<string, HostTensor> = {
      coeffs: f32(coeffs, [maxSteps, STEP_COEFFICIENTS]),
      guidance: f32(new Float32Array([j.guidance]), [1]),
      ...(mods ? { mods } : {}),
    };
    for (const [name, d] of Object.entries(conditioningDims(cfg, j.shape)))
      feeds[name] = f32(j.conditioning.inputs[name as keyof typeof j.conditioning.inputs]!, d);
    const used = Object.fromEntries(Object.entries(feeds).filter(([k]) => session.inputNames.includes(k)));
    const denoised: Float32Array[] = [];
    for (let i = 0; i < schedule.length - 1; i++) {
      const out = await session.run({ ...used, x, prev_denoised: prev, step });
      x = out.x_next!;
      prev = out.denoised!;
      step = out.step_next!;
      denoised.push(out.denoised!.data as Float32Array);
    }
    return { x: x.data as Float32Array, denoised };
  }

  /** The job's table, from the table graph of its shape. */
  async function table(
    precision: Precision,
    j: ReturnType<typeof job>,
    coeffs: Float32Array,
    options: SamplerStepOptions = {},
  ): Promise<HostTensor> {
    const session = await open(build(precision, (net) => buildAdaLNTable(net, cfg, j.shape, options)));
    const feeds: Record<string, HostTensor> = { coeffs: f32(coeffs, [maxSteps, STEP_COEFFICIENTS]) };
    for (const [name, d] of Object.entries(conditioningDims(cfg, j.shape)))
      if (/^y/.test(name)) feeds[name] = f32(j.conditioning.inputs[name as 'y' | 'y_uncond']!, d);
    return (await session.run(feeds)).mods!;
  }

  const stepGraph = (precision: Precision, shape: SamplerStepShape, options?: SamplerStepOptions) =>
    build(precision, (net) => buildSamplerStep(net, cfg, shape, options));

  const precisions: Precision[] = ['float32', 'float16', ...(fp8Name ? (['w8a8'] as const) : [])];
  /**
   * The smallest Split limit that still splits this model's chunks in two levels: how the large
   * models' tables are split (mmdit.ts MAX_SPLIT_OUTPUTS), which the small golden ones would not need.
   */
  const twoLevel = () => Math.ceil(Math.sqrt(modulationSplit(cfg).chunks));
  const cases = precisions.flatMap((precision) =>
    (['guided', 'unguided', 'split'] as const).flatMap((layout) => [
      { precision, layout, splits: 'one split' },
      ...(precision !== 'float16' ? [{ precision, layout, splits: 'two-level split' }] : []),
    ]),
  );

  it.each(cases)(
    '$precision, $layout, $splits: the same denoised at every step as the per-step modulation',
    async ({ precision, layout, splits }) => {
      const options: SamplerStepOptions = splits === 'one split' ? {} : { maxSplitOutputs: twoLevel() };
      if (options.maxSplitOutputs)
        expect(modulationSplit(cfg, options.maxSplitOutputs).groups).toBeGreaterThan(1);
      const j = job(layout, layout === 'guided' ? 2 : 1);
      expect(j.shape.uncondTokens !== undefined).toBe(layout === 'split');
      // A job of fewer steps than the table's rows (the later rows are σ = 0, never read).
      const schedule = sigmas(steps, golden.shift);
      expect(schedule.length - 1).toBeLessThan(maxSteps);
      const coeffs = stepCoefficients('euler', schedule, maxSteps);
      const ref = await run(await open(stepGraph(precision, j.shape)), j, schedule, coeffs);
      const tableStep = await open(stepGraph(precision, j.shape, { adalnTable: true, ...options }));
      const mods = await table(precision, j, coeffs, options);
      expect(mods.dims).toEqual(modulationTableDims(cfg, j.shape, options.maxSplitOutputs));
      expect(mods.type).toBe(computeOf(precision));
      const got = await run(tableStep, j, schedule, coeffs, mods);
      // Both graphs compute the same layers on the same values; only the batching of the GEMMs
      // differs (M = steps · rows in the table), which may change their roundings: the manifest's
      // tolerance for the model bounds that in float32 and W8A8 (float32 out of our kernels); in
      // float16 a value one rounding apart (unit roundoff 2⁻¹¹ ≈ 4.9e-4) carried through the layers,
      // so four of them (measured: ≤ 5.3e-4 at the first step).
      const tolerance = precision === 'float16' ? 4 * 2 ** -11 : mmdit!.tolerance_rel_l2;
      for (let i = 0; i < ref.denoised.length; i++)
        expect(relL2(got.denoised[i]!, ref.denoised[i]!), `denoised at step ${i}`).toBeLessThanOrEqual(
          tolerance,
        );
      const err = relL2(got.x, ref.x);
      expect(err).toBeLessThanOrEqual(tolerance);

      // The step's row matters: the table of the schedule shifted by one step moves the result, by
      // far more than the table's own error.
      const shifted = stepCoefficients('euler', schedule.slice(1), maxSteps);
      const wrong = await run(tableStep, j, schedule, coeffs, await table(precision, j, shifted, options));
      expect(relL2(wrong.x, ref.x)).toBeGreaterThan(Math.max(10 * err, tolerance));
    },
  );

  describe('the graphs', () => {
    const shape = (): SamplerStepShape => job('guided', 1).shape;

    it('leaves the step graph byte for byte as it was when the option is off', () => {
      const hash = (m: BuiltModel) => createHash('sha256').update(m.bytes).digest('hex');
      for (const precision of precisions) {
        const today = hash(stepGraph(precision, shape()));
        expect(hash(stepGraph(precision, shape(), {}))).toBe(today);
        expect(hash(stepGraph(precision, shape(), { adalnTable: false }))).toBe(today);
        expect(hash(stepGraph(precision, shape(), { adalnTable: true }))).not.toBe(today);
      }
    });

    it('takes `mods` in place of the pooled text, and holds no adaLN or embedder weights', () => {
      for (const s of [shape(), job('split', 1).shape]) {
        const graph = onnxProto.onnx.ModelProto.decode(stepGraph('float32', s, { adalnTable: true }).bytes)
          .graph!;
        const inputs = graph.input!.map((v) => v.name);
        expect(inputs).toContain('mods');
        expect(inputs.filter((n) => /^y/.test(n!))).toEqual([]);
        const weights = graph.initializer!.map((t) => t.name!).join(' ');
        expect(weights).not.toMatch(/\.(adaLN_modulation|t_embedder|y_embedder)\./);
        expect(weights).toMatch(/\.context_embedder\./);
        const mods = graph.input!.find((v) => v.name === 'mods')!;
        expect(mods.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue))).toEqual(
          modulationTableDims(cfg, s),
        );
      }
    });

    it('splits the large models’ tables in two levels of at most 32 equal outputs (CUDA graph capture)', () => {
      const real = (depth: number, xBlockSelfAttnLayers: number[]): MmditConfig => ({
        ...cfg,
        depth,
        hidden: 64 * depth,
        heads: depth,
        xBlockSelfAttnLayers,
      });
      // SD3.5 Large: 38 blocks; Medium: 24 blocks, dual attention in the first 13.
      const large = real(38, []);
      const medium = real(
        24,
        Array.from({ length: 13 }, (_, i) => i),
      );
      expect(modulationSplit(large)).toEqual({ chunks: 454, groups: 19, size: 24 });
      expect(modulationSplit(medium)).toEqual({ chunks: 325, groups: 13, size: 25 });
      for (const c of [large, medium, cfg]) {
        const { chunks, groups, size } = modulationSplit(c);
        expect(Math.max(groups, size)).toBeLessThanOrEqual(MAX_SPLIT_OUTPUTS);
        expect(groups * size).toBeGreaterThanOrEqual(chunks);
      }
    });

    it('lays every adaLN layer of the model into the table, and sizes it', () => {
      const layout = modulationLayout(cfg);
      const file = set.open(golden.weights!);
      files.push(file);
      const prefix = mmdit!.key_prefix ?? '';
      const layers = file
        .names()
        .filter((k) => k.endsWith('adaLN_modulation.1.weight'))
        .map((k) => k.slice(prefix.length, -'.adaLN_modulation.1.weight'.length));
      expect(layout.map((l) => l.prefix).sort()).toEqual(layers.sort());
      for (const l of layout)
        expect(l.chunks * cfg.hidden).toBe(
          file.get(`${prefix}${l.prefix}.adaLN_modulation.1.weight`).shape[0],
        );
      const [rows, width] = modulationTableDims(cfg, shape()).slice(1);
      expect(adalnTableBytes(cfg, shape(), 'float16')).toBe(maxSteps * rows! * width! * 2);
    });
  });
});
