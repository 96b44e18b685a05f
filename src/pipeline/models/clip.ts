/**
 * CLIP text encoders (CLIP-L and CLIP-G) as SD3 uses them. Port of Stability-AI/sd3.5
 * other_impls.py at fbf8f48, ordered as it is (attention, Mlp, CLIPAttention, CLIPLayer,
 * CLIPEncoder, CLIPEmbeddings, CLIPTextModel_, then SDClipModel): the penultimate layer's hidden
 * states without the final layer norm, and the pooled output (final layer norm at the end-of-text
 * token), projected by `text_projection` for CLIP-G.
 * Weight names are the checkpoints' (`text_model.*`, `text_projection.weight`).
 */
import type { Value } from '../onnx/graph.js';
import type { Net } from '../onnx/nn.js';
import type { Params } from '../onnx/params.js';

export interface ClipConfig {
  layers: number;
  hidden: number;
  /** Not stored in checkpoints: 64-wide heads in the real CLIP-L (12) and CLIP-G (20). */
  heads: number;
  activation: 'quick_gelu' | 'gelu';
  positions: number;
  /** CLIP-G's pooled output goes through text_projection; CLIP-L's does not (return_projected_pooled=False). */
  projectPooled: boolean;
}

export type ClipKind = 'clip_l' | 'clip_g';

/** Layer norms of CLIP use torch's default eps. */
const LN_EPS = 1e-5;

// attention (other_impls.py:17-25): Net.attention, with the causal mask as its bias.

// Mlp (other_impls.py:27-56) with CLIPLayer's ACTIVATIONS (other_impls.py:89-92)
/** Mlp.forward: fc1, act, fc2; the exact GELU runs fused with fc1's bias (Net.linearGelu). */
function clipMlp(net: Net, cfg: ClipConfig, prefix: string, x: Value): Value {
  const h =
    cfg.activation === 'quick_gelu'
      ? net.quickGelu(net.linear(x, `${prefix}.fc1`))
      : net.linearGelu(x, `${prefix}.fc1`, 'none');
  return net.linear(h, `${prefix}.fc2`);
}

// CLIPAttention (other_impls.py:64-86)
/** CLIPAttention.forward: q, k, v projections, attention under `mask`, out_proj. */
function clipAttention(net: Net, cfg: ClipConfig, prefix: string, x: Value, mask: Value): Value {
  const q = net.linear(x, `${prefix}.q_proj`);
  const k = net.linear(x, `${prefix}.k_proj`);
  const v = net.linear(x, `${prefix}.v_proj`);
  const attn = net.attention(q, k, v, cfg.heads, cfg.hidden / cfg.heads, { bias: mask });
  return net.linear(attn, `${prefix}.out_proj`);
}

// CLIPLayer (other_impls.py:95-122)
/** CLIPLayer.forward: pre-norm self-attention and MLP, each added to the residual stream. */
function clipLayer(net: Net, cfg: ClipConfig, prefix: string, x: Value, mask: Value): Value {
  const h = net.layerNorm(x, `${prefix}.layer_norm1`, cfg.hidden, LN_EPS);
  x = net.add(x, clipAttention(net, cfg, `${prefix}.self_attn`, h, mask));
  const h2 = net.layerNorm(x, `${prefix}.layer_norm2`, cfg.hidden, LN_EPS);
  return net.add(x, clipMlp(net, cfg, `${prefix}.mlp`, h2));
}

// CLIPEncoder (other_impls.py:125-160)
/** CLIPEncoder.forward with intermediate_output −2: the last layer's output and layer L−2's. */
function clipEncoder(net: Net, cfg: ClipConfig, x: Value, mask: Value): { x: Value; intermediate: Value } {
  let intermediate: Value | undefined;
  for (let i = 0; i < cfg.layers; i++) {
    x = net.g.scope(`layer${i}`, () => clipLayer(net, cfg, `text_model.encoder.layers.${i}`, x, mask));
    if (i === cfg.layers - 2) intermediate = x;
  }
  return { x, intermediate: intermediate ?? x };
}

// CLIPEmbeddings (other_impls.py:163-176)
/** CLIPEmbeddings.forward: token_embedding(ids) + position_embedding.weight. */
function clipEmbeddings(net: Net, ids: Value): Value {
  const tokens = net.g.op('Gather', [net.p.get('text_model.embeddings.token_embedding.weight'), ids], {
    axis: 0,
  });
  return net.add(tokens, net.p.get('text_model.embeddings.position_embedding.weight'));
}

// CLIPTextModel_ (other_impls.py:179-218) and CLIPTextModel's text_projection (other_impls.py:221-242)
/** Additive causal mask [1, 1, n, n]: −∞ above the diagonal (the reference's triu_(1) of −inf). */
function causalMask(net: Net, n: number): Value {
  const values = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) values[i * n + j] = Number.NEGATIVE_INFINITY;
  return net.floats([1, 1, n, n], values);
}

/**
 * CLIPTextModel_.forward (final_layer_norm_intermediate=False, SDClipModel's layer_norm_hidden_state
 * for SD3's encoders): the intermediate as is, pooled = final_layer_norm(x) at the end-of-text
 * token, then text_projection for CLIP-G.
 */
function clipTextModel(net: Net, cfg: ClipConfig, ids: Value): { hidden: Value; pooled: Value } {
  const { g } = net;
  const embedded = clipEmbeddings(net, ids);
  const mask = causalMask(net, cfg.positions);
  const { x, intermediate } = clipEncoder(net, cfg, embedded, mask);
  const final = net.layerNorm(x, 'text_model.final_layer_norm', cfg.hidden, LN_EPS);
  // The end-of-text token has the largest id: pooled = final[b, argmax(ids[b])] (first occurrence).
  const eos = g.op('ArgMax', [net.cast(ids, 'int64')], { axis: -1, keepdims: 1, select_last_index: 0 });
  let pooled = g.op('GatherND', [final, eos], { batch_dims: 1 });
  if (cfg.projectPooled) pooled = net.linear(pooled, 'text_projection');
  return { hidden: intermediate, pooled };
}

// SDClipModel / SDXLClipG (other_impls.py:458-555)
/** Hyperparameters from the state dict, as the reference's configs would give them. */
export function clipConfig(p: Params, kind: ClipKind, overrides: Partial<ClipConfig> = {}): ClipConfig {
  const [positions, hidden] = p.shape('text_model.embeddings.position_embedding.weight');
  let layers = 0;
  while (p.has(`text_model.encoder.layers.${layers}.layer_norm1.weight`)) layers++;
  return {
    layers,
    hidden,
    heads: hidden / 64,
    activation: kind === 'clip_l' ? 'quick_gelu' : 'gelu',
    positions,
    projectPooled: kind === 'clip_g',
    ...overrides,
  };
}

/**
 * SDClipModel.forward as a graph. Input: `input_ids` int64 [batch, positions]. Outputs: `hidden`
 * [batch, positions, hidden] (output of layer L−2, the reference's layer_idx −2) and `pooled`
 * [batch, hidden].
 */
export function buildClip(net: Net, cfg: ClipConfig): void {
  const ids = net.g.input('input_ids', 'int64', ['batch', cfg.positions]);
  const { hidden, pooled } = clipTextModel(net, cfg, ids);
  net.floatOutput(hidden, 'hidden', ['batch', cfg.positions, cfg.hidden]);
  net.floatOutput(pooled, 'pooled', ['batch', cfg.hidden]);
}
