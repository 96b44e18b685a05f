/**
 * When the VAE decode is tiled, and with which tiles. The untiled decode is the default and stays
 * the reference's exact path; tiling (see ./vae-tiled-decode.ts) is chosen when asked for, or when
 * a memory budget is given and the untiled decode's estimated activations would not fit in it.
 *
 * The estimate is arithmetic on the decoder's shape, calibrated on one measurement: SD3's fp32 VAE
 * decode at 1024² raised ONNX Runtime's CUDA arena peak by 6.42 GiB = 6.9e9 bytes (bench/NOTES.md,
 * issue 6 step 6; the bench reports nvidia-smi's MiB / 1024), which is 6.4 × its largest activation
 * (the last upsample's output, 256 channels × 1024² × 4 bytes = 1.07e9). It scales with the pixels (and quadratically through the mid-block attention, whose
 * single-head score matrix is (h·w)² of the latent).
 */

/** What the estimate needs of the decoder (a VaeConfig has it). */
export interface VaeDecoderShape {
  /** Base channel count (SD3: 128). */
  ch: number;
  /** Channel multiplier per level (SD3: 1, 2, 4, 4); the image is 2^(levels−1) × the latent. */
  chMult: number[];
}

export interface VaeTilingOptions {
  /**
   * `auto`: tile only when `budgetBytes` is given and the untiled decode's estimate exceeds it;
   * `always`: tile every latent larger than one tile; `never`: the untiled decode.
   * @default 'auto'
   */
  mode?: 'auto' | 'always' | 'never';
  /** Bytes the decode's activations may take (not counting the VAE's weights); none: unlimited. */
  budgetBytes?: number;
  /**
   * Tile side in latent pixels. @default under a budget: the largest that fits it (fewest tiles);
   * otherwise 64 (512 image pixels, as ComfyUI's tiled VAE decode)
   */
  tile?: number;
  /** Latent pixels two neighbouring tiles share at least; @default 16, or a quarter of a smaller tile */
  overlap?: number;
  /** Bytes per activation element: 4 for the float32 VAE, 2 for float16. @default 4 */
  bytesPerElement?: number;
}

export type VaeDecodePlan =
  | {
      tiled: false;
      /** Estimated activation bytes of the untiled decode. */
      estimateBytes: number;
      reason: string;
    }
  | {
      tiled: true;
      /** Tile shape in latent pixels [height, width]: every tile of this latent has it. */
      tile: [number, number];
      /** Least overlap in latent pixels between neighbours (the layout spreads any slack evenly). */
      overlap: number;
      /** Estimated activation bytes of the untiled decode and of one tile. */
      estimateBytes: number;
      tileEstimateBytes: number;
      /** False when even the smallest tile's estimate exceeds the budget (the decode is tried anyway). */
      fits: boolean;
      reason: string;
    };

/** Calibration: peak activations ≈ this × the largest activation (see the file comment). */
export const VAE_ACTIVATION_FACTOR = 6.4;
export const DEFAULT_VAE_TILE = 64;
/** Latent pixels neighbours share by default (a quarter of a smaller tile). */
export const DEFAULT_VAE_OVERLAP = 16;
/** Smallest tile chosen under a tight budget: below it GroupNorm's per-tile statistics drift more. */
export const MIN_VAE_TILE = 32;

/**
 * Estimated peak activation bytes of decoding an [h, w] latent in one run: the larger of the
 * upsampling path (VAE_ACTIVATION_FACTOR × its largest tensor) and the mid block's attention (the
 * score matrix and its softmax, beside a few latent-sized tensors).
 */
export function vaeDecodeBytes(
  shape: VaeDecoderShape,
  [h, w]: [number, number],
  bytesPerElement = 4,
): number {
  const levels = shape.chMult.length;
  const width = (level: number) => shape.ch * shape.chMult[level];
  const latentPixels = h * w;
  let largest = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const pixels = latentPixels * 4 ** (levels - 1 - level);
    const input = level === levels - 1 ? width(level) : width(level + 1);
    largest = Math.max(largest, Math.max(input, width(level)) * pixels);
    // The nearest-neighbour upsample at the end of every level but the last doubles each side.
    if (level !== 0) largest = Math.max(largest, width(level) * pixels * 4);
  }
  const mid = width(levels - 1) * latentPixels;
  const attention = 2 * latentPixels * latentPixels + 4 * mid;
  return Math.max(VAE_ACTIVATION_FACTOR * largest, attention) * bytesPerElement;
}

/**
 * Tile sides, largest first, that cover a side of the latent with k = 2, 3, … tiles sharing
 * `overlap`: ⌈(side + (k − 1) · overlap) / k⌉, down to MIN_VAE_TILE (always included).
 */
export function tightTileSizes([h, w]: [number, number], overlap: number): number[] {
  const sizes = new Set<number>();
  for (const side of [h, w]) {
    for (let k = 2; k <= side; k++) {
      const t = Math.ceil((side + (k - 1) * overlap) / k);
      // Sizes fall toward the overlap as k grows: stop at the smallest tile, or where tiles would
      // advance by less than half of the smallest.
      if (t < MIN_VAE_TILE || t - overlap < MIN_VAE_TILE / 2) break;
      if (t < side) sizes.add(t);
    }
  }
  sizes.add(MIN_VAE_TILE);
  return [...sizes].sort((a, b) => b - a);
}

/** Chooses the untiled or the tiled decode for an [h, w] latent (one image). */
export function planVaeDecode(
  shape: VaeDecoderShape,
  [h, w]: [number, number],
  options: VaeTilingOptions = {},
): VaeDecodePlan {
  const mode = options.mode ?? 'auto';
  const bpe = options.bytesPerElement ?? 4;
  const estimateBytes = vaeDecodeBytes(shape, [h, w], bpe);
  const untiled = (reason: string): VaeDecodePlan => ({ tiled: false, estimateBytes, reason });
  if (mode === 'never') return untiled('tiling is off');
  const budget = options.budgetBytes;
  if (mode === 'auto') {
    if (budget === undefined) return untiled('no memory budget');
    if (estimateBytes <= budget) return untiled(`the untiled decode fits the budget`);
  }
  // At most half a tile: neighbours then advance by at least half a tile.
  const overlapFor = (t: number) =>
    Math.min(
      Math.max(0, Math.floor(options.overlap ?? Math.min(DEFAULT_VAE_OVERLAP, t / 4))),
      Math.floor(t / 2),
    );
  const estimate = (t: number) => vaeDecodeBytes(shape, [Math.min(t, h), Math.min(t, w)], bpe);
  let chosen: number;
  if (options.tile !== undefined || budget === undefined) {
    chosen = Math.max(1, Math.floor(options.tile ?? DEFAULT_VAE_TILE));
  } else {
    // Under a budget without a set tile size: the largest tile that fits, among the sizes that
    // cover a side exactly with k tiles (fewest tiles, least decoded twice); the smallest otherwise.
    const sizes = tightTileSizes([h, w], options.overlap ?? DEFAULT_VAE_OVERLAP);
    chosen = sizes.find((t) => estimate(t) <= budget) ?? MIN_VAE_TILE;
  }
  const tileEstimateBytes = estimate(chosen);
  if (h <= chosen && w <= chosen) return untiled('the latent fits in one tile');
  const overlap = overlapFor(chosen);
  const fits = budget === undefined || tileEstimateBytes <= budget;
  return {
    tiled: true,
    tile: [Math.min(chosen, h), Math.min(chosen, w)],
    overlap,
    estimateBytes,
    tileEstimateBytes,
    fits,
    reason:
      mode === 'always'
        ? 'tiling is on'
        : `the untiled decode (~${gib(estimateBytes)}) exceeds the budget (${gib(budget ?? 0)})`,
  };
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
