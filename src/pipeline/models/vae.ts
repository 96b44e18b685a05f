/**
 * The SD3 VAE: decoder (latent → RGB in [−1, 1]) and encoder (RGB → the latent distribution's
 * mean and log-variance), 16 latent channels. Port of Stability-AI/sd3.5 sd3_impls.py at fbf8f48,
 * ordered as it is (Normalize, ResnetBlock, AttnBlock, Downsample, Upsample, VAEEncoder,
 * VAEDecoder, SDVAE), the LDM autoencoder without its quantization convolutions. Weight names are the checkpoints'
 * (`decoder.*`, `encoder.*`; under `first_stage_model.` in single-file checkpoints).
 *
 * Latents here are in the VAE's own space: the sampler's output goes through
 * SD3LatentFormat.process_out before the decoder, and the encoder's mean through process_in.
 */
import { ModelError } from '../../errors.js';
import { ONNX_DTYPE, type Value } from '../onnx/graph.js';
import type { Net } from '../onnx/nn.js';
import type { Params } from '../onnx/params.js';

export interface VaeConfig {
  /** Key prefix of the VAE in the weight source: '' or `first_stage_model.` for a whole checkpoint. */
  prefix: string;
  /** Base channel count (SD3: 128). */
  ch: number;
  /** Channel multiplier per resolution level (SD3: 1, 2, 4, 4); the image is 2^(levels−1) × the latent. */
  chMult: number[];
  /** ResnetBlocks per level in the encoder; the decoder has one more. */
  numResBlocks: number;
  /** Latent channels (SD3: 16). */
  zChannels: number;
  /** RGB: the encoder's input and the decoder's output channels. */
  imageChannels: number;
}

/** The reference's clamp of the encoder's log-variance (sd3_impls.py:740). */
const LOGVAR_MIN = -30;
const LOGVAR_MAX = 20;

// Normalize (sd3_impls.py:380–388): Net.groupNorm with 32 groups, eps 1e-6.
const NORM_GROUPS = 32;
const NORM_EPS = 1e-6;

// ResnetBlock (sd3_impls.py:391–444)
/**
 * ResnetBlock.forward (sd3_impls.py:434–444): norm1 → swish → conv1 → norm2 → swish → conv2,
 * plus the input (through the 1×1 nin_shortcut when the width changes).
 */
function resnetBlock(net: Net, prefix: string, x: Value, inChannels: number, outChannels: number): Value {
  let hidden = net.silu(net.groupNorm(x, `${prefix}.norm1`, NORM_GROUPS, inChannels, NORM_EPS));
  hidden = net.conv2d(hidden, `${prefix}.conv1`, { padding: 1 });
  hidden = net.silu(net.groupNorm(hidden, `${prefix}.norm2`, NORM_GROUPS, outChannels, NORM_EPS));
  hidden = net.conv2d(hidden, `${prefix}.conv2`, { padding: 1 });
  const shortcut = inChannels !== outChannels ? net.conv2d(x, `${prefix}.nin_shortcut`) : x;
  return net.add(shortcut, hidden);
}

// AttnBlock (sd3_impls.py:447–503)
/**
 * AttnBlock.forward (sd3_impls.py:488–503): single-head self-attention over the h·w positions,
 * channels as the feature axis, scale c^−½ (scaled_dot_product_attention's default).
 */
function attnBlock(net: Net, prefix: string, x: Value, channels: number): Value {
  const { g } = net;
  const hidden = net.groupNorm(x, `${prefix}.norm`, NORM_GROUPS, channels, NORM_EPS);
  // b c h w -> b (h w) c
  const tokens = (t: Value) => net.transpose(net.reshape(t, [0, channels, -1]), [0, 2, 1]);
  const q = tokens(net.conv2d(hidden, `${prefix}.q`));
  const k = tokens(net.conv2d(hidden, `${prefix}.k`));
  const v = tokens(net.conv2d(hidden, `${prefix}.v`));
  const attended = net.attention(q, k, v, 1, channels);
  // b (h w) c -> b c h w
  const back = g.op('Reshape', [net.transpose(attended, [0, 2, 1]), g.op('Shape', [x])]);
  return net.add(x, net.conv2d(back, `${prefix}.proj_out`));
}

// Downsample (sd3_impls.py:506–523)
/**
 * Downsample.forward (sd3_impls.py:519–523): zero-pad one column right and one row below, then a
 * 3×3 convolution with stride 2 and no padding.
 */
function downsample(net: Net, prefix: string, x: Value): Value {
  // ONNX pads: [N, C, H, W begins, then N, C, H, W ends]; torch's (0, 1, 0, 1) is W then H.
  const padded = net.g.op('Pad', [x, net.ints([0, 0, 0, 0, 0, 0, 1, 1])], { mode: 'constant' });
  return net.conv2d(padded, `${prefix}.conv`, { stride: 2 });
}

// Upsample (sd3_impls.py:526–542)
/**
 * Upsample.forward (sd3_impls.py:539–542): nearest-neighbour 2× (torch's "nearest": source index
 * floor(dst / 2), i.e. ONNX asymmetric + floor), then a 3×3 convolution.
 */
function upsample(net: Net, prefix: string, x: Value): Value {
  const { g } = net;
  const scales = g.constant('scales', 'float32', [4], new Float32Array([1, 1, 2, 2]));
  const up = g.op('Resize', [x, undefined, scales], {
    mode: 'nearest',
    coordinate_transformation_mode: 'asymmetric',
    nearest_mode: 'floor',
  });
  return net.conv2d(up, `${prefix}.conv`, { padding: 1 });
}

// VAEEncoder (sd3_impls.py:545–633)
/**
 * VAEEncoder.forward (sd3_impls.py:615–633) and the moments split of SDVAE.encode
 * (sd3_impls.py:737–741). Input `image` [batch, 3, H, W] in [−1, 1] (2·rgb/255 − 1). Outputs
 * `mean` and `logvar` [batch, z, H/2^(levels−1), W/2^(levels−1)], logvar clamped to [−30, 20].
 * The reference then samples mean + exp(logvar / 2) · ε; the pipeline may take the mean.
 */
export function buildVaeEncoder(net: Net, cfg: VaeConfig): void {
  const { g } = net;
  const pre = `${cfg.prefix}encoder`;
  const levels = cfg.chMult.length;
  const x = net.floatInput('image', ['batch', cfg.imageChannels, 'height', 'width']);
  // downsampling
  let h = net.conv2d(x, `${pre}.conv_in`, { padding: 1 });
  let blockIn = cfg.ch;
  for (let level = 0; level < levels; level++) {
    const blockOut = cfg.ch * cfg.chMult[level];
    h = g.scope(`down${level}`, () => {
      let hs = h;
      for (let block = 0; block < cfg.numResBlocks; block++) {
        hs = resnetBlock(net, `${pre}.down.${level}.block.${block}`, hs, blockIn, blockOut);
        blockIn = blockOut;
      }
      return level !== levels - 1 ? downsample(net, `${pre}.down.${level}.downsample`, hs) : hs;
    });
  }
  // middle
  h = g.scope('mid', () => {
    let m = resnetBlock(net, `${pre}.mid.block_1`, h, blockIn, blockIn);
    m = attnBlock(net, `${pre}.mid.attn_1`, m, blockIn);
    return resnetBlock(net, `${pre}.mid.block_2`, m, blockIn, blockIn);
  });
  // end
  h = net.groupNorm(h, `${pre}.norm_out`, NORM_GROUPS, blockIn, NORM_EPS);
  h = net.conv2d(net.silu(h), `${pre}.conv_out`, { padding: 1 });

  const [mean, logvar] = net.chunk(h, 2, 1);
  const clamped = g.op('Clip', [logvar, net.scalar(LOGVAR_MIN), net.scalar(LOGVAR_MAX)]);
  const dims = ['batch', cfg.zChannels, 'latent_height', 'latent_width'];
  net.floatOutput(mean, 'mean', dims);
  net.floatOutput(clamped, 'logvar', dims);
}

// VAEDecoder (sd3_impls.py:636–723)
/**
 * VAEDecoder.forward (sd3_impls.py:706–723). Input `latent` [batch, z, h, w] (after process_out).
 * Outputs: `decoded` [batch, 3, H, W] (H = h · 2^(levels−1)), about [−1, 1]; `pixels` uint8
 * [batch, H, W, 3] (row-major RGB, as sharp's raw input takes it) = 255 · clamp((decoded + 1) / 2,
 * 0, 1) truncated toward zero, as sd3_infer.vae_decode's numpy astype(np.uint8) does (not rounded).
 *
 * `latentSize` fixes the input to one image of that [height, width] (the tiled decode's tile on
 * CUDA: static shapes let ONNX Runtime plan the memory once); otherwise batch and sides are free.
 */
export function buildVaeDecoder(
  net: Net,
  cfg: VaeConfig,
  opts: { latentSize?: [number, number] } = {},
): void {
  const { g } = net;
  const pre = `${cfg.prefix}decoder`;
  const levels = cfg.chMult.length;
  const fixed = opts.latentSize;
  const scale = 2 ** (levels - 1);
  const z = net.floatInput(
    'latent',
    fixed ? [1, cfg.zChannels, fixed[0], fixed[1]] : ['batch', cfg.zChannels, 'height', 'width'],
  );
  const outSides = fixed ? [fixed[0] * scale, fixed[1] * scale] : ['image_height', 'image_width'];
  const batch = fixed ? 1 : 'batch';
  // z to block_in
  let blockIn = cfg.ch * cfg.chMult[levels - 1];
  let hidden = net.conv2d(z, `${pre}.conv_in`, { padding: 1 });
  // middle
  hidden = g.scope('mid', () => {
    let h = resnetBlock(net, `${pre}.mid.block_1`, hidden, blockIn, blockIn);
    h = attnBlock(net, `${pre}.mid.attn_1`, h, blockIn);
    return resnetBlock(net, `${pre}.mid.block_2`, h, blockIn, blockIn);
  });
  // upsampling
  for (let level = levels - 1; level >= 0; level--) {
    const blockOut = cfg.ch * cfg.chMult[level];
    hidden = g.scope(`up${level}`, () => {
      let h = hidden;
      for (let block = 0; block < cfg.numResBlocks + 1; block++) {
        h = resnetBlock(net, `${pre}.up.${level}.block.${block}`, h, blockIn, blockOut);
        blockIn = blockOut;
      }
      return level !== 0 ? upsample(net, `${pre}.up.${level}.upsample`, h) : h;
    });
  }
  // end
  hidden = net.groupNorm(hidden, `${pre}.norm_out`, NORM_GROUPS, blockIn, NORM_EPS);
  const decoded = net.conv2d(net.silu(hidden), `${pre}.conv_out`, { padding: 1 });

  net.floatOutput(decoded, 'decoded', [batch, cfg.imageChannels, ...outSides]);
  // sd3_infer.py:421–423 (vae_decode): clamp((image + 1) / 2, 0, 1), × 255, astype(np.uint8).
  const unit = g.op('Clip', [
    net.div(net.add(decoded, net.scalar(1)), net.scalar(2)),
    net.scalar(0),
    net.scalar(1),
  ]);
  const levels255 = net.mul(net.transpose(unit, [0, 2, 3, 1]), net.scalar(255));
  // ONNX Cast from float to an integer type truncates toward zero, like numpy's astype.
  const pixels = g.op('Cast', [levels255], { to: ONNX_DTYPE.uint8 });
  g.output(pixels, 'pixels', 'uint8', [batch, ...outSides, cfg.imageChannels]);
}

// SDVAE (sd3_impls.py:726–742)
/**
 * Hyperparameters from the state dict: widths from conv shapes, levels and blocks by counting
 * `decoder.up.N` / `encoder.down.N.block.M` keys. Works for decoder-only files too (then ch is
 * taken as ch · ch_mult[0], ch_mult[0] being 1 in every SD VAE).
 */
export function vaeConfig(p: Params, prefix = '', overrides: Partial<VaeConfig> = {}): VaeConfig {
  const dec = `${prefix}decoder`;
  const enc = `${prefix}encoder`;
  if (!p.has(`${dec}.conv_in.weight`) && !p.has(`${enc}.conv_in.weight`)) {
    throw new ModelError(
      p.source.description,
      `${p.source.description}: no VAE found (no "${dec}.conv_in.weight" or "${enc}.conv_in.weight")`,
    );
  }
  const hasEncoder = p.has(`${enc}.conv_in.weight`);
  const count = (key: (i: number) => string) => {
    let n = 0;
    while (p.has(key(n))) n++;
    return n;
  };
  const levels = hasEncoder
    ? count((i) => `${enc}.down.${i}.block.0.conv1.weight`)
    : count((i) => `${dec}.up.${i}.block.0.conv1.weight`);
  const ch = hasEncoder ? p.shape(`${enc}.conv_in.weight`)[0] : p.shape(`${dec}.conv_out.weight`)[1];
  // A level's output width: its last ResnetBlock's conv2 (the encoder's down.i, else the decoder's up.i).
  const levelWidth = (i: number) =>
    hasEncoder
      ? p.shape(`${enc}.down.${i}.block.0.conv2.weight`)[0]
      : p.shape(`${dec}.up.${i}.block.0.conv2.weight`)[0];
  return {
    prefix,
    ch,
    chMult: Array.from({ length: levels }, (_, i) => levelWidth(i) / ch),
    numResBlocks: hasEncoder
      ? count((i) => `${enc}.down.0.block.${i}.conv1.weight`)
      : count((i) => `${dec}.up.0.block.${i}.conv1.weight`) - 1,
    zChannels: p.has(`${dec}.conv_in.weight`)
      ? p.shape(`${dec}.conv_in.weight`)[1]
      : p.shape(`${enc}.conv_out.weight`)[0] / 2,
    imageChannels: hasEncoder ? p.shape(`${enc}.conv_in.weight`)[1] : p.shape(`${dec}.conv_out.weight`)[0],
    ...overrides,
  };
}
