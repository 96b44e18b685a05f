/**
 * T5-XXL encoder (T5 v1.1) as SD3 uses it: the last hidden state after the final RMS norm. Port of
 * Stability-AI/sd3.5 other_impls.py at fbf8f48, itself from Hugging Face's T5, ordered as it is
 * (T5LayerNorm, T5DenseGatedActDense, T5LayerFF, T5Attention, T5LayerSelfAttention, T5Block,
 * T5Stack, then T5 / T5XXLModel).
 * Weight names are the checkpoints' (`encoder.block.N.layer.M.*`, `encoder.embed_tokens.weight`).
 *
 * The relative position bias is computed in the graph for the dynamic token count: the bucket of
 * every relative distance in [−max_distance, max_distance] is a small constant table built here
 * with the reference's formula; the graph clamps `key − query` into that range (every distance
 * beyond it falls in the last bucket, see `relativePositionBucket`) and looks the bucket up. So the
 * graph takes only `input_ids`, of any length (the SD3 T5 prompt is padded to ≥ 77 and may be longer).
 */
import { ModelError } from '../../errors.js';
import type { Value } from '../onnx/graph.js';
import type { Net } from '../onnx/nn.js';
import type { Params } from '../onnx/params.js';
import { e4m3ToFloat, e5m2ToFloat } from '../weights/dtypes.js';

export interface T5Config {
  layers: number;
  /** d_model: width of the residual stream and of the output. */
  dModel: number;
  /** d_ff: width of the gated feed-forward layer. */
  dFF: number;
  vocab: number;
  /**
   * Attention heads. Stored in the file as the width of block 0's relative_attention_bias
   * embedding [num_buckets, num_heads] (64 for T5-XXL).
   */
  heads: number;
  /** q/k/v width; the reference sets inner_dim = d_model (T5-XXL: 64 heads × d_kv 64 = 4096). */
  innerDim: number;
  /** num_buckets of the relative position bias (the reference's constant 32; also the bias rows). */
  relativeBuckets: number;
  /** The reference's relative_attention_max_distance (other_impls.py:649). */
  relativeMaxDistance: number;
}

const BLOCK = 'encoder.block';
const RELATIVE_BIAS = `${BLOCK}.0.layer.0.SelfAttention.relative_attention_bias.weight`;

/** T5LayerNorm's default eps (other_impls.py:593). */
const RMS_EPS = 1e-6;

// T5LayerNorm (other_impls.py:592–603): Net.rmsNorm (SimplifiedLayerNormalization), eps RMS_EPS.

// T5DenseGatedActDense (other_impls.py:606–618)
/** T5DenseGatedActDense.forward (other_impls.py:613–618): wo(gelu_tanh(wi_0 x) · wi_1 x). */
function t5DenseGatedActDense(net: Net, prefix: string, x: Value): Value {
  const gate = net.gelu(net.linear(x, `${prefix}.wi_0`), 'tanh');
  return net.linear(net.mul(gate, net.linear(x, `${prefix}.wi_1`)), `${prefix}.wo`);
}

// T5LayerFF (other_impls.py:621–631)
/** T5LayerFF.forward (other_impls.py:627–631): pre-norm, gated feed-forward, residual. */
function t5LayerFF(net: Net, prefix: string, x: Value): Value {
  const h = net.rmsNorm(x, `${prefix}.layer_norm.weight`, RMS_EPS);
  return net.add(x, t5DenseGatedActDense(net, `${prefix}.DenseReluDense`, h));
}

// T5Attention (other_impls.py:634–741)
/**
 * T5Attention._relative_position_bucket (other_impls.py:654–703), for one relative position:
 * exact buckets for small distances, logarithmic ones up to `maxDistance`, then the last bucket.
 * The logarithmic branch is evaluated in float32 as torch does (Math.fround after each step); its
 * value is an integer only at powers of two, where float32 log is exact up to a power-of-two
 * scaling, so truncation cannot differ from the reference's.
 */
export function relativePositionBucket(
  relativePosition: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  let buckets = 0;
  let n = numBuckets;
  let distance: number;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (relativePosition > 0) buckets += n;
    distance = Math.abs(relativePosition);
  } else {
    distance = -Math.min(relativePosition, 0);
  }
  const maxExact = Math.floor(n / 2);
  if (distance < maxExact) return buckets + distance;
  const f = Math.fround;
  const logRatio = f(Math.log(f(distance / maxExact)));
  const scaled = f(f(logRatio / f(Math.log(maxDistance / maxExact))) * (n - maxExact));
  return buckets + Math.min(maxExact + Math.trunc(scaled), n - 1);
}

/** Buckets of the relative positions −maxDistance … maxDistance, in that order. */
function bucketTable(numBuckets: number, maxDistance: number): BigInt64Array {
  const table = new BigInt64Array(2 * maxDistance + 1);
  for (let r = -maxDistance; r <= maxDistance; r++) {
    table[r + maxDistance] = BigInt(relativePositionBucket(r, true, numBuckets, maxDistance));
  }
  return table;
}

/**
 * T5Attention.compute_bias (other_impls.py:705–728) for the graph's token count T:
 * relative_position[i, j] = j − i, bucketed, looked up in block 0's relative_attention_bias
 * [num_buckets, heads], permuted to [1, heads, T, T].
 */
function computeBias(net: Net, cfg: T5Config, ids: Value): Value {
  const { g } = net;
  const maxDistance = cfg.relativeMaxDistance;
  const tokens = g.op('Gather', [g.op('Shape', [ids]), net.scalarInt(1)], { axis: 0 });
  const position = g.op('Range', [net.scalarInt(0), tokens, net.scalarInt(1)]);
  const memoryPosition = net.unsqueeze(position, [0]);
  const contextPosition = net.unsqueeze(position, [1]);
  const relative = net.sub(memoryPosition, contextPosition);
  // Every |distance| ≥ max_distance shares the last bucket of its side, so clamping is exact.
  const clamped = g.op('Min', [g.op('Max', [relative, net.ints([-maxDistance])]), net.ints([maxDistance])]);
  const table = bucketTable(cfg.relativeBuckets, maxDistance);
  const bucketOf = g.constant('relative_position_bucket', 'int64', [table.length], table);
  const bucket = g.op('Gather', [bucketOf, net.add(clamped, net.ints([maxDistance]))], { axis: 0 });
  const values = g.op('Gather', [net.p.get(RELATIVE_BIAS), bucket], { axis: 0 });
  return net.unsqueeze(net.transpose(values, [2, 0, 1]), [0]);
}

/**
 * T5Attention.forward (other_impls.py:730–741). The reference multiplies k by √d_head and then
 * lets scaled_dot_product_attention divide by √d_head: T5 does not scale its scores (Mesh
 * TensorFlow folds the scale into the initialization), so the scale here is 1. The relative
 * position bias is added to the scores as the attention mask.
 */
function t5Attention(net: Net, cfg: T5Config, prefix: string, x: Value, positionBias: Value): Value {
  const q = net.linear(x, `${prefix}.q`);
  const k = net.linear(x, `${prefix}.k`);
  const v = net.linear(x, `${prefix}.v`);
  const out = net.attention(q, k, v, cfg.heads, cfg.innerDim / cfg.heads, { bias: positionBias, scale: 1 });
  return net.linear(out, `${prefix}.o`);
}

// T5LayerSelfAttention (other_impls.py:744–764)
/** T5LayerSelfAttention.forward (other_impls.py:761–764): pre-norm, residual. */
function t5LayerSelfAttention(net: Net, cfg: T5Config, prefix: string, x: Value, positionBias: Value): Value {
  const h = net.rmsNorm(x, `${prefix}.layer_norm.weight`, RMS_EPS);
  return net.add(x, t5Attention(net, cfg, `${prefix}.SelfAttention`, h, positionBias));
}

// T5Block (other_impls.py:767–796)
/**
 * T5 v1.1 XXL's residual stream outgrows float16 (the reason transformers' T5 clamps it in fp16,
 * modeling_t5.py: `clamp_value = torch.finfo(torch.float16).max - 1000`); in float32 this is a no-op
 * and is left out.
 */
function clampHalf(net: Net, x: Value): Value {
  if (net.compute !== 'float16') return x;
  const limit = 65504 - 1000;
  return net.g.op('Clip', [x, net.scalar(-limit), net.scalar(limit)]);
}

/** T5Block.forward (other_impls.py:793–796): self-attention, then the feed-forward layer. */
function t5Block(net: Net, cfg: T5Config, prefix: string, x: Value, positionBias: Value): Value {
  x = clampHalf(net, t5LayerSelfAttention(net, cfg, `${prefix}.layer.0`, x, positionBias));
  return clampHalf(net, t5LayerFF(net, `${prefix}.layer.1`, x));
}

// T5Stack (other_impls.py:799–842)
/**
 * torch.nn.Embedding. An fp8 table (t5xxl_fp8_e4m3fn) stays one byte a value: ONNX's Gather takes
 * no float8, so the table's bytes are bound as uint8, the rows are gathered, and each byte is
 * decoded through a 256-entry table of its exact float8 value (then · scale). Dequantizing the
 * whole 32128 × 4096 table instead would hold it in the compute type.
 */
function embedding(net: Net, key: string, ids: Value): Value {
  const { g, p } = net;
  const storage = p.storage(key);
  if (storage !== 'F8_E4M3' && storage !== 'F8_E5M2') return g.op('Gather', [p.get(key), ids], { axis: 0 });
  const t = p.source.resolve(key);
  if (t?.kind !== 'tensor')
    throw new ModelError(p.source.description, `${key}: an fp8 embedding must be one tensor`);
  const bytes = g.external(`${t.info.name}#bytes`, {
    dtype: 'uint8',
    shape: t.info.shape,
    file: t.file.path,
    offset: t.info.offset,
    length: t.info.byteLength,
  });
  const decode = storage === 'F8_E4M3' ? e4m3ToFloat : e5m2ToFloat;
  const fp8Values = net.floats(
    [256],
    Float32Array.from({ length: 256 }, (_, b) => decode(b)),
  );
  const rows = net.cast(g.op('Gather', [bytes, ids], { axis: 0 }), 'int64');
  return net.mul(g.op('Gather', [fp8Values, rows], { axis: 0 }), p.fp8Scale(key));
}

/**
 * T5Stack.forward (other_impls.py:829–843): embed_tokens, the blocks, final_layer_norm. Block 0
 * owns the position bias; the reference hands it on to every later block as past_bias.
 */
function t5Stack(net: Net, cfg: T5Config, ids: Value): Value {
  const { g } = net;
  let x = embedding(net, embeddingKey(net.p), ids);
  const positionBias = g.scope('relative_position_bias', () => computeBias(net, cfg, ids));
  for (let i = 0; i < cfg.layers; i++) {
    x = g.scope(`block${i}`, () => t5Block(net, cfg, `${BLOCK}.${i}`, x, positionBias));
  }
  return net.rmsNorm(x, 'encoder.final_layer_norm.weight', RMS_EPS);
}

// T5 (other_impls.py:845–868) and T5XXLModel (other_impls.py:558–570)
/**
 * The token embedding: `encoder.embed_tokens.weight` as the reference loads it; Hugging Face
 * exports of T5EncoderModel keep only the tied copy `shared.weight`.
 */
function embeddingKey(p: Params): string {
  return p.has('encoder.embed_tokens.weight') || !p.has('shared.weight')
    ? 'encoder.embed_tokens.weight'
    : 'shared.weight';
}

/**
 * Hyperparameters from the state dict; the reference reads them from its T5 config, every one of
 * which is a tensor's shape or the number of blocks here.
 */
export function t5Config(p: Params, overrides: Partial<T5Config> = {}): T5Config {
  const [vocab, dModel] = p.shape(embeddingKey(p));
  const [relativeBuckets, heads] = p.shape(RELATIVE_BIAS);
  let layers = 0;
  while (p.has(`${BLOCK}.${layers}.layer.0.SelfAttention.q.weight`)) layers++;
  return {
    layers,
    dModel,
    dFF: p.shape(`${BLOCK}.0.layer.1.DenseReluDense.wi_0.weight`)[0],
    vocab,
    heads,
    innerDim: p.shape(`${BLOCK}.0.layer.0.SelfAttention.q.weight`)[0],
    relativeBuckets,
    relativeMaxDistance: 128,
    ...overrides,
  };
}

/**
 * T5XXLModel / T5 forward as a graph. Input: `input_ids` int64 [batch, tokens] (tokens dynamic).
 * Output: `hidden` [batch, tokens, d_model], the reference's `T5XXLModel(...)(tokens)[0]` (layer "last").
 */
export function buildT5(net: Net, cfg: T5Config): void {
  const ids = net.g.input('input_ids', 'int64', ['batch', 'tokens']);
  net.floatOutput(t5Stack(net, cfg, ids), 'hidden', ['batch', 'tokens', cfg.dModel]);
}
