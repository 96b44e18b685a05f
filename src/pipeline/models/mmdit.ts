/**
 * MMDiT (SD3.5 Large / Large Turbo) and MMDiT-X (SD3.5 Medium: dual attention in the first
 * blocks), the denoising transformer. Port of Stability-AI/sd3.5 mmditx.py and the config logic of
 * sd3_impls.py BaseModel at fbf8f48, ordered as mmditx.py is (building blocks first, MMDiTX last,
 * then BaseModel) and named after it, so the two read side by side. The graph computes the
 * velocity `model_output` (flow matching); optionally also `denoised = x − v·σ`
 * (ModelSamplingDiscreteFlow.calculate_denoised) so a later step can fold the sampler into the graph.
 * Weight names are the checkpoints' relative to the diffusion model prefix (`x_embedder.proj.weight` …);
 * every linear layer goes through `net.linear` and the patch-embedding kernel through `net.conv2d`
 * (Params dequantizes it with its scale), so fp8 and ComfyUI scaled-fp8 weights need nothing here.
 */
import { ModelError, ValidationError } from '../../errors.js';
import type { Value } from '../onnx/graph.js';
import type { LinearInput, Net, Residual } from '../onnx/nn.js';
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

/** What every block needs: the layers and the config. */
interface Ctx {
  net: Net;
  cfg: MmditConfig;
  /**
   * split_qkv, the qk RMSNorm and block_mixing's token concatenation as one atelier:JointQkvNorm
   * node per attention (custom ops, a checkpoint with ln_q / ln_k, NetOptions.qkvNorm not
   * 'separate'): pre_attention then hands on its qkv projection unsplit (QkvProjection).
   */
  fuseQkvNorm: boolean;
}

function makeCtx(net: Net, cfg: MmditConfig): Ctx {
  const { customOps, qkvNorm } = net.options;
  return { net, cfg, fuseQkvNorm: customOps === true && cfg.qkNorm === 'rms' && qkvNorm !== 'separate' };
}

// PatchEmbed (mmditx.py:14-63)
/**
 * PatchEmbed.forward: Conv2d(kernel = stride = p), then NCHW → N(HW)C. The kernel is tiny
 * (16·p²·hidden), so an fp8 one is dequantized once by Params rather than per call.
 */
function patchEmbed(m: Ctx, x: Value): Value {
  const { net, cfg } = m;
  const patches = net.conv2d(x, 'x_embedder.proj', { stride: cfg.patchSize });
  return net.transpose(net.reshape(patches, [0, 0, -1]), [0, 2, 1]);
}

// modulate (mmditx.py:66-69)
/**
 * modulate(norm(x), shift, scale): x · (1 + scale) + shift after norm1 / norm2 / norm_final,
 * LayerNorms without affine weights, eps 1e-6 (mmditx.py:408-414, 665-667). Net does both: a fused
 * kernel with the custom ops, else stock LayerNorm (explicit unit scale and zero bias, see
 * Net.layerNorm) then Mul and Add. Each feeds one linear layer (qkv, fc1, the final linear), which
 * builds it (Net.modulated): a W8A8 layer reads it quantized from the norm's own kernel, which also
 * writes x when x is a gated residual not yet built (Net.gatedResidual).
 */
function modulatedNorm(m: Ctx, x: Residual, shift: Value, scale: Value): LinearInput {
  return m.net.modulated(x, shift, scale, m.cfg.hidden, NORM_EPS);
}

// Sine/cosine positional embedding functions (mmditx.py:72-131): none here; checkpoints store
// pos_embed and MMDiTX.cropped_pos_embed (below) only crops it.

// TimestepEmbedder (mmditx.py:138-187)
/**
 * TimestepEmbedder.timestep_embedding + forward: [cos(t·f), sin(t·f)] with
 * f_i = exp(−ln(10000)·i/128), computed in float32 as the reference does (`t.float()`), then the
 * MLP (Linear, SiLU, Linear) in the compute type.
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
  return net.linear(net.silu(net.linear(emb, 't_embedder.mlp.0')), 't_embedder.mlp.2');
}

// VectorEmbedder (mmditx.py:190-202)
/** VectorEmbedder.forward: Linear, SiLU, Linear. */
function vectorEmbedder(net: Net, x: Value, prefix: string): Value {
  return net.linear(net.silu(net.linear(x, `${prefix}.mlp.0`)), `${prefix}.mlp.2`);
}

interface Qkv {
  q: Value;
  k: Value;
  v: Value;
}

/**
 * SelfAttention.pre_attention's qkv projection before split_qkv, with its ln_q / ln_k weight keys:
 * what pre_attention hands on when the graph fuses the split and the norms (Ctx.fuseQkvNorm).
 */
interface QkvProjection {
  qkv: Value;
  norm: [lnQ: string, lnK: string];
}

/** What pre_attention hands block_mixing: q, k and v, or the projection they are still to come from. */
type PreQkv = Qkv | QkvProjection;

function isProjection(pre: PreQkv): pre is QkvProjection {
  return 'qkv' in pre;
}

// optimized_attention (mmditx.py:215-216) over other_impls.attention (other_impls.py:17-25)
function attention(m: Ctx, qkv: Qkv): Value {
  const { net, cfg } = m;
  return net.attention(qkv.q, qkv.k, qkv.v, cfg.heads, cfg.hidden / cfg.heads);
}

// SelfAttention (mmditx.py:219-295), with RMSNorm (mmditx.py:298-346) as ln_q / ln_k
/**
 * SelfAttention.pre_attention: qkv projection, split as [3, heads, head_dim] (split_qkv,
 * mmditx.py:210-212), RMSNorm of q and k per head when the checkpoint has ln_q/ln_k. With
 * Ctx.fuseQkvNorm the projection alone: block_mixing's JointQkvNorm splits and normalises it.
 */
function preAttention(m: Ctx, prefix: string, x: LinearInput): PreQkv {
  const { net, cfg } = m;
  const qkv = net.linear(x, `${prefix}.qkv`);
  if (m.fuseQkvNorm) return { qkv, norm: [`${prefix}.ln_q.weight`, `${prefix}.ln_k.weight`] };
  const [q, k, v] = net.chunk(qkv, 3, 2);
  const headNorm = (t: Value, key: string) => {
    if (cfg.qkNorm !== 'rms') return t;
    const perHead = net.reshape(t, [0, 0, cfg.heads, cfg.hidden / cfg.heads]);
    return net.reshape(net.rmsNorm(perHead, `${prefix}.${key}.weight`, NORM_EPS), [0, 0, cfg.hidden]);
  };
  return { q: headNorm(q, 'ln_q'), k: headNorm(k, 'ln_k'), v };
}

/** SelfAttention.post_attention (attn: this stream's tokens of the attention's output). */
function postAttention(net: Net, prefix: string, attn: LinearInput): Value {
  return net.linear(attn, `${prefix}.proj`);
}

// Mlp (other_impls.py:27-56), the DismantledBlock's (SwiGLUFeedForward, mmditx.py:349-384, is unused)
/** Mlp.forward with act_layer GELU(tanh) (mmditx.py:457-463): fc1, act, fc2. */
function mlp(net: Net, prefix: string, x: LinearInput): Value {
  return net.mlp(x, `${prefix}.mlp.fc1`, `${prefix}.mlp.fc2`);
}

// DismantledBlock (mmditx.py:387-588)
/** One DismantledBlock as JointBlock.__init__ makes it: where its weights are, which parts it has. */
interface DismantledBlock {
  prefix: string;
  /** The last context block: adaLN gives shift and scale only; no proj, norm2 or mlp. */
  preOnly: boolean;
  /** MMDiT-X: a second self-attention (attn2) over the image tokens. */
  xBlockSelfAttn: boolean;
}

/**
 * DismantledBlock.adaLN_modulation(c).chunk(n) (mmditx.py:477-482): n chunks of Linear(SiLU(c)),
 * each [batch, 1, hidden] so it broadcasts over tokens like `.unsqueeze(1)`.
 */
function adaLN(net: Net, prefix: string, cAct: LinearInput, n: number): Value[] {
  const mods = net.unsqueeze(net.linear(cAct, `${prefix}.adaLN_modulation.1`), [1]);
  return net.chunk(mods, n, 2);
}

/** What pre_attention / pre_attention_x keep for post_attention(_x) (mmditx.py:499, 536-543). */
interface Intermediates {
  x: Residual;
  gateMsa: Value;
  shiftMlp: Value;
  scaleMlp: Value;
  gateMlp: Value;
  /** pre_attention_x only. */
  gateMsa2?: Value;
}

/** DismantledBlock.pre_attention (mmditx.py:485-507): no intermediates when pre_only. */
function dismantledPreAttention(
  m: Ctx,
  block: DismantledBlock,
  x: Residual,
  cAct: LinearInput,
): [PreQkv, Intermediates | undefined] {
  const { net } = m;
  const { prefix } = block;
  if (!block.preOnly) {
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = adaLN(net, prefix, cAct, 6);
    const qkv = preAttention(m, `${prefix}.attn`, modulatedNorm(m, x, shiftMsa, scaleMsa));
    return [qkv, { x, gateMsa, shiftMlp, scaleMlp, gateMlp }];
  }
  const [shiftMsa, scaleMsa] = adaLN(net, prefix, cAct, 2);
  return [preAttention(m, `${prefix}.attn`, modulatedNorm(m, x, shiftMsa, scaleMsa)), undefined];
}

/**
 * DismantledBlock.post_attention (mmditx.py:509-515). Each `x + gate · …` is a Net.gatedResidual, built
 * by what reads it: the norm2 that feeds the MLP, and the next block's norm1 (or norm_final).
 */
function dismantledPostAttention(
  m: Ctx,
  block: DismantledBlock,
  attn: LinearInput,
  it: Intermediates,
): Residual {
  const { net } = m;
  const { prefix } = block;
  const x = net.gatedResidual(it.x, it.gateMsa, postAttention(net, `${prefix}.attn`, attn));
  return net.gatedResidual(x, it.gateMlp, mlp(net, prefix, modulatedNorm(m, x, it.shiftMlp, it.scaleMlp)));
}

/**
 * DismantledBlock.pre_attention_x (mmditx.py:517-544), the MMDiT-X dual attention: nine
 * modulations; attn and attn2 read the same norm1(x) with their own shift/scale.
 */
function dismantledPreAttentionX(
  m: Ctx,
  block: DismantledBlock,
  x: Residual,
  cAct: LinearInput,
): [PreQkv, PreQkv, Intermediates] {
  const { net } = m;
  const { prefix } = block;
  const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp, shiftMsa2, scaleMsa2, gateMsa2] = adaLN(
    net,
    prefix,
    cAct,
    9,
  );
  const norm = net.modulated(x, shiftMsa, scaleMsa, m.cfg.hidden, NORM_EPS);
  const norm2 = net.modulated(x, shiftMsa2, scaleMsa2, m.cfg.hidden, NORM_EPS);
  // One norm1(x), two modulations: W8A8 quantizes both in one pass over x (NetOptions.pairedNorms).
  net.pairNorms(norm, norm2);
  const qkv = preAttention(m, `${prefix}.attn`, norm);
  const qkv2 = preAttention(m, `${prefix}.attn2`, norm2);
  return [qkv, qkv2, { x, gateMsa, shiftMlp, scaleMlp, gateMlp, gateMsa2 }];
}

/**
 * DismantledBlock.post_attention_x without training dropout (mmditx.py:546-576). The two attention
 * residuals in a row are one Net.gatedResidual of two branches where the norms fuse them: norm2 then
 * makes both sums in its pass.
 */
function dismantledPostAttentionX(
  m: Ctx,
  block: DismantledBlock,
  attn: LinearInput,
  attn2: Value,
  it: Intermediates,
): Residual {
  const { net } = m;
  const { prefix } = block;
  let x = net.gatedResidual(it.x, it.gateMsa, postAttention(net, `${prefix}.attn`, attn));
  x = net.gatedResidual(x, it.gateMsa2!, postAttention(net, `${prefix}.attn2`, attn2));
  return net.gatedResidual(x, it.gateMlp, mlp(net, prefix, modulatedNorm(m, x, it.shiftMlp, it.scaleMlp)));
}

// block_mixing (mmditx.py:591-622)
/**
 * block_mixing's joint q, k and v: the context's then x's tokens (torch.cat along dim 1,
 * mmditx.py:599-602). Three token concatenations of pre_attention's q, k and v; with
 * Ctx.fuseQkvNorm one atelier:JointQkvNorm node that also splits both projections and applies each
 * stream's qk RMSNorm, in one pass.
 */
function jointQkv(m: Ctx, context: PreQkv, x: PreQkv): Qkv {
  const { net, cfg } = m;
  if (isProjection(context) && isProjection(x)) {
    const [q, k, v] = net.jointQkvNorm(context, x, cfg.heads, NORM_EPS);
    return { q, k, v };
  }
  const [c, xs] = [splitOf(context), splitOf(x)];
  const joint = (key: keyof Qkv) => net.concatTokens(c[key], xs[key]);
  return { q: joint('q'), k: joint('k'), v: joint('v') };
}

/**
 * The MMDiT-X attn2's q, k and v (image tokens alone): pre_attention's, or with Ctx.fuseQkvNorm one
 * JointQkvNorm node with no context tokens (the split and both norms in one pass).
 */
function selfQkv(m: Ctx, x: PreQkv): Qkv {
  if (!isProjection(x)) return x;
  const [q, k, v] = m.net.jointQkvNorm(undefined, x, m.cfg.heads, NORM_EPS);
  return { q, k, v };
}

/** pre_attention's q, k and v; a projection here would mean the streams disagree on fusing. */
function splitOf(pre: PreQkv): Qkv {
  if (isProjection(pre)) throw new Error(`MMDiT graph: ${pre.qkv.name} was left unsplit`);
  return pre;
}

/**
 * block_mixing: context and image tokens attend jointly (context first); a pre_only context block
 * (the last) returns no context. `contextTokens` [1] (int64) is context_qkv[0].shape[1], taken once
 * from the graph's context input for every block.
 */
function blockMixing(
  m: Ctx,
  context: Residual,
  x: Residual,
  contextBlock: DismantledBlock,
  xBlock: DismantledBlock,
  cAct: LinearInput,
  contextTokens: Value,
): [Residual | undefined, Residual] {
  const { net } = m;
  const [contextQkv, contextIntermediates] = dismantledPreAttention(m, contextBlock, context, cAct);

  let xQkv: PreQkv;
  let xQkv2: PreQkv | undefined;
  let xIntermediates: Intermediates | undefined;
  if (xBlock.xBlockSelfAttn) {
    [xQkv, xQkv2, xIntermediates] = dismantledPreAttentionX(m, xBlock, x, cAct);
  } else {
    [xQkv, xIntermediates] = dismantledPreAttention(m, xBlock, x, cAct);
  }

  const attn = attention(m, jointQkv(m, contextQkv, xQkv));
  // attn[:, :Tc] and attn[:, Tc:] of block_mixing, built by the proj layers that read them.
  const [contextAttn, xAttn] = net.splitTokens(attn, contextTokens);

  const nextContext = contextBlock.preOnly
    ? undefined
    : dismantledPostAttention(m, contextBlock, contextAttn, contextIntermediates!);

  let nextX: Residual;
  if (xBlock.xBlockSelfAttn) {
    const attn2 = attention(m, selfQkv(m, xQkv2!));
    nextX = dismantledPostAttentionX(m, xBlock, xAttn, attn2, xIntermediates!);
  } else {
    nextX = dismantledPostAttention(m, xBlock, xAttn, xIntermediates!);
  }

  return [nextContext, nextX];
}

// JointBlock (mmditx.py:625-647)
/** JointBlock: the context block is pre_only in the last layer, the x block has attn2 in the MMDiT-X layers. */
function jointBlock(
  m: Ctx,
  i: number,
  context: Residual,
  x: Residual,
  cAct: LinearInput,
  contextTokens: Value,
): [Residual | undefined, Residual] {
  const { cfg } = m;
  const prefix = `joint_blocks.${i}`;
  const contextBlock: DismantledBlock = {
    prefix: `${prefix}.context_block`,
    preOnly: i === cfg.depth - 1,
    xBlockSelfAttn: false,
  };
  const xBlock: DismantledBlock = {
    prefix: `${prefix}.x_block`,
    preOnly: false,
    xBlockSelfAttn: cfg.xBlockSelfAttnLayers.includes(i),
  };
  return blockMixing(m, context, x, contextBlock, xBlock, cAct, contextTokens);
}

// FinalLayer (mmditx.py:650-692)
/** FinalLayer.forward: shift, scale = chunk(adaLN(c), 2); linear(modulate(norm_final(x))). */
function finalLayer(m: Ctx, x: Residual, cAct: LinearInput): Value {
  const { net } = m;
  const [shift, scale] = adaLN(net, 'final_layer', cAct, 2);
  return net.linear(modulatedNorm(m, x, shift, scale), 'final_layer.linear');
}

// MMDiTX (mmditx.py:695-914)
/** The latent's patch grid [h], [w] (int64, 1-D) = H / p, W / p, for the crop and unpatchify. */
function patchGrid(m: Ctx, x: Value): { h: Value; w: Value } {
  const { net, cfg } = m;
  const p = net.ints([cfg.patchSize]);
  const H = net.g.op('Shape', [x], { start: 2, end: 3 });
  const W = net.g.op('Shape', [x], { start: 3, end: 4 });
  return { h: net.div(H, p), w: net.div(W, p) };
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

/**
 * MMDiTX.forward_core_with_concat (mmditx.py:855-885), without registers, skip layers or
 * ControlNet: the joint blocks, then the final layer. `context` is the graph's context input,
 * read only for its token count.
 */
function forwardCoreWithConcat(m: Ctx, x: Value, c: Value, ctx: Value, context: Value): Value {
  const { net, cfg } = m;
  const { g } = net;
  // adaLN_modulation is Sequential(SiLU, Linear) everywhere and c is shared: one SiLU for all.
  const cAct = net.sharedRows(net.silu(c));
  const contextTokens = g.op('Shape', [context], { start: 1, end: 2 });
  let h: Residual = x;
  let hCtx: Residual | undefined = ctx;
  for (let i = 0; i < cfg.depth; i++) {
    [hCtx, h] = g.scope(`joint_blocks.${i}`, () => jointBlock(m, i, hCtx!, h, cAct, contextTokens));
  }
  return g.scope('final_layer', () => finalLayer(m, h, cAct));
}

/** MMDiTX.forward (mmditx.py:887-914). */
function mmditForward(m: Ctx, x: Value, t: Value, context: Value, y: Value): Value {
  const { net } = m;
  const { g } = net;
  const grid = patchGrid(m, x);
  const h = net.add(
    g.scope('x_embedder', () => patchEmbed(m, x)),
    g.scope('pos_embed', () => croppedPosEmbed(m, grid)),
  );
  let c = g.scope('t_embedder', () => timestepEmbedder(net, t));
  c = net.add(
    c,
    g.scope('y_embedder', () => vectorEmbedder(net, y, 'y_embedder')),
  );
  const ctx = net.linear(context, 'context_embedder');
  const out = forwardCoreWithConcat(m, h, c, ctx, context);
  return g.scope('unpatchify', () => unpatchify(m, out, x, grid));
}

// BaseModel (sd3_impls.py:58-186)
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

export interface MmditBuildOptions {
  /**
   * Take `sigma` instead of `timestep` (timestep = σ·1000, ModelSamplingDiscreteFlow.timestep) and
   * output `denoised = x − model_output·σ` next to `model_output`, so a sampler step can live in the graph.
   * @default false
   */
  denoised?: boolean;
}

/**
 * BaseModel.apply_model (sd3_impls.py:153-180) as a graph. Inputs (compute type): `x` [batch, 16,
 * height, width], `timestep` [batch] (or `sigma` [batch] with `denoised`), `context` [batch,
 * tokens, contextDim], `y` [batch, admInChannels]. Outputs: `model_output` [batch, 16, height,
 * width] (the velocity) and, with `denoised`, `denoised`. Batch, latent size and token count are dynamic.
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
