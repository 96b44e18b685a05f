/**
 * The whole pipeline against the reference, prompt to pixels: the golden set's tiny SD3.5 in the
 * ComfyUI layout, loaded through discovery, tokenizers, graph builder and engine, for every run
 * in the manifest (conditioning, noise, sigmas, final latent, uint8 image).
 */
import { mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { GenerationRequest, SamplerName } from '../../src/pipeline/types.js';
import { type GoldenE2E, goldenSets, manifestPath, maxAbsDiff, relL2 } from '../golden/manifest.js';

/** Both denoising paths: onnxruntime-node's session.run and the C API's device-resident loop. */
const runtimes = ['stock', 'capi'] as const;

describe.each(goldenSets('e2e'))('the $name golden set’s tiny SD3.5 end to end', (set) => {
  const e2e = set.component<GoldenE2E & { configs: Record<string, Record<string, number>> }>('e2e');
  const io = set.open(e2e.io);
  /** "tokenizers/clip and tokenizers/t5_tiny": the folders named in the manifest's text. */
  const tokenizerDirs = e2e.tokenizers.split(/\s+/).filter((w) => w.includes('/'));
  const tensor = (run: string, name: string) => io.readFloat32(`${run}.${name}`);
  const uint8 = (run: string, name: string) => io.readBytes(`${run}.${name}`);

  const engines: Partial<Record<(typeof runtimes)[number], Sd35Engine>> = {};
  beforeAll(async () => {
    // ComfyUI folders carry no tokenizers: Atelier looks in <dataDir>/tokenizers/{clip,t5}.
    const dataDir = mkdtempSync(join(tmpdir(), 'atelier-e2e-'));
    mkdirSync(join(dataDir, 'tokenizers'));
    symlinkSync(
      set.path(tokenizerDirs.find((d) => d.includes('clip'))!),
      join(dataDir, 'tokenizers', 'clip'),
    );
    symlinkSync(set.path(tokenizerDirs.find((d) => d.includes('t5'))!), join(dataDir, 'tokenizers', 't5'));
    for (const runtime of runtimes) {
      const engine = new Sd35Engine({
        modelsDir: set.path(manifestPath(e2e.models)),
        dataDir,
        runtime,
        // Attention heads are not stored in checkpoints: the manifest gives the tiny model's.
        overrides: {
          clip_l: { heads: e2e.configs.clip_l.num_attention_heads },
          clip_g: { heads: e2e.configs.clip_g.num_attention_heads },
          t5: { heads: e2e.configs.t5.num_heads },
        },
      });
      await engine.load();
      engines[runtime] = engine;
    }
  });
  afterAll(async () => {
    for (const engine of Object.values(engines)) await engine.dispose();
    io.close();
  });
  describe.each(runtimes.flatMap((runtime) => e2e.runs.map((run) => ({ ...run, runtime }))))(
    'end to end ($runtime path): $name',
    (run) => {
      const engine = () => engines[run.runtime]!;
      const request = (): GenerationRequest => {
        const init = run.init_image
          ? uint8(run.init_image.split('.')[0], run.init_image.split('.')[1])
          : undefined;
        return {
          prompt: run.prompt,
          negativePrompt: run.negative,
          width: run.width,
          height: run.height,
          seed: run.seed,
          steps: run.steps,
          guidance: run.cfg,
          sampler: run.sampler as SamplerName,
          count: 1,
          init: init && {
            image: { width: run.width, height: run.height, data: init },
            strength: run.denoise ?? 1,
          },
        };
      };

      it('matches the reference conditioning, noise, sigmas, latent and image', async () => {
        expect(engine().info().runtime?.path).toBe(run.runtime);
        const prepared = await engine().prepare(request());
        const tol = e2e.tolerance.latent_out_rel_l2;
        expect(relL2(prepared.cond.context, tensor(run.name, 'cond'))).toBeLessThan(tol);
        expect(relL2(prepared.cond.y, tensor(run.name, 'pooled'))).toBeLessThan(tol);
        expect(relL2(prepared.uncond.context, tensor(run.name, 'neg_cond'))).toBeLessThan(tol);
        expect(relL2(prepared.uncond.y, tensor(run.name, 'neg_pooled'))).toBeLessThan(tol);
        expect([...prepared.noise]).toEqual([...tensor(run.name, 'noise')]);
        expect([...prepared.schedule]).toEqual([...tensor(run.name, 'sigmas')]);

        const latent = await engine().sample(prepared);
        expect(relL2(latent, tensor(run.name, 'latent_out'))).toBeLessThan(tol);

        const out = await engine().generate(request());
        expect(out.images[0]).toMatchObject({ width: run.width, height: run.height });
        expect(maxAbsDiff(out.images[0].data, uint8(run.name, 'image'))).toBeLessThanOrEqual(
          e2e.tolerance.image_max_abs_diff,
        );
      });
    },
  );
});
