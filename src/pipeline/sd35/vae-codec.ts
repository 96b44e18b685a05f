/**
 * Latents ↔ pixels through the VAE, as the reference's vae_decode / vae_encode (sd3_infer.py at
 * fbf8f48): decoded → uint8(255 · clamp((x + 1) / 2, 0, 1)) (truncation, as numpy's astype), and
 * images in as 2·rgb/255 − 1, encoded to the distribution's mean.
 */
import { ValidationError } from '../../errors.js';
import { floatTensor, toFloat32 } from '../onnx/tensors.js';
import type { RawImage } from '../types.js';
import type { LoadedComponents } from './components.js';
import type { VaeDecodePlan } from './vae-tile-policy.js';
import { decodeTiled, toPixels } from './vae-tiled-decode.js';

/**
 * Decodes `count` latents ([count, C, h, w], already process_out'ed) one at a time to RGB images.
 * Untiled (no plan, or an untiled one): the graph's own `pixels` output is fetched (uint8, HWC), no
 * float image crosses to the host. Tiled: each tile's `decoded` floats are fetched and blended on
 * the host (vae-tiled-decode.ts), then turned into pixels as the graph would.
 */
export async function decodeLatents(
  c: LoadedComponents,
  latents: Float32Array,
  count: number,
  [C, h, w]: [number, number, number],
  plan?: VaeDecodePlan,
): Promise<RawImage[]> {
  const per = C * h * w;
  const images: RawImage[] = [];
  for (let i = 0; i < count; i++) {
    const latent = latents.slice(i * per, (i + 1) * per);
    if (plan?.tiled) {
      const session = await c.vaeTileDecoder(plan.tile);
      const factor = 2 ** (c.vaeConfig.chMult.length - 1);
      const out = await decodeTiled(
        latent,
        [C, h, w],
        async (tile, [tc, th, tw]) =>
          toFloat32((await session.run({ latent: floatTensor(tile, [1, tc, th, tw]) }, ['decoded'])).decoded),
        { tile: plan.tile, overlap: plan.overlap, factor },
      );
      images.push({
        width: out.width,
        height: out.height,
        data: toPixels(out.decoded, out.height, out.width),
      });
      continue;
    }
    const out = await c.vaeDecoder.run({ latent: floatTensor(latent, [1, C, h, w]) }, ['pixels']);
    const [, height, width] = out.pixels.dims;
    images.push({ width, height, data: out.pixels.data as Uint8Array });
  }
  return images;
}

/** Encodes an RGB image of exactly width×height to its latent mean [16, h/8, w/8]. */
export async function encodeImage(
  c: LoadedComponents,
  image: RawImage,
  width: number,
  height: number,
): Promise<Float32Array> {
  if (image.width !== width || image.height !== height) {
    throw new ValidationError(
      'image',
      `The starting image is ${image.width}×${image.height}; it must be resized to ${width}×${height} first.`,
    );
  }
  const plane = width * height;
  const chw = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let ch = 0; ch < 3; ch++)
      chw[ch * plane + p] = Math.fround(2 * Math.fround(image.data[p * 3 + ch] / 255) - 1);
  }
  const encoder = await c.vaeEncoder();
  const out = await encoder.run({ image: floatTensor(chw, [1, 3, height, width]) });
  return toFloat32(out.mean);
}
