/**
 * Tiled VAE decode: the latent is cut into overlapping tiles of one shape, each tile is decoded on
 * its own (float32), and the decoded tiles are blended with weights that ramp linearly across every
 * overlap, so each output pixel is a weighted mean of the tiles covering it and no seam shows. A
 * tile's border pixels, which its convolutions saw zero padding around, get the least weight. As
 * ComfyUI's tiled VAE decode (comfy/utils.py tiled_scale) with the slack spread evenly, so that
 * every tile has the same shape (one shape per image size: one cuDNN algorithm search, one arena
 * pattern on CUDA).
 *
 * Not exact: GroupNorm's statistics and the mid block's attention see one tile instead of the whole
 * image. test/pipeline/vae-tiling.test.ts bounds the difference against the untiled decode.
 */

/** Decodes one latent tile [C, th, tw] to [3, th·f, tw·f] floats (f: the VAE's upscale factor). */
export type TileDecoder = (tile: Float32Array, dims: [number, number, number]) => Promise<Float32Array>;

/**
 * Start offsets of tiles of length `tile` along an axis of length `length`: the first at 0, the
 * last ending at `length`, neighbours sharing at least `overlap`, the slack spread evenly.
 */
export function tileStarts(length: number, tile: number, overlap: number): number[] {
  if (tile >= length) return [0];
  const stride = Math.max(1, tile - overlap);
  const count = Math.ceil((length - tile) / stride) + 1;
  const span = length - tile;
  return Array.from({ length: count }, (_, i) => Math.round((i * span) / (count - 1)));
}

/**
 * Blend weight along one axis of a tile of `size` output pixels: ramps up across the `before`
 * pixels it shares with the previous tile and down across the `after` pixels it shares with the
 * next ((i + ½) / n, as a linear cross-fade sampled at pixel centres), 1 elsewhere.
 */
export function axisWeights(size: number, before: number, after: number): Float32Array {
  const w = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    let v = 1;
    if (i < before) v *= (i + 0.5) / before;
    const fromEnd = size - 1 - i;
    if (fromEnd < after) v *= (fromEnd + 0.5) / after;
    w[i] = v;
  }
  return w;
}

export interface TiledDecodeResult {
  /** [3, H, W] blended decoder output (about [−1, 1]). */
  decoded: Float32Array;
  height: number;
  width: number;
  tiles: number;
}

export interface TiledDecodeOptions {
  /** Tile shape in latent pixels [height, width], clamped to the latent's size. */
  tile: [number, number];
  /** Least overlap of neighbouring tiles, in latent pixels. */
  overlap: number;
  /** The VAE's upscale factor (8 for SD3). */
  factor: number;
  /** The blend weight along one axis; @default axisWeights (tests swap in a hard cut to compare). */
  weights?: (size: number, before: number, after: number) => Float32Array;
}

/** Decodes a [C, h, w] latent tile by tile with `decodeTile` and blends the tiles. */
export async function decodeTiled(
  latent: Float32Array,
  [C, h, w]: [number, number, number],
  decodeTile: TileDecoder,
  { tile, overlap, factor, weights = axisWeights }: TiledDecodeOptions,
): Promise<TiledDecodeResult> {
  const th = Math.min(tile[0], h);
  const tw = Math.min(tile[1], w);
  const ys = tileStarts(h, th, overlap);
  const xs = tileStarts(w, tw, overlap);
  const H = h * factor;
  const W = w * factor;
  const plane = H * W;
  const sum = new Float32Array(3 * plane);
  const weight = new Float32Array(plane);
  const part = new Float32Array(C * th * tw);
  const TH = th * factor;
  const TW = tw * factor;
  for (let yi = 0; yi < ys.length; yi++) {
    const y0 = ys[yi];
    // Overlaps with the neighbours, in output pixels (0 at the image's own borders).
    const up = yi > 0 ? (ys[yi - 1] + th - y0) * factor : 0;
    const down = yi < ys.length - 1 ? (y0 + th - ys[yi + 1]) * factor : 0;
    const wy = weights(TH, up, down);
    for (let xi = 0; xi < xs.length; xi++) {
      const x0 = xs[xi];
      const left = xi > 0 ? (xs[xi - 1] + tw - x0) * factor : 0;
      const right = xi < xs.length - 1 ? (x0 + tw - xs[xi + 1]) * factor : 0;
      const wx = weights(TW, left, right);
      for (let c = 0; c < C; c++) {
        for (let y = 0; y < th; y++) {
          const from = (c * h + y0 + y) * w + x0;
          part.set(latent.subarray(from, from + tw), (c * th + y) * tw);
        }
      }
      const out = await decodeTile(part, [C, th, tw]);
      if (out.length !== 3 * TH * TW) {
        throw new RangeError(`a ${th}×${tw} latent tile decoded to ${out.length} values, not 3×${TH}×${TW}`);
      }
      for (let y = 0; y < TH; y++) {
        const row = (y0 * factor + y) * W + x0 * factor;
        for (let x = 0; x < TW; x++) {
          const k = wy[y] * wx[x];
          weight[row + x] += k;
          for (let c = 0; c < 3; c++) sum[c * plane + row + x] += k * out[(c * TH + y) * TW + x];
        }
      }
    }
  }
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) sum[c * plane + p] /= weight[p];
  }
  return { decoded: sum, height: H, width: W, tiles: ys.length * xs.length };
}

/**
 * The decoder graph's `pixels` output computed on the host from `decoded` [3, H, W]: HWC uint8 of
 * 255 · clamp((x + 1) / 2, 0, 1), truncated toward zero, each step in float32 as the graph does.
 */
export function toPixels(decoded: Float32Array, height: number, width: number): Uint8Array {
  const f = Math.fround;
  const plane = height * width;
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) {
      const unit = Math.min(1, Math.max(0, f(f(decoded[c * plane + p] + 1) / 2)));
      out[p * 3 + c] = Math.trunc(f(unit * 255));
    }
  }
  return out;
}
