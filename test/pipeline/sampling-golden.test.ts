/**
 * The reference's sampling runs (golden `sampler.io`, `sampler_dpmpp_2m.io`) end to end with the
 * product's MMDiT graph: noise scaling, schedule, CFG batching and the samplers must reproduce
 * the reference's final latents. Everything comes from manifest.json.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMmdit, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { type Conditioning, cfgDenoiser, type DiffusionModel } from '../../src/pipeline/sampling/cfg.js';
import { processOut } from '../../src/pipeline/sampling/latent-format.js';
import { SAMPLERS } from '../../src/pipeline/sampling/samplers.js';
import { noiseScaling, sigmas, truncateForDenoise } from '../../src/pipeline/sampling/schedule.js';
import type { SamplerName } from '../../src/pipeline/types.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import {
  type GoldenComponent,
  type GoldenDpmpp2m,
  type GoldenSampler,
  type GoldenSamplerRun,
  goldenSets,
  relL2,
} from '../golden/manifest.js';

function conditioning(io: SafetensorsFile, prefix: 'cond' | 'uncond'): Conditioning {
  return {
    context: io.readFloat32(`${prefix}_context`),
    tokens: io.get(`${prefix}_context`).shape[1],
    y: io.readFloat32(`${prefix}_y`),
  };
}

describe.each(goldenSets('sampler'))(
  'reference sampling runs of the $name golden set with the MMDiT graph',
  (set) => {
    const golden = set.component<GoldenSampler>('sampler');
    /**
     * The MMDiT component whose weights the sampler runs used: its key prefix names the tensors
     * (the file may hold other components too, as the project's end-to-end checkpoint does).
     */
    const mmdit = Object.values(set.manifest.components).find(
      (c): c is GoldenComponent =>
        c.weights === golden.weights && c.key_prefix !== undefined && typeof c.depth === 'number',
    );

    const files: SafetensorsFile[] = [];
    let session: ort.InferenceSession;

    beforeAll(async () => {
      if (!golden.weights || !mmdit)
        throw new Error('The golden sampler names no MMDiT weights with a key prefix');
      const weights = set.open(golden.weights);
      files.push(weights);
      const g = new GraphBuilder('mmdit');
      const p = new Params(g, new FileWeightSource(weights, mmdit.key_prefix ?? ''), 'float32');
      buildMmdit(new Net(g, p), mmditConfig(p));
      session = await openSession('mmdit', g.build(), { provider: 'cpu' });
    });

    afterAll(async () => {
      await session?.release();
      for (const f of files) f.close();
    });

    const model: DiffusionModel = async (input) => {
      const out = await session.run({
        x: new ort.Tensor('float32', input.x, input.xDims),
        timestep: new ort.Tensor('float32', input.timestep, [input.timestep.length]),
        context: new ort.Tensor('float32', input.context, input.contextDims),
        y: new ort.Tensor('float32', input.y, input.yDims),
      });
      return out.model_output.data as Float32Array;
    };

    /** One reference run: do_sampling with CFGDenoiser, then SD3LatentFormat.process_out. */
    async function sample(
      io: SafetensorsFile,
      run: { steps: number; cfg: number; denoise: number; start_latent: string },
      sampler: SamplerName,
    ) {
      const noise = io.readFloat32('noise');
      const shape = io.get('noise').shape as [number, number, number, number];
      const schedule = truncateForDenoise(sigmas(run.steps, golden.shift), run.denoise);
      const latent =
        run.start_latent === 'zeros' ? new Float32Array(noise.length) : io.readFloat32(run.start_latent);
      const denoise = cfgDenoiser({
        model,
        latentDims: shape,
        cond: conditioning(io, 'cond'),
        uncond: conditioning(io, 'uncond'),
        scale: run.cfg,
      });
      return processOut(await SAMPLERS[sampler](denoise, noiseScaling(schedule[0], noise, latent), schedule));
    }

    it.each(['txt2img', 'img2img'] as const)('sample_euler %s reproduces the reference', async (name) => {
      const io = set.open(golden.io);
      files.push(io);
      const run: GoldenSamplerRun = golden[name];
      const out = await sample(io, run, 'euler');
      const err = relL2(out, io.readFloat32(`${name}_out`));
      expect(err).toBeLessThanOrEqual(golden.tolerance_rel_l2!);
    });

    if (set.has('sampler_dpmpp_2m'))
      it('sample_dpmpp_2m reproduces the reference', async () => {
        const dpm = set.component<GoldenDpmpp2m>('sampler_dpmpp_2m');
        const inputs = set.open(dpm.inputs_from);
        const io = set.open(dpm.io);
        files.push(inputs, io);
        const out = await sample(inputs, { ...dpm, denoise: 1 }, 'dpmpp_2m');
        expect(relL2(out, io.readFloat32('out'))).toBeLessThanOrEqual(dpm.tolerance_rel_l2!);
      });
  },
);
