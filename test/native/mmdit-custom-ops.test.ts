/**
 * The MMDiT built with custom ops (NetOptions.customOps: every modulate(norm(x)) one
 * atelier:AdaLNModulate node; every attention's split_qkv, qk RMSNorm and joint token
 * concatenation one atelier:JointQkvNorm node, or with NetOptions.qkvNorm 'separate' (and for
 * checkpoints without ln_q / ln_k) a JointConcat per q, k and v) on the golden tiny models, run
 * through the C-API binding with our CPU library, against the same model built with stock ops and
 * run by onnxruntime-node, in float32 and float16 compute, and against the official reference
 * within the manifest's tolerance.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMmdit, type MmditConfig, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { ATELIER_DOMAIN, type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type GoldenComponent, type GoldenSet, goldenSets, relL2 } from '../golden/manifest.js';

interface MmditComponent extends GoldenComponent {
  weights: string;
  io: string;
  tolerance_rel_l2: number;
}

const opened: SafetensorsFile[] = [];
afterAll(() => {
  for (const f of opened) f.close();
});
function open(set: GoldenSet, file: string): SafetensorsFile {
  const f = set.open(file);
  opened.push(f);
  return f;
}

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

interface BuildOptions {
  compute?: 'float32' | 'float16';
  qkvNorm?: 'fused' | 'separate';
  /** Build as if the checkpoint had no ln_q / ln_k (the weights are then never read). */
  noQkNorm?: boolean;
  /** Every attention as atelier:Fp8Attention (NetOptions.fp8Attention, issue 10 research). */
  fp8Attention?: boolean;
  /** Every attention as atelier:FlashAttention (NetOptions.attention 'flash'). */
  flashAttention?: boolean;
  residualNorm?: 'fused' | 'separate';
}

function build(
  set: GoldenSet,
  name: string,
  customOps: boolean,
  {
    compute = 'float32',
    qkvNorm,
    noQkNorm = false,
    fp8Attention = false,
    flashAttention = false,
    residualNorm,
  }: BuildOptions = {},
): BuiltModel & { cfg: MmditConfig } {
  const c = set.component<MmditComponent>(name);
  const g = new GraphBuilder(name);
  const p = new Params(g, new FileWeightSource(open(set, c.weights), c.key_prefix ?? ''), compute);
  const cfg: MmditConfig = { ...mmditConfig(p), ...(noQkNorm ? { qkNorm: undefined } : {}) };
  const options = {
    ...DEFAULT_NET_OPTIONS,
    customOps,
    ...(qkvNorm ? { qkvNorm } : {}),
    ...(residualNorm ? { residualNorm } : {}),
    fp8Attention,
    ...(flashAttention ? { attention: 'flash' as const } : {}),
  };
  buildMmdit(new Net(g, p, options), cfg);
  return { ...g.build(), cfg };
}

type Feeds = Record<string, HostTensor>;

/** The velocity of `model` through the C API with our CPU library. */
async function velocityWithOps(model: BuiltModel, feeds: Feeds): Promise<Float32Array> {
  const session = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library] });
  try {
    return (await session.run(feeds)).model_output.data as Float32Array;
  } finally {
    session.release();
  }
}

/** The velocity of a stock-op `model`, run by onnxruntime-node. */
async function velocityStock(name: string, model: BuiltModel, feeds: Feeds): Promise<Float32Array> {
  const session = await openSession(name, model, { provider: 'cpu' });
  try {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor('float32', f.data as Float32Array, f.dims)]),
    );
    return (await session.run(tensors)).model_output.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** Index of the first element whose bits differ (±0 and NaNs of any payload alike), else -1. */
const firstDifference = (a: Float32Array, b: Float32Array) =>
  a.findIndex((v, i) => !(Object.is(v, b[i]) || v === b[i] || (Number.isNaN(v) && Number.isNaN(b[i]))));

function decode(model: BuiltModel) {
  return onnxProto.onnx.ModelProto.decode(model.bytes);
}

const nodes = (model: BuiltModel, opType: string) =>
  decode(model).graph!.node!.filter((n) => n.opType === opType);
const count = (model: BuiltModel, opType: string) => nodes(model, opType).length;

const cases = goldenSets().flatMap((set) =>
  ['mmdit_large', 'mmdit_medium']
    .filter((name) => set.has(name))
    .map((name) => ({ set, name, setName: set.name })),
);

describe.each(cases)('$name of the $setName golden set with custom ops', ({ set, name }) => {
  const c = set.component<MmditComponent>(name);

  it('has one AdaLNModulate node per modulated norm and imports the atelier domain only then', () => {
    const fused = build(set, name, true);
    const stock = build(set, name, false);
    // Per block: context norm1 and norm2 (norm1 only in the last, pre_only, block), x norm1 and
    // norm2, plus norm1 again for attn2 in dual-attention blocks; then norm_final. Stock ops share
    // the dual blocks' norm1 between its two modulations.
    const { depth, xBlockSelfAttnLayers } = fused.cfg;
    // A norm whose x is a gated residual not yet built is one AdaLNResidual node (the residual and the
    // norm): norm2 and the next block's norm1 (or norm_final) of each stream, 4·depth − 2 of them.
    expect(count(fused, 'AdaLNModulate') + count(fused, 'AdaLNResidual')).toBe(
      4 * depth + xBlockSelfAttnLayers.length,
    );
    expect(count(fused, 'AdaLNResidual')).toBe(4 * depth - 2);
    expect(count(stock, 'LayerNormalization')).toBe(4 * depth);
    expect(count(fused, 'LayerNormalization')).toBe(0);
    expect(count(stock, 'AdaLNModulate')).toBe(0);
    const imports = (model: BuiltModel) => decode(model).opsetImport!.map((o) => `${o.domain}:${o.version}`);
    expect(imports(fused)).toContain(`${ATELIER_DOMAIN}:1`);
    expect(imports(stock).some((i) => i.startsWith(`${ATELIER_DOMAIN}:`))).toBe(false);
  });

  it('splits, normalises and joins q, k and v with one JointQkvNorm per attention', () => {
    const fused = build(set, name, true);
    const stock = build(set, name, false);
    // Every golden MMDiT has ln_q / ln_k. One node per block's joint attention and per dual-attention
    // block's attn2 (image tokens only: an empty context); no Split of a qkv projection (what is left
    // splits adaLN's modulations), no SimplifiedLayerNormalization, no JointConcat.
    const { depth, xBlockSelfAttnLayers } = fused.cfg;
    const attentions = depth + xBlockSelfAttnLayers.length;
    expect(fused.cfg.qkNorm).toBe('rms');
    expect(count(fused, 'JointQkvNorm')).toBe(attentions);
    expect(count(stock, 'JointQkvNorm')).toBe(0);
    expect(count(fused, 'SimplifiedLayerNormalization')).toBe(0);
    expect(count(stock, 'SimplifiedLayerNormalization')).toBe(2 * (depth + attentions));
    expect(count(stock, 'Split') - count(fused, 'Split')).toBe(2 * depth + xBlockSelfAttnLayers.length);
    expect(count(fused, 'JointConcat')).toBe(0);
    for (const node of nodes(fused, 'JointQkvNorm')) {
      expect(node.domain).toBe(ATELIER_DOMAIN);
      expect(node.input).toHaveLength(6);
      expect(node.output).toHaveLength(3);
      const attrs = Object.fromEntries(node.attribute!.map((a) => [a.name, a]));
      expect(Number(attrs.heads.i)).toBe(fused.cfg.heads);
      expect(attrs.epsilon.f).toBeCloseTo(1e-6, 12);
    }
    // The stock graph's token concatenations are gone with them; what remains: the positional-embedding
    // crop and unpatchify's int64 shape arithmetic, and the timestep embedding's cos and sin halves
    // (of equal size, which ONNX Runtime concatenates without host-side metadata).
    expect(count(stock, 'Concat') - count(fused, 'Concat')).toBe(3 * depth);
    const left = nodes(fused, 'Concat').map((n) => n.name!.replace(/_\d+$/, ''));
    expect(left.sort()).toEqual([
      'diffusion_model/pos_embed/Concat',
      'diffusion_model/pos_embed/Concat',
      'diffusion_model/t_embedder/Concat',
      'diffusion_model/unpatchify/Concat',
      'diffusion_model/unpatchify/Concat',
    ]);
  });

  it("keeps Split, the norms and JointConcat with qkvNorm 'separate' and for checkpoints without ln_q / ln_k", () => {
    // q, k and v of every block are concatenated by JointConcat (the dual-attention blocks' second
    // attention is the image's own: no concatenation); ONNX Runtime's CUDA Concat of the unequal
    // context and image lengths is what broke CUDA-graph capture.
    const separate = build(set, name, true, { qkvNorm: 'separate' });
    const { depth, xBlockSelfAttnLayers } = separate.cfg;
    expect(count(separate, 'JointQkvNorm')).toBe(0);
    expect(count(separate, 'JointConcat')).toBe(3 * depth);
    expect(count(separate, 'SimplifiedLayerNormalization')).toBe(4 * depth + 2 * xBlockSelfAttnLayers.length);
    const plain = build(set, name, true, { noQkNorm: true });
    expect(count(plain, 'JointQkvNorm')).toBe(0);
    expect(count(plain, 'JointConcat')).toBe(3 * depth);
    expect(count(plain, 'SimplifiedLayerNormalization')).toBe(0);
  });

  const feedsOf = (): Feeds => {
    const io = open(set, c.io);
    return Object.fromEntries(
      ['x', 'timestep', 'context', 'y'].map((k) => [
        k,
        { type: 'float32', dims: io.get(k).shape, data: io.readFloat32(k) } satisfies HostTensor,
      ]),
    );
  };

  it('predicts the same velocity as the stock graph, through the C API with our CPU library', async () => {
    const feeds = feedsOf();
    const fused = await velocityWithOps(build(set, name, true), feeds);
    const stock = await velocityStock(name, build(set, name, false), feeds);
    expect(relL2(fused, stock)).toBeLessThanOrEqual(1e-5);
    expect(relL2(fused, open(set, c.io).readFloat32('model_output'))).toBeLessThanOrEqual(c.tolerance_rel_l2);
  });

  it.each(['float32', 'float16'] as const)(
    'gives the same velocity bits with JointQkvNorm as with Split, SimplifiedLayerNormalization and JointConcat, %s compute',
    async (compute) => {
      // On the CPU JointQkvNorm rounds as ONNX Runtime's SimplifiedLayerNormalization does, and the
      // rest of the two graphs is the same: every bit of the velocity agrees.
      const feeds = feedsOf();
      const fused = await velocityWithOps(build(set, name, true, { compute }), feeds);
      const separate = await velocityWithOps(build(set, name, true, { compute, qkvNorm: 'separate' }), feeds);
      const at = firstDifference(fused, separate);
      expect(at, `element ${at}: ${fused[at]} vs ${separate[at]}`).toBe(-1);
    },
  );

  it("builds the dual-attention blocks' two attention residuals as one AdaLNResidual with a second branch", () => {
    const fused = build(set, name, true);
    const separate = build(set, name, true, { residualNorm: 'separate' });
    const { depth, xBlockSelfAttnLayers } = fused.cfg;
    const dual = xBlockSelfAttnLayers.length;
    if (name === 'mmdit_medium') expect(dual).toBeGreaterThan(0); // MMDiT-X
    const residuals = nodes(fused, 'AdaLNResidual');
    // x, branch, gate, shift, scale, branch2, gate2: one per dual block (norm2 of its x stream).
    const twoBranch = residuals.filter((n) => n.input!.length === 7);
    expect(twoBranch).toHaveLength(dual);
    expect(residuals.filter((n) => n.input!.length === 5)).toHaveLength(4 * depth - 2 - dual);
    expect(twoBranch.map((n) => Number(/joint_blocks\.(\d+)\//.exec(n.name!)![1]))).toEqual(
      xBlockSelfAttnLayers,
    );
    // No Mul and Add of its own for x + gate_msa·attn: each gated residual a norm reads loses its pair.
    expect(count(separate, 'Mul') - count(fused, 'Mul')).toBe(4 * depth - 2 + dual);
    expect(count(separate, 'Add') - count(fused, 'Add')).toBe(4 * depth - 2 + dual);
  });

  it('gives the same velocity bits with AdaLNResidual as with Mul, Add and AdaLNModulate, float32 compute', async () => {
    // The residual rounded as ONNX Runtime's Mul and Add round it, the norm as AdaLNModulate. (In
    // float16 on the CPU the stock Mul and Add run in float32 without rounding between them: not
    // compared here; the GPU's float16 kernels round each, as the op does.)
    const feeds = feedsOf();
    const fused = await velocityWithOps(build(set, name, true), feeds);
    const separate = await velocityWithOps(build(set, name, true, { residualNorm: 'separate' }), feeds);
    const at = firstDifference(fused, separate);
    expect(at, `element ${at}: ${fused[at]} vs ${separate[at]}`).toBe(-1);
    expect(count(build(set, name, true, { residualNorm: 'separate' }), 'AdaLNResidual')).toBe(0);
  });

  it('in float16 compute, stays within float16 rounding of Mul, Add and AdaLNModulate', async () => {
    // ORT's CPU provider runs the separate graph's float16 Mul and Add chains in float32, where the
    // fused node rounds each result (as the GPU does): not the same bits here, but within the float16
    // tolerance of the test below.
    const feeds = feedsOf();
    const fused = await velocityWithOps(build(set, name, true, { compute: 'float16' }), feeds);
    const separate = await velocityWithOps(
      build(set, name, true, { compute: 'float16', residualNorm: 'separate' }),
      feeds,
    );
    const vsSeparate = relL2(fused, separate);
    console.log(`${set.name} ${name} float16, AdaLNResidual vs separate: ${vsSeparate.toExponential(2)}`);
    expect(vsSeparate).toBeLessThanOrEqual(1e-2);
  });

  it('stays within float16 rounding of the stock float16 graph and of float32', async () => {
    const feeds = feedsOf();
    const fused = await velocityWithOps(build(set, name, true, { compute: 'float16' }), feeds);
    const stock = await velocityStock(name, build(set, name, false, { compute: 'float16' }), feeds);
    const f32 = await velocityWithOps(build(set, name, true), feeds);
    // float16 carries 11 significant bits (unit roundoff 2⁻¹¹ ≈ 4.9e-4): the two graphs round
    // differently only where AdaLNModulate replaces LayerNorm, Mul and Add. 1e-2 is the float16
    // tolerance of the sampler-step tests (test/pipeline/sampler-step.test.ts).
    const vsStock = relL2(fused, stock);
    const vsF32 = relL2(fused, f32);
    console.log(
      `${set.name} ${name} float16 with custom ops: vs stock float16 ${vsStock.toExponential(2)}, vs float32 ${vsF32.toExponential(2)}`,
    );
    expect(vsStock).toBeLessThanOrEqual(1e-2);
    expect(vsF32).toBeLessThanOrEqual(1e-2);
    expect(vsF32).toBeGreaterThan(0);
  });

  it('runs every attention as one FlashAttention node with attention flash, as close to float32 as MultiHeadAttention', async () => {
    const feeds = feedsOf();
    const model = build(set, name, true, { compute: 'float16', flashAttention: true });
    const { depth, xBlockSelfAttnLayers } = model.cfg;
    expect(count(model, 'FlashAttention')).toBe(depth + xBlockSelfAttnLayers.length);
    expect(count(model, 'MultiHeadAttention')).toBe(0);
    expect(count(build(set, name, true), 'FlashAttention')).toBe(0);
    const flash = await velocityWithOps(model, feeds);
    const f32 = await velocityWithOps(build(set, name, true), feeds);
    // The float16 graph with MultiHeadAttention, through the stock API (the CPU provider runs its
    // float16 MultiHeadAttention only there, by casting; our graph casts around nothing).
    const f16 = await velocityStock(name, build(set, name, false, { compute: 'float16' }), feeds);
    const vsF32 = relL2(flash, f32);
    const stockVsF32 = relL2(f16, f32);
    console.log(
      `${set.name} ${name} float16 with FlashAttention: vs float32 ${vsF32.toExponential(2)} (stock float16 ${stockVsF32.toExponential(2)})`,
    );
    // The op rounds its output to float16 once, as MultiHeadAttention does in a float16 graph:
    // within float16's tolerance of the sampler-step tests, and not worse than the stock graph by more
    // than rounding noise.
    expect(vsF32).toBeLessThanOrEqual(1e-2);
    expect(vsF32).toBeLessThanOrEqual(2 * stockVsF32 + 1e-3);
  });

  it('runs every attention as one Fp8Attention node with fp8Attention, within a few percent of float32 (reported)', async () => {
    const feeds = feedsOf();
    const model = build(set, name, true, { compute: 'float16', fp8Attention: true });
    const { depth, xBlockSelfAttnLayers } = model.cfg;
    expect(count(model, 'Fp8Attention')).toBe(depth + xBlockSelfAttnLayers.length);
    expect(count(model, 'MultiHeadAttention')).toBe(0);
    expect(count(build(set, name, true), 'Fp8Attention')).toBe(0);
    const fp8 = await velocityWithOps(model, feeds);
    const f32 = await velocityWithOps(build(set, name, true), feeds);
    const f16 = await velocityWithOps(build(set, name, true, { compute: 'float16' }), feeds);
    // What FP8 attention costs in the velocity of a whole (tiny, random-weight) model: reported;
    // bounded loosely, as the op's own tests bound it (a wrong scale or softmax would be O(1)).
    const vsF32 = relL2(fp8, f32);
    console.log(
      `${set.name} ${name} float16 with Fp8Attention: vs float32 ${vsF32.toExponential(2)} (float16 alone ${relL2(f16, f32).toExponential(2)})`,
    );
    expect(vsF32).toBeLessThan(0.2);
  });
});
