/**
 * Seeded Gaussian noise, drawn exactly as `torch.randn(shape, generator=torch.manual_seed(seed))`
 * on the CPU in float32, so a seed gives the same starting latent here, in the Stability AI
 * reference (sd3_infer.py `get_noise`) and in ComfyUI. Ported from pytorch/pytorch
 * aten/src/ATen/native/cpu/DistributionTemplates.h (`normal_kernel`, `normal_fill_16_AVX2`,
 * `normal_fill`) and aten/src/ATen/core/DistributionsHelper.h (`normal_distribution`,
 * `uniform_real_distribution`).
 *
 * Batches: image i of a request uses `seed + i` with the shape of ONE image (the pipeline
 * contract in src/pipeline/types.ts), so any image of a batch can be reproduced alone, as the
 * reference's `get_empty_latent` and its "roll" seed mode do. That is not
 * `torch.randn([count, …], seed)`, which would tie every image to the batch size.
 */
import { logf, sincosf } from './avx-mathfun.js';
import { MT19937 } from './mt19937.js';

const f32 = Math.fround;
/** torch's `2.0f * c10::pi<double>` broadcast into a float vector (`_mm256_set1_ps`). */
const TWO_PI_F32 = f32(2 * Math.PI);

/**
 * Gaussian noise of `shape` (row-major) from `seed`: torch's CPU `randn` on x86 bit for bit (the
 * scalar path below 16 elements computes in double and can differ from glibc in the last bit of a
 * double, which the rounding to float hides).
 */
export function randn(shape: readonly number[], seed: number | bigint): Float32Array {
  const size = shape.reduce((n, d) => {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new RangeError(`Expected non-negative integer dims, got [${shape}]`);
    return n * d;
  }, 1);
  const out = new Float32Array(size);
  const rng = new MT19937(seed);
  // torch takes the vectorized path for contiguous float tensors of 16 or more elements.
  if (size >= 16) fillVectorized(out, rng);
  else fillScalar(out, rng);
  return out;
}

/**
 * Noise for `count` images: image i is `randn(shapeOfOne, seed + i)`, concatenated on the batch
 * axis. `shapeOfOne` is one image's latent shape, e.g. [1, 16, h/8, w/8].
 */
export function randnBatch(
  count: number,
  shapeOfOne: readonly number[],
  seed: number | bigint,
): Float32Array {
  const per = shapeOfOne.reduce((n, d) => n * d, 1);
  const out = new Float32Array(count * per);
  for (let i = 0; i < count; i++) {
    const s = typeof seed === 'bigint' ? seed + BigInt(i) : seed + i;
    out.set(randn(shapeOfOne, s), i * per);
  }
  return out;
}

/**
 * `normal_fill`: one float uniform per element first, then Box-Muller over blocks of 16 pairing
 * element j with j + 8. When the size is not a multiple of 16, the last 16 elements are drawn
 * again (16 fresh uniforms) and transformed as one block, overlapping the previous block.
 */
function fillVectorized(data: Float32Array, rng: MT19937): void {
  const size = data.length;
  for (let i = 0; i < size; i++) data[i] = rng.nextFloat24();
  for (let i = 0; i + 16 <= size; i += 16) boxMuller16(data, i);
  if (size % 16 !== 0) {
    const start = size - 16;
    for (let i = 0; i < 16; i++) data[start + i] = rng.nextFloat24();
    boxMuller16(data, start);
  }
}

/**
 * `normal_fill_16_AVX2` in float32 steps: u1 = 1 − data[j] (so log never sees 0), u2 = data[j+8],
 * r = sqrt(−2·log u1), θ = 2π·u2; data[j] = r·cos θ, data[j+8] = r·sin θ, with avx_mathfun's
 * log and sincos. (torch builds without AVX2, e.g. on ARM, use libm's float log/sin/cos there
 * instead: the same values to within an ulp or two.)
 */
function boxMuller16(data: Float32Array, at: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[at + j]);
    const u2 = data[at + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * logf(u1))));
    const [sin, cos] = sincosf(f32(TWO_PI_F32 * u2));
    data[at + j] = f32(radius * cos);
    data[at + j + 8] = f32(radius * sin);
  }
}

/**
 * Fewer than 16 elements: `at::normal_distribution<double>` per element. Each pair of values
 * costs two 53-bit uniforms (two 32-bit draws each); the first value is r·cos θ and the second,
 * r·sin θ, comes from the generator's cache.
 */
function fillScalar(data: Float32Array, rng: MT19937): void {
  let cached: number | undefined;
  for (let i = 0; i < data.length; i++) {
    if (cached !== undefined) {
      data[i] = cached;
      cached = undefined;
      continue;
    }
    const u1 = rng.nextDouble53();
    const u2 = rng.nextDouble53();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    cached = r * Math.sin(theta);
    data[i] = r * Math.cos(theta);
  }
}
