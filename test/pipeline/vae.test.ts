/**
 * The VAE decoder and encoder graphs against the golden set (computed by the reference's
 * sd3_impls.SDVAE), driven by manifest.json: the component vectors, then the end-to-end runs'
 * final latents decoded to the uint8 images the reference saved (a square and a wide one),
 * then sizes the golden set does not use.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildVaeDecoder,
  buildVaeEncoder,
  type VaeConfig,
  vaeConfig,
} from '../../src/pipeline/models/vae.js';
import { GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import {
  type GoldenComponent,
  type GoldenE2E,
  type GoldenSet,
  type GoldenTensorSpec,
  goldenSets,
  keyPrefix,
  manifestPath,
  maxAbsDiff,
  relL2,
} from '../golden/manifest.js';

interface VaeComponent extends GoldenComponent {
  ch: number;
  ch_mult: number[];
  num_res_blocks: number;
  z_channels: number;
  weights: string;
  io: string;
  tolerance_rel_l2: number;
  tensors: Record<string, GoldenTensorSpec>;
}

const opened: SafetensorsFile[] = [];

/** The set's VAE component, its weights and its io, closed after the file's tests. */
function load(set: GoldenSet) {
  const vae = set.component<VaeComponent>('vae');
  const weights = set.open(vae.weights);
  const io = set.open(vae.io);
  opened.push(weights, io);
  return { vae, weights, io };
}
afterAll(() => {
  for (const f of opened) f.close();
});

/** Single-file checkpoints (ComfyUI's layout) keep the VAE under this prefix. */
const CHECKPOINT_VAE_PREFIX = 'first_stage_model.';

type Part = 'decoder' | 'encoder';

async function vaeSession(file: SafetensorsFile, part: Part, prefix = '') {
  const g = new GraphBuilder(`vae_${part}`);
  const p = new Params(g, new FileWeightSource(file), 'float32');
  const net = new Net(g, p);
  const cfg = vaeConfig(p, prefix);
  if (part === 'decoder') buildVaeDecoder(net, cfg);
  else buildVaeEncoder(net, cfg);
  return { cfg, session: await openSession(`vae_${part}`, g.build(), { provider: 'cpu' }) };
}

const floats = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);

function randomImage(dims: number[], seed: number): Float32Array {
  // A fixed linear congruential sequence in [−1, 1): any content will do, it only has to be fixed.
  let state = seed;
  return Float32Array.from({ length: dims.reduce((a, d) => a * d, 1) }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

describe.each(goldenSets('vae'))('VAE against the $name golden set', (set) => {
  const { vae, weights, io } = load(set);

  it('derives ch, ch_mult, num_res_blocks and z_channels from the state dict', async () => {
    const { cfg } = await vaeSession(weights, 'decoder', keyPrefix(vae));
    expect(cfg).toMatchObject<Partial<VaeConfig>>({
      ch: vae.ch,
      chMult: vae.ch_mult,
      numResBlocks: vae.num_res_blocks,
      zChannels: vae.z_channels,
    });
  });

  it("decodes a latent to the reference decoder's output", async () => {
    const { session } = await vaeSession(weights, 'decoder', keyPrefix(vae));
    const out = await session.run({ latent: floats(io.readFloat32('latent'), vae.tensors.latent.shape) });
    expect(out.decoded.dims).toEqual(vae.tensors.decoded.shape);
    expect(relL2(out.decoded.data as Float32Array, io.readFloat32('decoded'))).toBeLessThan(
      vae.tolerance_rel_l2,
    );
  });

  it("encodes an image to the reference encoder's mean and clamped log-variance", async () => {
    const { session } = await vaeSession(weights, 'encoder', keyPrefix(vae));
    const out = await session.run({ image: floats(io.readFloat32('image'), vae.tensors.image.shape) });
    expect(out.mean.dims).toEqual(vae.tensors.mean.shape);
    expect(relL2(out.mean.data as Float32Array, io.readFloat32('mean'))).toBeLessThan(vae.tolerance_rel_l2);
    expect(relL2(out.logvar.data as Float32Array, io.readFloat32('logvar'))).toBeLessThan(
      vae.tolerance_rel_l2,
    );
  });
});

describe.each(goldenSets('e2e'))('VAE in the end-to-end checkpoint of the $name golden set', (set) => {
  const e2e = set.component<GoldenE2E>('e2e');
  const modelsDir = set.path(manifestPath(e2e.models));
  const checkpointsDir = join(modelsDir, 'checkpoints');
  const checkpoint = SafetensorsFile.open(
    join(
      checkpointsDir,
      readdirSync(checkpointsDir).find((f) => f.endsWith('.safetensors')) ??
        'no checkpoint in the e2e models',
    ),
  );
  const e2eIo = set.open(e2e.io);
  opened.push(checkpoint, e2eIo);

  it('derives the configuration under the checkpoint prefix', async () => {
    const { cfg } = await vaeSession(checkpoint, 'decoder', CHECKPOINT_VAE_PREFIX);
    const { vae: expected } = e2e.configs as { vae: { ch: number; ch_mult: number[] } };
    expect(cfg).toMatchObject({ ch: expected.ch, chMult: expected.ch_mult });
  });

  for (const run of e2e.runs) {
    it(`decodes the ${run.name} run's final latent to the reference's uint8 image (${run.width}×${run.height})`, async () => {
      const { session } = await vaeSession(checkpoint, 'decoder', CHECKPOINT_VAE_PREFIX);
      const latentInfo = e2eIo.get(`${run.name}.latent_out`);
      const out = await session.run({ latent: floats(e2eIo.readFloat32(latentInfo.name), latentInfo.shape) });
      const reference = e2eIo.readBytes(`${run.name}.image`);
      expect(out.pixels.dims).toEqual([1, ...e2eIo.get(`${run.name}.image`).shape]);
      expect(out.pixels.dims).toEqual([1, run.height, run.width, 3]);
      const pixels = out.pixels.data as Uint8Array;
      expect(maxAbsDiff(pixels, reference)).toBeLessThanOrEqual(e2e.tolerance.image_max_abs_diff);
    });
  }
});

describe.each(goldenSets('vae'))('VAE of the $name golden set at sizes the set does not use', (set) => {
  const { vae, weights } = load(set);

  it('decodes non-square latents, each batch row as if alone', async () => {
    const { cfg, session } = await vaeSession(weights, 'decoder', keyPrefix(vae));
    const factor = 2 ** (cfg.chMult.length - 1);
    const [h, w] = [5, 9];
    const dims = [2, cfg.zChannels, h, w];
    const latents = randomImage(dims, 7).map((v) => 2 * v);
    const batch = await session.run({ latent: floats(latents, dims) });
    expect(batch.decoded.dims).toEqual([2, cfg.imageChannels, h * factor, w * factor]);
    expect(batch.pixels.dims).toEqual([2, h * factor, w * factor, cfg.imageChannels]);
    const alone = await session.run({
      latent: floats(latents.slice(latents.length / 2), [1, ...dims.slice(1)]),
    });
    const perImage = cfg.imageChannels * h * factor * w * factor;
    const second = (batch.decoded.data as Float32Array).subarray(perImage);
    expect(relL2(second, alone.decoded.data as Float32Array)).toBeLessThan(1e-6);
  });

  it('turns decoded values into pixels as the reference saves them: clamped, scaled, truncated', async () => {
    const { cfg, session } = await vaeSession(weights, 'decoder', keyPrefix(vae));
    const dims = [1, cfg.zChannels, 7, 4];
    const out = await session.run({
      latent: floats(
        randomImage(dims, 3).map((v) => 3 * v),
        dims,
      ),
    });
    const decoded = out.decoded.data as Float32Array;
    const pixels = out.pixels.data as Uint8Array;
    const [, channels, height, width] = out.decoded.dims;
    let clipped = 0;
    for (let c = 0; c < channels; c++)
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const v = decoded[(c * height + y) * width + x];
          const unit = Math.min(1, Math.max(0, Math.fround(Math.fround(v + 1) / 2)));
          if (unit === 0 || unit === 1) clipped++;
          expect(pixels[(y * width + x) * channels + c]).toBe(Math.trunc(Math.fround(unit * 255)));
        }
    expect(clipped).toBeGreaterThan(0); // the input was wide enough to reach both clamps
  });

  it('encodes non-square and odd-sized images to floor(size / 2) per downsampling, as the reference pads', async () => {
    const { cfg, session } = await vaeSession(weights, 'encoder', keyPrefix(vae));
    const downsamplings = cfg.chMult.length - 1;
    for (const [height, width] of [
      [16, 40],
      [21, 35],
    ]) {
      const dims = [2, cfg.imageChannels, height, width];
      const images = randomImage(dims, height * width);
      const out = await session.run({ image: floats(images, dims) });
      let [h, w] = [height, width];
      for (let i = 0; i < downsamplings; i++) [h, w] = [Math.floor(h / 2), Math.floor(w / 2)];
      expect(out.mean.dims).toEqual([2, cfg.zChannels, h, w]);
      expect(out.logvar.dims).toEqual([2, cfg.zChannels, h, w]);
      const alone = await session.run({
        image: floats(images.slice(0, images.length / 2), [1, ...dims.slice(1)]),
      });
      const first = (out.mean.data as Float32Array).subarray(0, cfg.zChannels * h * w);
      expect(relL2(first, alone.mean.data as Float32Array)).toBeLessThan(1e-6);
    }
  });
});
