/**
 * CLIP text encoders (CLIP-L and CLIP-G) as SD3 uses them. Port of Stability-AI/sd3.5
 * other_impls.py (CLIPEmbeddings, CLIPAttention, CLIPLayer, CLIPTextModel_, SDClipModel) at
 * fbf8f48: the penultimate layer's hidden states without the final layer norm, and the pooled
 * output (final layer norm at the end-of-text token), projected by `text_projection` for CLIP-G.
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

/** Layer norms of CLIP use torch's default eps. */
const LN_EPS = 1e-5;

/**
 * Graph inputs: `input_ids` int64 [batch, positions]. Outputs: `hidden` [batch, positions, hidden]
 * (output of layer L−2, the reference's layer_idx −2) and `pooled` [batch, hidden].
 */
export function buildClip(net: Net, cfg: ClipConfig): void {
  const { g } = net;
  const ids = g.input('input_ids', 'int64', ['batch', cfg.positions]);
  const tokens = g.op('Gather', [net.p.get('text_model.embeddings.token_embedding.weight'), ids], {
    axis: 0,
  });
  let x = net.add(tokens, net.p.get('text_model.embeddings.position_embedding.weight'));

  const mask = causalMask(net, cfg.positions);
  let hidden: Value | undefined;
  for (let i = 0; i < cfg.layers; i++) {
    x = g.scope(`layer${i}`, () => clipLayer(net, cfg, `text_model.encoder.layers.${i}`, x, mask));
    if (i === cfg.layers - 2) hidden = x;
  }
  const final = net.layerNorm(x, 'text_model.final_layer_norm', cfg.hidden, LN_EPS);
  // The end-of-text token has the largest id: pooled = final[b, argmax(ids[b])] (first occurrence).
  const eos = g.op('ArgMax', [net.cast(ids, 'int64')], { axis: -1, keepdims: 1, select_last_index: 0 });
  let pooled = g.op('GatherND', [final, eos], { batch_dims: 1 });
  if (cfg.projectPooled) pooled = net.linear(pooled, 'text_projection');

  net.floatOutput(hidden ?? x, 'hidden', ['batch', cfg.positions, cfg.hidden]);
  net.floatOutput(pooled, 'pooled', ['batch', cfg.hidden]);
}

function clipLayer(net: Net, cfg: ClipConfig, prefix: string, x: Value, mask: Value): Value {
  const headDim = cfg.hidden / cfg.heads;
  const h = net.layerNorm(x, `${prefix}.layer_norm1`, cfg.hidden, LN_EPS);
  const q = net.linear(h, `${prefix}.self_attn.q_proj`);
  const k = net.linear(h, `${prefix}.self_attn.k_proj`);
  const v = net.linear(h, `${prefix}.self_attn.v_proj`);
  const attn = net.attention(q, k, v, cfg.heads, headDim, { bias: mask });
  x = net.add(x, net.linear(attn, `${prefix}.self_attn.out_proj`));
  const h2 = net.layerNorm(x, `${prefix}.layer_norm2`, cfg.hidden, LN_EPS);
  const m =
    cfg.activation === 'quick_gelu'
      ? net.quickGelu(net.linear(h2, `${prefix}.mlp.fc1`))
      : net.linearGelu(h2, `${prefix}.mlp.fc1`, 'none');
  return net.add(x, net.linear(m, `${prefix}.mlp.fc2`));
}

/** Additive causal mask [1, 1, n, n]: −∞ above the diagonal (the reference's triu_(1) of −inf). */
function causalMask(net: Net, n: number): Value {
  const values = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) values[i * n + j] = Number.NEGATIVE_INFINITY;
  return net.floats([1, 1, n, n], values);
}
