/**
 * SD3's latent normalisation (Stability-AI/sd3.5 sd3_impls.py `SD3LatentFormat`): the VAE's
 * latents are shifted and scaled before sampling and undone after. Float32 steps, as the
 * reference's tensors.
 */

const f32 = Math.fround;

/** `SD3LatentFormat.scale_factor`. */
export const SD3_LATENT_SCALE = 1.5305;
/** `SD3LatentFormat.shift_factor`. */
export const SD3_LATENT_SHIFT = 0.0609;
/** Latent channels of SD3/SD3.5 (the VAE's z_channels; the MMDiT's in_channels). */
export const SD3_LATENT_CHANNELS = 16;

const SCALE = f32(SD3_LATENT_SCALE);
const SHIFT = f32(SD3_LATENT_SHIFT);

/** VAE-encoder mean → sampler space: (latent − 0.0609) · 1.5305. */
export function processIn(latent: Float32Array): Float32Array {
  const out = new Float32Array(latent.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(f32(latent[i] - SHIFT) * SCALE);
  return out;
}

/** Sampler space → VAE-decoder input: latent / 1.5305 + 0.0609. */
export function processOut(latent: Float32Array): Float32Array {
  const out = new Float32Array(latent.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(f32(latent[i] / SCALE) + SHIFT);
  return out;
}
