/**
 * MMDiT (SD3.5 Large / Large Turbo) and MMDiT-X (SD3.5 Medium: dual attention in the first
 * blocks), the denoising transformer. Port of Stability-AI/sd3.5 mmditx.py and the config logic of
 * sd3_impls.py BaseModel at fbf8f48, block by block in the reference's order and names. The graph
 * computes the velocity `model_output` (flow matching); optionally also `denoised = x − v·σ`
 * (ModelSamplingDiscreteFlow.calculate_denoised) so a later step can fold the sampler into the graph.
 * Weight names are the checkpoints' relative to the diffusion model prefix (`x_embedder.proj.weight` …);
 * every linear layer goes through `net.linear` and the patch-embedding kernel through `net.conv2d`
 * (Params dequantizes it with its scale), so fp8 and ComfyUI scaled-fp8 weights need nothing here.
 */
import { ModelError, ValidationError } from '../../errors.js';
import type { Value } from '../onnx/graph.js';
import type { LinearInput, Net } from '../onnx/nn.js';
import type { Params } from '../onnx/params.js';

export interface MmditConfig {
  patchSize: number;
  /** Number of joint blocks; also the number of heads (the reference's "magic": 64-wide heads). */
  depth: number;
  hidden: number;
  heads: number;
  inChannels: number;
  outChannels: number;
  /** Side of the square grid of stored position embeddings; latents are cropped from its centre. */
  posEmbedMaxSize: number;
  admInChannels: number;
  /** Width of the text conditioning fed to `context_embedder` (4096 for T5-XXL). */
  contextDim: number;
  qkNorm: 'rms' | undefined;
  /** Blocks whose x stream has a second self-attention over the image tokens (MMDiT-X). */
  xBlockSelfAttnLayers: number[];
}

/** SD3 latents have 16 channels (BaseModel passes in_channels=16, sd3_impls.py:110). */
export const LATENT_CHANNELS = 16;

/** The reference's head width: hidden_size = 64 · depth, num_heads = depth (mmditx.py:742-744). */
const HEAD_DIM = 64;

/** Every LayerNorm and the qk RMSNorm of the MMDiT use eps 1e-6 (mmditx.py:246, 411, 666). */
const NORM_EPS = 1e-6;

/** TimestepEmbedder: sinusoidal features of width 256, max_period 10000 (mmditx.py:142, 159). */
const FREQUENCY_EMBEDDING_SIZE = 256;
const MAX_PERIOD = 10000;

/** Hyperparameters from the state dict, exactly as BaseModel.__init__ derives them (sd3_impls.py:74-95). */
export function mmditConfig(p: Params): MmditConfig {
  const where = p.source.description;
  const [embed, inChannels, patchSize] = p.shape('x_embedder.proj.weight');
  if (embed % HEAD_DIM !== 0)
    throw new ModelError(
      where,
      `${where}: x_embedder.proj.weight has ${embed} output channels, not a multiple of ${HEAD_DIM} — not an SD3 MMDiT`,
    );
  const depth = embed / HEAD_DIM;
  const numPatches = p.shape('pos_embed')[1];
  const posEmbedMaxSize = Math.round(Math.sqrt(numPatches));
  if (posEmbedMaxSize * posEmbedMaxSize !== numPatches)
    throw new ModelError(where, `${where}: pos_embed holds ${numPatches} positions, not a square grid`);
  const [, contextDim] = p.shape('context_embedder.weight');
  const qkNorm = p.has('joint_blocks.0.context_block.attn.ln_k.weight') ? 'rms' : undefined;
  // The reference finds dual-attention blocks by their attn2.ln_k weights (sd3_impls.py:86-95).
  const xBlockSelfAttnLayers = p.source
    .keys('joint_blocks.')
    .filter((key) => /^joint_blocks\.\d+\.x_block\.attn2\.ln_k\.weight$/.test(key))
    .map((key) => Number(key.split('.')[1]))
    .sort((a, b) => a - b);
  return {
    patchSize,
    depth,
    hidden: embed,
    heads: depth,
    inChannels,
    outChannels: LATENT_CHANNELS,
    posEmbedMaxSize,
    admInChannels: p.shape('y_embedder.mlp.0.weight')[1],
    contextDim,
    qkNorm,
    xBlockSelfAttnLayers,
  };
}

/**
 * Refuses a latent the model cannot place: the position embedding is cropped from a grid of
 * posEmbedMaxSize² patches (the reference asserts the same, mmditx.py:821-822), and patches tile it.
 */
export function checkLatentSize(cfg: MmditConfig, height: number, width: number): void {
  const max = cfg.posEmbedMaxSize * cfg.patchSize;
  for (const [name, size] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (size % cfg.patchSize !== 0 || size > max)
      throw new ValidationError(
        'size',
        `The latent ${name} must be a multiple of ${cfg.patchSize} and at most ${max} for this model (got ${size}).`,
      );
  }
}

/** What every block needs: the layers and the config. */
interface Ctx {
  net: Net;
  cfg: MmditConfig;
}

function makeCtx(net: Net, cfg: MmditConfig): Ctx {
  return { net, cfg };
}

export interface MmditBuildOptions {
  /**
   * Take `sigma` instead of `timestep` (timestep = σ·1000, ModelSamplingDiscreteFlow.timestep) and
   * output `denoised = x − model_output·σ` next to `model_output`, so a sampler step can live in the graph.
   * @default false
   */
  denoised?: boolean;
}

/**
 * Graph inputs (compute type): `x` [batch, 16, height, width], `timestep` [batch] (or `sigma`
 * [batch] with `denoised`), `context` [batch, tokens, contextDim], `y` [batch, admInChannels].
 * Outputs: `model_output` [batch, 16, height, width] (the velocity) and, with `denoised`, `denoised`.
 * Batch, latent size and token count are dynamic.
 */
export function buildMmdit(net: Net, cfg: MmditConfig, options: MmditBuildOptions = {}): void {
  const { g } = net;
  const latentDims: (string | number)[] = ['batch', cfg.inChannels, 'height', 'width'];
  // Inputs and outputs are float32 (see Net.floatInput); the timestep stays float32 throughout,
  // as the reference computes its embedding (a float16 timestep would round 999 to 1000).
  const x32 = g.input('x', 'float32', latentDims);
  const x = net.compute === 'float32' ? x32 : net.cast(x32, net.compute);
  let timestep: Value;
  let sigma: Value | undefined;
  if (options.denoised) {
    sigma = g.input('sigma', 'float32', ['batch']);
    // The reference takes timestep = (σ·1000).float() (sd3_impls.py:155).
    timestep = g.op('Mul', [sigma, g.constant('c', 'float32', [], new Float32Array([1000]))]);
  } else {
    timestep = g.input('timestep', 'float32', ['batch']);
  }
  const context = net.floatInput('context', ['batch', 'tokens', cfg.contextDim]);
  const y = net.floatInput('y', ['batch', cfg.admInChannels]);

  const v = mmditVelocity(net, cfg, x, timestep, context, y);
  net.floatOutput(v, 'model_output', latentDims);
  if (sigma) {
    // calculate_denoised (sd3_impls.py:50-52): x − v·σ in float32, σ broadcast over [C, H, W].
    const v32 = net.compute === 'float32' ? v : net.cast(v, 'float32');
    const denoised = g.op('Sub', [x32, g.op('Mul', [v32, net.reshape(sigma, [-1, 1, 1, 1])])]);
    g.output(denoised, 'denoised', 'float32', latentDims);
  }
}

/**
 * The MMDiT's velocity for compute-type `x` [batch, C, H, W], float32 `timestep` [batch],
 * compute-type `context` and `y`: the body of buildMmdit, for graphs that wrap it (sampler-step.ts).
 */
export function mmditVelocity(
  net: Net,
  cfg: MmditConfig,
  x: Value,
  timestep: Value,
  context: Value,
  y: Value,
): Value {
  const m = makeCtx(net, cfg);
  return net.g.scope('diffusion_model', () => mmditForward(m, x, timestep, context, y));
}

/** MMDiTX.forward (mmditx.py:887-914). */
function mmditForward(m: Ctx, x: Value, t: Value, context: Value, y: Value): Value {
  const { net, cfg } = m;
  const { g } = net;
  const grid = patchGrid(m, x);
  let h = net.add(
    g.scope('x_embedder', () => patchEmbed(m, x)),
    g.scope('pos_embed', () => croppedPosEmbed(m, grid)),
  );
  let c = g.scope('t_embedder', () => timestepEmbedder(net, t));
  c = net.add(
    c,
    g.scope('y_embedder', () => vectorEmbedder(net, y, 'y_embedder')),
  );
  let ctx: Value | undefined = net.linear(context, 'context_embedder');

  // adaLN_modulation is Sequential(SiLU, Linear) everywhere and c is shared: one SiLU for all.
  const cAct = net.silu(c);
  const contextTokens = g.op('Shape', [context], { start: 1, end: 2 });
  for (let i = 0; i < cfg.depth; i++) {
    [ctx, h] = g.scope(`joint_blocks.${i}`, () => jointBlock(m, i, ctx!, h, cAct, contextTokens));
  }
  h = g.scope('final_layer', () => finalLayer(m, h, cAct));
  return g.scope('unpatchify', () => unpatchify(m, h, x, grid));
}

/** The latent's patch grid [h], [w] (int64, 1-D) = H / p, W / p, for the crop and unpatchify. */
function patchGrid(m: Ctx, x: Value): { h: Value; w: Value } {
  const { net, cfg } = m;
  const p = net.ints([cfg.patchSize]);
  const H = net.g.op('Shape', [x], { start: 2, end: 3 });
  const W = net.g.op('Shape', [x], { start: 3, end: 4 });
  return { h: net.div(H, p), w: net.div(W, p) };
}

/**
 * PatchEmbed.forward (mmditx.py:58-63): Conv2d(kernel = stride = p), then NCHW → N(HW)C. The kernel
 * is tiny (16·p²·hidden), so an fp8 one is dequantized once by Params rather than per call.
 */
function patchEmbed(m: Ctx, x: Value): Value {
  const { net, cfg } = m;
  const patches = net.conv2d(x, 'x_embedder.proj', { stride: cfg.patchSize });
  return net.transpose(net.reshape(patches, [0, 0, -1]), [0, 2, 1]);
}

/**
 * MMDiTX.cropped_pos_embed (mmditx.py:814-833): the centre h×w window of the stored
 * posEmbedMaxSize² grid, top = (max − h) // 2, left = (max − w) // 2, flattened row-major.
 */
function croppedPosEmbed(m: Ctx, grid: { h: Value; w: Value }): Value {
  const { net, cfg } = m;
  const max = net.ints([cfg.posEmbedMaxSize]);
  const two = net.ints([2]);
  const top = net.div(net.sub(max, grid.h), two);
  const left = net.div(net.sub(max, grid.w), two);
  const spatial = net.reshape(net.p.get('pos_embed'), [cfg.posEmbedMaxSize, cfg.posEmbedMaxSize, cfg.hidden]);
  const starts = net.concat([top, left], 0);
  const ends = net.concat([net.add(top, grid.h), net.add(left, grid.w)], 0);
  const window = net.g.op('Slice', [spatial, starts, ends, net.ints([0, 1])]);
  return net.reshape(window, [1, -1, cfg.hidden]);
}

/**
 * TimestepEmbedder (mmditx.py:138-187): [cos(t·f), sin(t·f)] with f_i = exp(−ln(10000)·i/128),
 * computed in float32 as the reference does (`t.float()`), then the MLP in the compute type.
 */
function timestepEmbedder(net: Net, t: Value): Value {
  const half = FREQUENCY_EMBEDDING_SIZE / 2;
  // torch evaluates each step in float32 (mmditx.py:169-173); Math.fround keeps the same roundings.
  const freqs = new Float32Array(half);
  const negLogPeriod = Math.fround(-Math.log(MAX_PERIOD));
  for (let i = 0; i < half; i++)
    freqs[i] = Math.fround(Math.exp(Math.fround(Math.fround(negLogPeriod * i) / half)));
  const args = net.g.op('Mul', [net.unsqueeze(t, [1]), net.g.constant('freqs', 'float32', [1, half], freqs)]);
  let emb = net.concat([net.g.op('Cos', [args]), net.g.op('Sin', [args])], -1);
  if (net.compute !== 'float32') emb = net.cast(emb, net.compute);
  return vectorEmbedder(net, emb, 't_embedder');
}

/** VectorEmbedder and TimestepEmbedder's MLP (mmditx.py:145-155, 195-199): Linear, SiLU, Linear. */
function vectorEmbedder(net: Net, x: Value, prefix: string): Value {
  return net.linear(net.silu(net.linear(x, `${prefix}.mlp.0`)), `${prefix}.mlp.2`);
}

/**
 * The adaLN modulation of one block (mmditx.py:477-482, 489-490, 519-529): n chunks of
 * Linear(SiLU(c)), each [batch, 1, hidden] so it broadcasts over tokens like `.unsqueeze(1)`.
 */
function adaLN(net: Net, prefix: string, cAct: Value, n: number): Value[] {
  const mods = net.unsqueeze(net.linear(cAct, `${prefix}.adaLN_modulation.1`), [1]);
  return net.chunk(mods, n, 2);
}

/**
 * modulate(norm(x), shift, scale) (mmditx.py:66-69): x · (1 + scale) + shift after norm1 / norm2 /
 * norm_final, LayerNorms without affine weights, eps 1e-6 (mmditx.py:408-414, 665-667). Net does
 * both: a fused kernel with the custom ops, else stock LayerNorm (explicit unit scale and zero bias,
 * see Net.layerNorm) then Mul and Add. Each feeds one linear layer (qkv, fc1, the final linear),
 * which builds it (Net.modulated): a W8A8 layer reads it quantized from the norm's own kernel.
 */
function modulatedNorm(m: Ctx, x: Value, shift: Value, scale: Value): LinearInput {
  return m.net.modulated(x, shift, scale, m.cfg.hidden, NORM_EPS);
}

interface Qkv {
  q: Value;
  k: Value;
  v: Value;
}

/**
 * SelfAttention.pre_attention (mmditx.py:278-284): qkv projection, split as [3, heads, head_dim]
 * (split_qkv, mmditx.py:210-212), RMSNorm of q and k per head when the checkpoint has ln_q/ln_k.
 */
function preAttention(m: Ctx, prefix: string, x: LinearInput): Qkv {
  const { net, cfg } = m;
  const [q, k, v] = net.chunk(net.linear(x, `${prefix}.qkv`), 3, 2);
  const headNorm = (t: Value, key: string) => {
    if (cfg.qkNorm !== 'rms') return t;
    const perHead = net.reshape(t, [0, 0, cfg.heads, cfg.hidden / cfg.heads]);
    return net.reshape(net.rmsNorm(perHead, `${prefix}.${key}.weight`, NORM_EPS), [0, 0, cfg.hidden]);
  };
  return { q: headNorm(q, 'ln_q'), k: headNorm(k, 'ln_k'), v };
}

/** SelfAttention.post_attention (mmditx.py:286-289). */
function postAttention(net: Net, prefix: string, attn: Value): Value {
  return net.linear(attn, `${prefix}.proj`);
}

/** Mlp with GELU(tanh) (other_impls.py:27-56, mmditx.py:457-463). */
function mlp(net: Net, prefix: string, x: LinearInput): Value {
  return net.linear(net.linearGelu(x, `${prefix}.mlp.fc1`, 'tanh'), `${prefix}.mlp.fc2`);
}

function attention(m: Ctx, qkv: Qkv): Value {
  const { net, cfg } = m;
  return net.attention(qkv.q, qkv.k, qkv.v, cfg.heads, cfg.hidden / cfg.heads);
}

/** What DismantledBlock.pre_attention keeps for post_attention (mmditx.py:499, 536-543). */
interface Intermediates {
  x: Value;
  gateMsa: Value;
  shiftMlp: Value;
  scaleMlp: Value;
  gateMlp: Value;
}

/** DismantledBlock.pre_attention (mmditx.py:485-507); `undefined` intermediates when pre_only. */
function dismantledPreAttention(
  m: Ctx,
  prefix: string,
  x: Value,
  cAct: Value,
  preOnly: boolean,
): { qkv: Qkv; intermediates?: Intermediates } {
  const { net } = m;
  if (preOnly) {
    const [shiftMsa, scaleMsa] = adaLN(net, prefix, cAct, 2);
    return { qkv: preAttention(m, `${prefix}.attn`, modulatedNorm(m, x, shiftMsa, scaleMsa)) };
  }
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = adaLN(net, prefix, cAct, 6);
  const qkv = preAttention(m, `${prefix}.attn`, modulatedNorm(m, x, shiftMsa, scaleMsa));
  return { qkv, intermediates: { x, gateMsa, shiftMlp, scaleMlp, gateMlp } };
}

/** DismantledBlock.post_attention (mmditx.py:509-515). */
function dismantledPostAttention(m: Ctx, prefix: string, attn: Value, it: Intermediates): Value {
  const { net } = m;
  const x = net.add(it.x, net.mul(it.gateMsa, postAttention(net, `${prefix}.attn`, attn)));
  return gatedMlp(m, prefix, x, it);
}

/** x + gate_mlp · mlp(modulate(norm2(x), shift_mlp, scale_mlp)) (mmditx.py:512-514, 572-575). */
function gatedMlp(m: Ctx, prefix: string, x: Value, it: Intermediates): Value {
  const { net } = m;
  const out = mlp(net, prefix, modulatedNorm(m, x, it.shiftMlp, it.scaleMlp));
  return net.add(x, net.mul(it.gateMlp, out));
}

/**
 * DismantledBlock.pre_attention_x (mmditx.py:517-544), the MMDiT-X dual attention: nine
 * modulations; attn and attn2 read the same norm1(x) with their own shift/scale.
 */
function dismantledPreAttentionX(
  m: Ctx,
  prefix: string,
  x: Value,
  cAct: Value,
): { qkv: Qkv; qkv2: Qkv; intermediates: Intermediates; gateMsa2: Value } {
  const { net } = m;
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp, shiftMsa2, scaleMsa2, gateMsa2] = adaLN(
    net,
    prefix,
    cAct,
    9,
  );
  const qkv = preAttention(m, `${prefix}.attn`, modulatedNorm(m, x, shiftMsa, scaleMsa));
  const qkv2 = preAttention(m, `${prefix}.attn2`, modulatedNorm(m, x, shiftMsa2, scaleMsa2));
  return { qkv, qkv2, intermediates: { x, gateMsa, shiftMlp, scaleMlp, gateMlp }, gateMsa2 };
}

/** DismantledBlock.post_attention_x without training dropout (mmditx.py:546-576). */
function dismantledPostAttentionX(
  m: Ctx,
  prefix: string,
  attn: Value,
  attn2: Value,
  it: Intermediates,
  gateMsa2: Value,
): Value {
  const { net } = m;
  let x = net.add(it.x, net.mul(it.gateMsa, postAttention(net, `${prefix}.attn`, attn)));
  x = net.add(x, net.mul(gateMsa2, postAttention(net, `${prefix}.attn2`, attn2)));
  return gatedMlp(m, prefix, x, it);
}

/**
 * JointBlock → block_mixing (mmditx.py:591-647): context and image tokens attend jointly
 * (context first); the last block's context stream is pre_only and returns no context.
 */
function jointBlock(
  m: Ctx,
  i: number,
  context: Value,
  x: Value,
  cAct: Value,
  contextTokens: Value,
): [Value | undefined, Value] {
  const { net, cfg } = m;
  const prefix = `joint_blocks.${i}`;
  const preOnly = i === cfg.depth - 1;
  const dual = cfg.xBlockSelfAttnLayers.includes(i);
  const ctxPre = dismantledPreAttention(m, `${prefix}.context_block`, context, cAct, preOnly);
  const xPre = dual
    ? { dual: true as const, ...dismantledPreAttentionX(m, `${prefix}.x_block`, x, cAct) }
    : { dual: false as const, ...dismantledPreAttention(m, `${prefix}.x_block`, x, cAct, false) };

  const joint = (key: keyof Qkv) => net.concatTokens(ctxPre.qkv[key], xPre.qkv[key]);
  const attn = attention(m, { q: joint('q'), k: joint('k'), v: joint('v') });
  const contextAttn = net.g.op('Slice', [attn, net.ints([0]), contextTokens, net.ints([1])]);
  const xAttn = net.g.op('Slice', [attn, contextTokens, net.ints([Number.MAX_SAFE_INTEGER]), net.ints([1])]);

  const nextContext = ctxPre.intermediates
    ? dismantledPostAttention(m, `${prefix}.context_block`, contextAttn, ctxPre.intermediates)
    : undefined;
  let nextX: Value;
  if (xPre.dual) {
    const attn2 = attention(m, xPre.qkv2);
    nextX = dismantledPostAttentionX(m, `${prefix}.x_block`, xAttn, attn2, xPre.intermediates, xPre.gateMsa2);
  } else {
    nextX = dismantledPostAttention(m, `${prefix}.x_block`, xAttn, xPre.intermediates!);
  }
  return [nextContext, nextX];
}

/** FinalLayer.forward (mmditx.py:688-692): shift, scale = chunk(adaLN(c), 2); linear(modulate(norm(x))). */
function finalLayer(m: Ctx, x: Value, cAct: Value): Value {
  const { net } = m;
  const [shift, scale] = adaLN(net, 'final_layer', cAct, 2);
  return net.linear(modulatedNorm(m, x, shift, scale), 'final_layer.linear');
}

/**
 * MMDiTX.unpatchify (mmditx.py:835-853): [N, h·w, p·p·c] → [N, h, w, p, q, c] →
 * einsum nhwpqc→nchpwq → [N, c, h·p, w·p], the latent's own height and width.
 */
function unpatchify(m: Ctx, x: Value, latent: Value, grid: { h: Value; w: Value }): Value {
  const { net, cfg } = m;
  const p = cfg.patchSize;
  const c = cfg.outChannels;
  const patches = net.g.op('Reshape', [
    x,
    net.concat([net.ints([0]), grid.h, grid.w, net.ints([p, p, c])], 0),
  ]);
  const image = net.transpose(patches, [0, 5, 1, 3, 2, 4]);
  const hw = net.g.op('Shape', [latent], { start: 2, end: 4 });
  return net.g.op('Reshape', [image, net.concat([net.ints([0, c]), hw], 0)]);
}
