/**
 * The whole denoising step as one static-shape graph (models/sampler-step.ts) against the
 * JavaScript path it replaces: cfgDenoiser over the plain MMDiT graph, then sampleEuler /
 * sampleDpmpp2m. Weights, conditioning, noise, step counts and guidance come from the golden
 * manifest (the reference's sampler run), never from constants.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMmdit, type MmditConfig, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import {
  buildSamplerStep,
  conditioningDims,
  type SamplerStepShape,
  STEP_COEFFICIENTS,
  splitsUncond,
  stepCoefficients,
  stepConditioning,
} from '../../src/pipeline/models/sampler-step.js';
import { type BuiltModel, GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import { Net, type NetOptions } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { floatTensor, int64Tensor } from '../../src/pipeline/onnx/tensors.js';
import { type Conditioning, cfgDenoiser, stackConditioning } from '../../src/pipeline/sampling/cfg.js';
import { type Denoiser, SAMPLERS } from '../../src/pipeline/sampling/samplers.js';
import { noiseScaling, sigmas, truncateForDenoise } from '../../src/pipeline/sampling/schedule.js';
import { mmditModel } from '../../src/pipeline/sd35/denoiser.js';
import type { SamplerName } from '../../src/pipeline/types.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';
import {
  type GoldenComponent,
  type GoldenSampler,
  goldenSets,
  manifestPath,
  relL2,
} from '../golden/manifest.js';

const f32 = Math.fround;
describe.each(goldenSets('sampler'))('sampler step graph on the $name golden set', (set) => {
  const golden = set.component<GoldenSampler>('sampler');
  /**
   * The MMDiT component whose weights the sampler run used: its key prefix names the tensors
   * (the file may hold other components too, as the project's end-to-end checkpoint does).
   */
  const mmdit = Object.values(set.manifest.components).find(
    (c): c is GoldenComponent =>
      c.weights === golden.weights && c.key_prefix !== undefined && typeof c.depth === 'number',
  );
  const SAMPLER_NAMES = Object.keys(SAMPLERS) as SamplerName[];
  /**
   * The graph regroups the sampler update (a·x + b·den + c·prev instead of samplers.ts's chain) and
   * ONNX Runtime may order the MMDiT's sums differently per batch shape: float32 roundings, ~1e-7
   * per step. 1e-5 leaves room for the steps to compound them and still catches any wrong
   * coefficient, row or batch layout, which move the result by 1e-2 or more.
   */
  const FLOAT32_TOLERANCE = 1e-5;

  const files: SafetensorsFile[] = [];
  const sessions: ort.InferenceSession[] = [];
  let weights: SafetensorsFile;
  let cfg: MmditConfig;
  let js: ort.InferenceSession;
  let cond: Conditioning;
  let uncond: Conditioning;
  /** One image's start noise [1, C, H, W]. */
  let noise: Float32Array;
  let latentDims: [number, number, number, number];

  function params(g: GraphBuilder, compute: 'float32' | 'float16'): Params {
    return new Params(g, new FileWeightSource(weights, mmdit!.key_prefix ?? ''), compute);
  }

  function buildStep(shape: SamplerStepShape, compute: 'float32' | 'float16' = 'float32'): BuiltModel {
    const g = new GraphBuilder('sampler_step');
    buildSamplerStep(new Net(g, params(g, compute)), cfg, shape);
    return g.build();
  }

  async function open(name: string, model: BuiltModel): Promise<ort.InferenceSession> {
    const session = await openSession(name, model, { provider: 'cpu' });
    sessions.push(session);
    return session;
  }

  function conditioning(io: SafetensorsFile, prefix: 'cond' | 'uncond'): Conditioning {
    return {
      context: io.readFloat32(`${prefix}_context`),
      tokens: io.get(`${prefix}_context`).shape[1],
      y: io.readFloat32(`${prefix}_y`),
    };
  }

  beforeAll(async () => {
    if (!golden.weights || !mmdit)
      throw new Error('The golden sampler names no MMDiT weights with a key prefix');
    weights = set.open(golden.weights);
    const io = set.open(golden.io);
    files.push(weights, io);
    const g = new GraphBuilder('mmdit');
    const p = params(g, 'float32');
    cfg = mmditConfig(p);
    buildMmdit(new Net(g, p), cfg);
    js = await open('mmdit', g.build());
    cond = conditioning(io, 'cond');
    uncond = conditioning(io, 'uncond');
    noise = io.readFloat32('noise');
    latentDims = io.get('noise').shape as [number, number, number, number];
  });

  afterAll(async () => {
    for (const s of sessions) await s.release();
    for (const f of files) f.close();
  });

  interface Case {
    sampler: SamplerName;
    images: number;
    guidance: number;
    /** The prompts' conditioning; the golden cond and uncond when absent. */
    prompts?: Prompts;
  }

  interface Prompts {
    cond: Conditioning;
    uncond: Conditioning;
  }

  const goldenPrompts = (): Prompts => ({ cond, uncond });

  /**
   * `c` with `extra` more context tokens after its own, as a longer T5 prompt has: deterministic
   * values of the same RMS as its context, so the extra tokens move the prediction.
   */
  function withExtraTokens(c: Conditioning, extra: number): Conditioning {
    const width = c.context.length / c.tokens;
    const rms = Math.sqrt(c.context.reduce((s, v) => s + v * v, 0) / c.context.length);
    const context = new Float32Array((c.tokens + extra) * width);
    context.set(c.context);
    for (let k = c.context.length; k < context.length; k++) context[k] = f32(rms * Math.sin(0.37 * k + 1.1));
    return { context, tokens: c.tokens + extra, y: c.y };
  }

  /** EXTRA more tokens in the prompt than in the negative prompt (a prompt past 76 T5 tokens). */
  const EXTRA_TOKENS = 8;
  const longPrompt = (): Prompts => ({ cond: withExtraTokens(cond, EXTRA_TOKENS), uncond });
  /** The other way round: a negative prompt longer than the prompt. */
  const longNegative = (): Prompts => ({ cond, uncond: withExtraTokens(uncond, EXTRA_TOKENS) });

  /** The start latent of `images` different images at σ₀ (the second is the noise reversed). */
  function startLatent(images: number, sigma0: number): Float32Array {
    const x = new Float32Array(images * noise.length);
    for (let i = 0; i < images; i++) x.set(i % 2 ? noise.slice().reverse() : noise, i * noise.length);
    return noiseScaling(sigma0, x);
  }

  interface Trace {
    x: Float32Array;
    denoised: Float32Array[];
  }

  /** The JavaScript path: cfgDenoiser over the plain MMDiT graph, then the sampler. */
  async function runJs(c: Case, schedule: Float32Array): Promise<Trace> {
    const [, channels, height, width] = latentDims;
    const { cond, uncond } = c.prompts ?? goldenPrompts();
    const denoise = cfgDenoiser({
      model: mmditModel(js),
      latentDims: [c.images, channels, height, width],
      cond,
      uncond,
      scale: c.guidance,
    });
    const denoised: Float32Array[] = [];
    const x = await SAMPLERS[c.sampler](denoise, startLatent(c.images, schedule[0]), schedule, {
      onStep: (_i, _total, _x, d) => {
        denoised.push(d);
      },
    });
    return { x, denoised };
  }

  /** The step graph replayed once per step, its outputs fed back as the next step's inputs. */
  async function runGraph(
    session: ort.InferenceSession,
    c: Case,
    schedule: Float32Array,
    maxSteps: number,
  ): Promise<Trace & { steps: bigint[] }> {
    // The conditioning inputs as the C-API denoiser fills them: stepConditioning's arrays with
    // conditioningDims's dims, whichever layout the job gets.
    const shape = shapeOf(c, maxSteps);
    const { inputs } = stepConditioning(shape.prompts.cond, shape.prompts.uncond, c.guidance, c.images);
    const conditioningInputs: Record<string, ort.Tensor> = {};
    for (const [name, dims] of Object.entries(conditioningDims(cfg, shape)) as [string, number[]][])
      conditioningInputs[name] = floatTensor(inputs[name as keyof typeof inputs]!, dims);
    const dims = [c.images, ...latentDims.slice(1)];
    let x = floatTensor(startLatent(c.images, schedule[0]), dims);
    let prev = floatTensor(new Float32Array(x.size), dims);
    let step = int64Tensor([0], [1]);
    const fixed = {
      coeffs: floatTensor(stepCoefficients(c.sampler, schedule, maxSteps), [maxSteps, STEP_COEFFICIENTS]),
      ...conditioningInputs,
      guidance: floatTensor(new Float32Array([c.guidance]), [1]),
    };
    const denoised: Float32Array[] = [];
    const steps: bigint[] = [];
    for (let i = 0; i < schedule.length - 1; i++) {
      const out = await session.run({ ...fixed, x, prev_denoised: prev, step });
      x = out.x_next;
      prev = out.denoised;
      step = out.step_next;
      denoised.push(out.denoised.data as Float32Array);
      steps.push((step.data as BigInt64Array)[0]);
    }
    return { x: x.data as Float32Array, denoised, steps };
  }

  /** The step graph's shape for a case (stepConditioning picks the layout), and the case's prompts. */
  function shapeOf(c: Case, maxSteps: number): SamplerStepShape & { prompts: Prompts } {
    const [, , height, width] = latentDims;
    const prompts = c.prompts ?? goldenPrompts();
    const { shape } = stepConditioning(prompts.cond, prompts.uncond, c.guidance, c.images);
    return { images: c.images, height, width, ...shape, maxSteps, prompts };
  }

  /** The graph-building fields of shapeOf (the prompts stay out of the model). */
  function stepShape(c: Case, maxSteps: number): SamplerStepShape {
    const { prompts: _, ...shape } = shapeOf(c, maxSteps);
    return shape;
  }

  describe('the sampler step graph against cfgDenoiser + the JavaScript samplers', () => {
    const steps = golden.txt2img.steps;
    // Spare rows: a job may run fewer steps than the graph was built for.
    const maxSteps = steps + 2;
    const stepGraphs = new Map<string, Promise<ort.InferenceSession>>();
    const stepGraph = (c: Case) => {
      const shape = stepShape(c, maxSteps);
      const key = JSON.stringify(shape);
      if (!stepGraphs.has(key)) stepGraphs.set(key, open('sampler_step', buildStep(shape)));
      return stepGraphs.get(key)!;
    };

    it('has distinct cond and uncond conditioning to guide with', () => {
      expect(relL2(cond.context, uncond.context)).toBeGreaterThan(0.1);
      expect(golden.txt2img.cfg).toBeGreaterThan(1);
    });

    const cases: Case[] = SAMPLER_NAMES.flatMap((sampler) =>
      [1, 2].flatMap((images) => [golden.txt2img.cfg, 1].map((guidance) => ({ sampler, images, guidance }))),
    );

    /** The graph's run against the JavaScript path's, step for step. */
    async function compare(c: Case): Promise<Trace> {
      const schedule = sigmas(steps, golden.shift);
      const ref = await runJs(c, schedule);
      const got = await runGraph(await stepGraph(c), c, schedule, maxSteps);
      expect(got.steps).toEqual(Array.from({ length: steps }, (_, i) => BigInt(i + 1)));
      for (let i = 0; i < steps; i++)
        expect(relL2(got.denoised[i], ref.denoised[i]), `denoised at step ${i}`).toBeLessThanOrEqual(
          FLOAT32_TOLERANCE,
        );
      const err = relL2(got.x, ref.x);
      expect(err).toBeLessThanOrEqual(FLOAT32_TOLERANCE);
      // The run went somewhere: the final latent is far from the start noise.
      expect(relL2(got.x, startLatent(c.images, schedule[0]))).toBeGreaterThan(0.1);
      return got;
    }

    it.each(cases)('$sampler, $images image(s), guidance $guidance', async (c) => {
      expect(splitsUncond(stepShape(c, maxSteps))).toBe(false);
      await compare(c);
    });

    const splitCases: (Case & { name: string })[] = [
      ...SAMPLER_NAMES.flatMap((sampler) =>
        [1, 2].map((images) => ({ name: 'a longer prompt', sampler, images, guidance: golden.txt2img.cfg })),
      ),
      { name: 'a longer negative prompt', sampler: 'dpmpp_2m', images: 2, guidance: golden.txt2img.cfg },
    ];

    it.each(splitCases)('$sampler, $images image(s), $name: one MMDiT pass per prompt', async (c) => {
      const prompts = c.name === 'a longer prompt' ? longPrompt() : longNegative();
      const split: Case = { ...c, prompts };
      expect(prompts.cond.tokens).not.toBe(prompts.uncond.tokens);
      expect(stepShape(split, maxSteps)).toMatchObject({
        tokens: prompts.cond.tokens,
        uncondTokens: prompts.uncond.tokens,
        guided: true,
      });
      const got = await compare(split);
      // The extra tokens matter: the same run with the golden prompts (one batch) ends elsewhere.
      const batched = await runGraph(await stepGraph(c), c, sigmas(steps, golden.shift), maxSteps);
      expect(relL2(got.x, batched.x)).toBeGreaterThan(100 * FLOAT32_TOLERANCE);
    });

    it('runs an img2img schedule (a truncated one, fewer steps than rows)', async () => {
      const c: Case = { sampler: 'dpmpp_2m', images: 1, guidance: golden.img2img.cfg };
      const schedule = truncateForDenoise(sigmas(steps, golden.shift), golden.img2img.denoise);
      expect(schedule.length - 1).toBeLessThan(steps);
      const ref = await runJs(c, schedule);
      const got = await runGraph(await stepGraph(c), c, schedule, maxSteps);
      expect(relL2(got.x, ref.x)).toBeLessThanOrEqual(FLOAT32_TOLERANCE);
    });

    it.each([
      ['one batch', goldenPrompts],
      ['a longer prompt (split)', longPrompt],
    ] as const)('runs in float16 compute, close to the float32 path: %s', async (_name, prompts) => {
      const c: Case = { sampler: 'dpmpp_2m', images: 2, guidance: golden.txt2img.cfg, prompts: prompts() };
      const schedule = sigmas(steps, golden.shift);
      const session = await open('sampler_step_f16', buildStep(stepShape(c, maxSteps), 'float16'));
      const ref = await runJs(c, schedule);
      const got = await runGraph(session, c, schedule, maxSteps);
      expect(got.steps.at(-1)).toBe(BigInt(steps));
      const err = relL2(got.x, ref.x);
      // float16 carries 11 significant bits (unit roundoff 2⁻¹¹ ≈ 4.9e-4): every weight, activation
      // and velocity rounds at that size (measured: ~1e-3 after the run). 1e-2, twenty unit
      // roundoffs, leaves room for other weights and step counts and is still far below the ~1e-1
      // a wrong coefficient or row makes. The error must also exceed float32's, or the graph did
      // not compute in float16 at all.
      expect(err).toBeLessThanOrEqual(1e-2);
      expect(err).toBeGreaterThan(FLOAT32_TOLERANCE);
    });
  });

  describe('the sampler step graph is static', () => {
    const shape = (): SamplerStepShape => stepShape({ sampler: 'euler', images: 2, guidance: 2 }, 3);
    /** The same with a negative prompt of UNCOND_TOKENS context tokens: two MMDiT passes. */
    const UNCOND_TOKENS = 3;
    const splitShape = (): SamplerStepShape => ({ ...shape(), uncondTokens: UNCOND_TOKENS });

    function graphOf(bytes: Uint8Array) {
      return onnxProto.onnx.ModelProto.decode(bytes).graph!;
    }

    function dims(values: onnxProto.onnx.IValueInfoProto[]) {
      return values.map((v) => ({
        name: v.name,
        dims: v.type!.tensorType!.shape!.dim!.map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue))),
      }));
    }

    it('has the contract’s inputs and outputs, every dim a number', () => {
      for (const compute of ['float32', 'float16'] as const) {
        const graph = graphOf(buildStep(shape(), compute).bytes);
        const { images, height, width, tokens, maxSteps } = shape();
        const latent = [images, cfg.inChannels, height, width];
        expect(dims(graph.input!)).toEqual([
          { name: 'x', dims: latent },
          { name: 'prev_denoised', dims: latent },
          { name: 'step', dims: [1] },
          { name: 'coeffs', dims: [maxSteps, STEP_COEFFICIENTS] },
          { name: 'context', dims: [2 * images, tokens, cfg.contextDim] },
          { name: 'y', dims: [2 * images, cfg.admInChannels] },
          { name: 'guidance', dims: [1] },
        ]);
        expect(dims(graph.output!)).toEqual([
          { name: 'x_next', dims: latent },
          { name: 'denoised', dims: latent },
          { name: 'step_next', dims: [1] },
        ]);
        // Float inputs and outputs are float32 whatever the compute type; the step counter int64.
        const { float32: f, int64: i } = ONNX_DTYPE;
        const types = [...graph.input!, ...graph.output!].map((v) => v.type!.tensorType!.elemType);
        expect(types).toEqual([f, f, i, f, f, f, f, f, f, i]);
      }
    });

    it('has two conditioning inputs more when the negative prompt has a token count of its own', () => {
      for (const compute of ['float32', 'float16'] as const) {
        const graph = graphOf(buildStep(splitShape(), compute).bytes);
        const { images, height, width, tokens, maxSteps } = splitShape();
        const latent = [images, cfg.inChannels, height, width];
        expect(dims(graph.input!)).toEqual([
          { name: 'x', dims: latent },
          { name: 'prev_denoised', dims: latent },
          { name: 'step', dims: [1] },
          { name: 'coeffs', dims: [maxSteps, STEP_COEFFICIENTS] },
          { name: 'context', dims: [images, tokens, cfg.contextDim] },
          { name: 'y', dims: [images, cfg.admInChannels] },
          { name: 'context_uncond', dims: [images, UNCOND_TOKENS, cfg.contextDim] },
          { name: 'y_uncond', dims: [images, cfg.admInChannels] },
          { name: 'guidance', dims: [1] },
        ]);
        expect(dims(graph.output!)).toEqual([
          { name: 'x_next', dims: latent },
          { name: 'denoised', dims: latent },
          { name: 'step_next', dims: [1] },
        ]);
        const { float32: f, int64: i } = ONNX_DTYPE;
        const types = [...graph.input!, ...graph.output!].map((v) => v.type!.tensorType!.elemType);
        expect(types).toEqual([f, f, i, f, f, f, f, f, f, f, f, i]);
        // conditioningDims describes the same inputs (the C-API denoiser allocates from it).
        const described = Object.entries(conditioningDims(cfg, splitShape())).map(([name, d]) => ({
          name,
          dims: d,
        }));
        expect(dims(graph.input!).filter((v) => /^(context|y)/.test(v.name ?? ''))).toEqual(described);
      }
    });

    it('is today’s batched graph, byte for byte, unless the token counts differ and it is guided', () => {
      for (const compute of ['float32', 'float16'] as const) {
        const batched = buildStep(shape(), compute).bytes;
        expect(buildStep({ ...shape(), uncondTokens: shape().tokens }, compute).bytes).toEqual(batched);
        const unguided = { ...shape(), guided: false };
        expect(buildStep({ ...unguided, uncondTokens: UNCOND_TOKENS }, compute).bytes).toEqual(
          buildStep(unguided, compute).bytes,
        );
        expect(buildStep(splitShape(), compute).bytes).not.toEqual(batched);
      }
    });

    /** Initializers by kind: weights (external data, bytes in the checkpoint) and in-model constants. */
    function initializers(bytes: Uint8Array) {
      const all = graphOf(bytes).initializer!;
      const size = (t: onnxProto.onnx.ITensorProto) =>
        t.externalData?.length
          ? Number(t.externalData.find((e) => e.key === 'length')!.value)
          : (t.rawData?.length ?? 0);
      const weights = all.filter((t) => t.externalData?.length);
      const sum = (ts: onnxProto.onnx.ITensorProto[]) => ts.reduce((n, t) => n + size(t), 0);
      return {
        count: all.length,
        bytes: sum(all),
        weights: weights.map((t) => t.name!).sort(),
        weightBytes: sum(weights),
      };
    }

    it('shares one copy of every weight and constant between the two MMDiT passes', () => {
      for (const compute of ['float32', 'float16'] as const)
        for (const images of [1, 2]) {
          const batched = initializers(buildStep({ ...shape(), images }, compute).bytes);
          const split = initializers(buildStep({ ...splitShape(), images }, compute).bytes);
          expect(batched.weights.length).toBeGreaterThan(10);
          // The same weights, each once.
          expect(split.weights).toEqual(batched.weights);
          expect(split.weightBytes).toBe(batched.weightBytes);
          // And no constant twice: as many initializers and bytes as the batched graph. (With 2
          // images, the batched graph holds one int64 more: the row count 4 its CFG slice ends at.)
          const rowEnd = images === 1 ? 0 : 1;
          expect(split.count, `${compute}, ${images}`).toBe(batched.count - rowEnd);
          expect(split.bytes, `${compute}, ${images}`).toBe(batched.bytes - 8 * rowEnd);
          // The unguided graph has one MMDiT pass: the split one holds no more than it.
          const unguided = initializers(buildStep({ ...shape(), images, guided: false }, compute).bytes);
          expect(split).toEqual(unguided);
        }
    });

    const fp8Models = ['mmdit_large_fp8', 'mmdit_large_scaled_fp8'].filter((name) => set.has(name));
    if (fp8Models.length > 0)
      it.each(fp8Models)(
        'shares the fp8 weights of %s and their dequantization, in both fp8 linear modes',
        (name: string) => {
          const c = set.component<GoldenComponent & { inputs_from: string }>(name);
          // The fp8 checkpoints name their tensors as the float one their inputs come from.
          const io = manifestPath(c.inputs_from);
          const prefix = Object.values(set.manifest.components).find((o) => o.io === io)?.key_prefix ?? '';
          const stored = set.open(c.weights!);
          files.push(stored);
          // Some writers store a scale as [1] rather than a scalar: the same sharing must hold.
          const variants = [stored];
          if (stored.names().some((n) => n.endsWith('.scale_weight')))
            variants.push(withVectorScales(stored));
          for (const file of variants)
            for (const fp8Linear of ['dequantize', 'block-fp8'] as const) {
              const build = (s: SamplerStepShape) => {
                const g = new GraphBuilder('sampler_step');
                const p = new Params(g, new FileWeightSource(file, prefix), 'float16');
                const options: NetOptions = { attention: 'mha', fp8Linear };
                const fp8Cfg = mmditConfig(p);
                buildSamplerStep(new Net(g, p, options), fp8Cfg, {
                  ...s,
                  height: 2 * fp8Cfg.patchSize,
                  width: 2 * fp8Cfg.patchSize,
                });
                const bytes = g.build().bytes;
                const dequantize = graphOf(bytes).node!.filter((n) => n.opType === 'DequantizeLinear').length;
                return { ...initializers(bytes), dequantize };
              };
              const s: SamplerStepShape = {
                images: 1,
                height: 0,
                width: 0,
                tokens: 5,
                guided: true,
                maxSteps: 2,
              };
              const batched = build(s);
              const split = build({ ...s, uncondTokens: 9 });
              // Each fp8 weight once, each block-scale table once, each DequantizeLinear once (ONNX
              // Runtime folds or runs each one: a second node would be a second float copy of the weight).
              expect(split, `${fp8Linear}, ${file.path}`).toEqual(batched);
              expect(batched.dequantize, fp8Linear).toBeGreaterThan(0);
            }
        },
      );

    it('runs what the passes have in common once: x’s patch embedding, the timestep embedding', () => {
      const ops = (s: SamplerStepShape) => graphOf(buildStep(s).bytes).node!.map((n) => n.opType!);
      const count = (list: string[], op: string) => list.filter((o) => o === op).length;
      const batched = ops(shape());
      const split = ops(splitShape());
      expect(count(batched, 'Conv')).toBe(1);
      expect(count(split, 'Conv')).toBe(1);
      // The t_embedder's Cos and Sin run once; everything after the conditioning joins runs twice.
      expect(count(split, 'Cos')).toBe(1);
      expect(count(split, 'LayerNormalization') + count(split, 'ReduceMean')).toBeGreaterThan(0);
      expect(split.length).toBeLessThan(2 * batched.length);
    });

    /** Node types of the graph ONNX Runtime runs after its basic (constant-folding) optimizations. */
    async function optimizedOps(model: BuiltModel): Promise<string[]> {
      const path = join(mkdtempSync(join(tmpdir(), 'atelier-step-')), 'optimized.onnx');
      const session = await ort.InferenceSession.create(model.bytes, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'basic',
        optimizedModelFilePath: path,
        logSeverityLevel: 3,
        extra: { session: { model_external_initializers_file_folder_path: model.externalFolder } },
      } as ort.InferenceSession.SessionOptions);
      await session.release();
      return graphOf(readFileSync(path)).node!.map((n) => n.opType!);
    }

    it('leaves ONNX Runtime no Shape op to run: constant folding removes every one', async () => {
      for (const compute of ['float32', 'float16'] as const)
        for (const s of [shape(), splitShape()]) {
          const built = buildStep(s, compute);
          expect(graphOf(built.bytes).node!.filter((n) => n.opType === 'Shape').length).toBeGreaterThan(0);
          expect(
            (await optimizedOps(built)).filter((op) => op === 'Shape'),
            `${compute}, ${JSON.stringify(s)}`,
          ).toEqual([]);
        }
      // The same check finds the Shape ops of the dynamic-shape MMDiT graph, which cannot fold.
      const g = new GraphBuilder('mmdit');
      buildMmdit(new Net(g, params(g, 'float32')), cfg);
      expect((await optimizedOps(g.build())).filter((op) => op === 'Shape').length).toBeGreaterThan(0);
    });

    it('refuses shapes it cannot build', () => {
      expect(() => buildStep({ ...shape(), maxSteps: 0 })).toThrow(/maxSteps.*got 0/);
      expect(() => buildStep({ ...shape(), height: cfg.patchSize + 1 })).toThrow(/multiple of/);
      expect(() => buildStep({ ...shape(), uncondTokens: 0 })).toThrow(/uncondTokens.*got 0/);
      expect(() => buildStep({ ...shape(), uncondTokens: 1.5 })).toThrow(RangeError);
    });
  });

  describe('stepCoefficients', () => {
    /** A deterministic stand-in for the network: depends on x and σ like a real denoiser. */
    const fake: Denoiser = async (x, sigma) =>
      x.map((v, k) => f32(f32(0.3 * v) + f32(0.1 * Math.sin(k + 7 * sigma))));

    /** The graph's update, x_next = a·x + b·den + c·prev, in float32 as ONNX Runtime computes it. */
    async function replay(
      sampler: SamplerName,
      schedule: Float32Array,
      x0: Float32Array,
    ): Promise<Float32Array> {
      const maxSteps = schedule.length - 1;
      const coeffs = stepCoefficients(sampler, schedule, maxSteps);
      let x = x0;
      let prev: Float32Array = new Float32Array(x.length);
      for (let i = 0; i < maxSteps; i++) {
        const [sigma, a, b, c] = coeffs.subarray(i * STEP_COEFFICIENTS, (i + 1) * STEP_COEFFICIENTS);
        expect(sigma).toBe(schedule[i]);
        const den = await fake(x, sigma);
        x = x.map((v, k) => f32(f32(f32(a * v) + f32(b * den[k])) + f32(c * prev[k])));
        prev = den;
      }
      return x;
    }

    const x0 = Float32Array.from({ length: 256 }, (_, k) => Math.cos(k * 1.7));
    const schedules = () => ({
      txt2img: sigmas(golden.img2img.steps, golden.shift),
      img2img: truncateForDenoise(sigmas(golden.img2img.steps, golden.shift), golden.img2img.denoise),
    });

    it.each(SAMPLER_NAMES)('reproduce %s step for step', async (sampler) => {
      for (const [name, schedule] of Object.entries(schedules())) {
        const ref = await SAMPLERS[sampler](fake, x0, schedule);
        expect(relL2(await replay(sampler, schedule, x0), ref), name).toBeLessThanOrEqual(1e-6);
      }
    });

    it('end each run at the denoised estimate (σ = 0: a = 0, b = 1, c = 0)', () => {
      const schedule = schedules().txt2img;
      const last = schedule.length - 2;
      for (const sampler of SAMPLER_NAMES) {
        const row = stepCoefficients(sampler, schedule, schedule.length - 1).subarray(
          last * STEP_COEFFICIENTS,
        );
        expect(Array.from(row), sampler).toEqual([schedule[last], 0, 1, 0]);
      }
    });

    it('use the previous estimate only in DPM++ 2M’s second-order steps', () => {
      const schedule = schedules().txt2img;
      const steps = schedule.length - 1;
      const c = (sampler: SamplerName) =>
        Array.from({ length: steps }, (_, i) => stepCoefficients(sampler, schedule, steps)[i * 4 + 3]);
      expect(c('euler').every((v) => v === 0)).toBe(true);
      const dpm = c('dpmpp_2m');
      expect(dpm[0]).toBe(0);
      expect(dpm[steps - 1]).toBe(0);
      expect(dpm.slice(1, -1).every((v) => v !== 0)).toBe(true);
    });

    it('fill rows past the schedule with zeros and refuse more steps than rows', () => {
      const schedule = schedules().img2img;
      const steps = schedule.length - 1;
      const coeffs = stepCoefficients('dpmpp_2m', schedule, steps + 3);
      expect(coeffs.length).toBe((steps + 3) * STEP_COEFFICIENTS);
      expect(Array.from(coeffs.subarray(steps * STEP_COEFFICIENTS)).every((v) => v === 0)).toBe(true);
      expect(() => stepCoefficients('euler', schedule, steps - 1)).toThrow(RangeError);
      expect(() => stepCoefficients('euler', schedule, steps - 1)).toThrow(`${steps} steps`);
      expect(() => stepCoefficients('euler', schedule, steps - 1)).toThrow(`${steps - 1} steps`);
    });
  });

  describe('stackConditioning', () => {
    it('lays out the prompt’s rows, one per image, then the negative prompt’s', () => {
      const stacked = stackConditioning(cond, uncond, 2);
      const n = cond.context.length;
      expect(stacked).toMatchObject({ rows: 4, tokens: cond.tokens });
      expect(stacked.context.length).toBe(4 * n);
      expect(stacked.context.subarray(0, n)).toEqual(cond.context);
      expect(stacked.context.subarray(n, 2 * n)).toEqual(cond.context);
      expect(stacked.context.subarray(2 * n, 3 * n)).toEqual(uncond.context);
      expect(stacked.y.subarray(3 * cond.y.length)).toEqual(uncond.y);
      expect(stackConditioning(cond, undefined, 3).rows).toBe(3);
    });

    it('refuses a prompt and a negative prompt of different token counts', () => {
      const shorter: Conditioning = {
        tokens: cond.tokens - 1,
        context: cond.context.slice(0, cond.context.length - cond.context.length / cond.tokens),
        y: cond.y,
      };
      expect(() => stackConditioning(cond, shorter, 1)).toThrow(RangeError);
    });
  });

  describe('stepConditioning', () => {
    const images = 2;

    it('stacks prompts of one token count into one batch, as stackConditioning does', () => {
      const got = stepConditioning(cond, uncond, golden.txt2img.cfg, images);
      const stacked = stackConditioning(cond, uncond, images);
      expect(got.shape).toEqual({ tokens: cond.tokens, guided: true });
      expect(Object.keys(got.inputs).sort()).toEqual(['context', 'y']);
      expect(got.inputs.context).toEqual(stacked.context);
      expect(got.inputs.y).toEqual(stacked.y);
    });

    it('gives the negative prompt inputs of its own when its token count differs', () => {
      for (const { cond: c, uncond: u } of [longPrompt(), longNegative()]) {
        const got = stepConditioning(c, u, golden.txt2img.cfg, images);
        expect(got.shape).toEqual({ tokens: c.tokens, uncondTokens: u.tokens, guided: true });
        expect(Object.keys(got.inputs).sort()).toEqual(['context', 'context_uncond', 'y', 'y_uncond']);
        // One row per image, each the prompt's own conditioning, as cfgDenoiser's two calls lay them out.
        expect(got.inputs.context).toEqual(stackConditioning(c, undefined, images).context);
        expect(got.inputs.y).toEqual(stackConditioning(c, undefined, images).y);
        expect(got.inputs.context_uncond).toEqual(stackConditioning(u, undefined, images).context);
        expect(got.inputs.y_uncond).toEqual(stackConditioning(u, undefined, images).y);
        // The arrays fill the inputs conditioningDims gives the shape.
        const dims = conditioningDims(cfg, { images, height: 8, width: 8, maxSteps: 1, ...got.shape });
        for (const [name, d] of Object.entries(dims) as [string, number[]][])
          expect(got.inputs[name as keyof typeof got.inputs]!.length, name).toBe(d.reduce((a, b) => a * b));
      }
    });

    it('leaves the negative prompt out when the guidance does not use it', () => {
      const { cond: c, uncond: u } = longPrompt();
      const got = stepConditioning(c, u, 1, images);
      expect(got.shape).toEqual({ tokens: c.tokens, guided: false });
      expect(Object.keys(got.inputs).sort()).toEqual(['context', 'y']);
      expect(got.inputs.context).toEqual(stackConditioning(c, undefined, images).context);
      expect(stepConditioning(c, undefined, 1, images).inputs).toEqual(got.inputs);
    });

    it('refuses a guided job without a negative prompt, or conditionings of different widths', () => {
      expect(() => stepConditioning(cond, undefined, 2, images)).toThrow(TypeError);
      const narrow: Conditioning = { ...uncond, y: uncond.y.subarray(1) };
      expect(() => stepConditioning(withExtraTokens(cond, 1), narrow, 2, images)).toThrow(RangeError);
      expect(() => stepConditioning(cond, uncond, 2, 0)).toThrow(RangeError);
    });
  });
});

/** A copy of a scaled-fp8 checkpoint with every scalar `scale_weight` stored as shape [1]. */
function withVectorScales(file: SafetensorsFile): SafetensorsFile {
  const path = join(mkdtempSync(join(tmpdir(), 'atelier-scales-')), 'vector-scales.safetensors');
  writeSafetensors(
    path,
    file.names().map((name) => {
      const info = file.get(name);
      const vector = name.endsWith('.scale_weight') && info.shape.length === 0;
      return { name, dtype: info.dtype, shape: vector ? [1] : info.shape, data: file.readBytes(name) };
    }),
  );
  return SafetensorsFile.open(path);
}
