/**
 * CPU timings of the bundled tiny SD3.5 (issue 4): each component on its own (CLIP-L, CLIP-G, T5,
 * one MMDiT step with CFG, VAE decode and encode) and end to end through the engine, at the tiny
 * model's own size (256²) and at SD3.5's (1024²). The tiny model's weights are random, so these
 * are the pipeline's overheads and the CPU's speed, not a real model's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { floatTensor, int64Tensor } from '../src/pipeline/onnx/tensors.js';
import { loadComponents } from '../src/pipeline/sd35/components.js';
import { Sd35Engine } from '../src/pipeline/sd35/engine.js';
import { ensureTinyModel } from '../src/pipeline/tiny/index.js';
import type { GenerationRequest } from '../src/pipeline/types.js';
import type { BenchRow } from './run.js';

export const name = 'pipeline';
export const description = 'bundled tiny SD3.5 on the CPU: components and end to end';

async function time(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

export async function run(): Promise<BenchRow[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'atelier-bench-pipeline-'));
  try {
    const tiny = await ensureTinyModel(dataDir);
    const options = { modelsDir: tiny.modelsDir, checkpoint: tiny.checkpoint, dataDir };
    const rows: BenchRow[] = [];
    const c = await loadComponents(options);
    const ids = (n: number) => int64Tensor(new Array(2 * n).fill(1), [2, n]);
    rows.push({
      case: 'CLIP-L, 2 prompts × 77 tokens',
      'median ms': await time(10, () => c.text.clipL.run({ input_ids: ids(77) })),
    });
    rows.push({
      case: 'CLIP-G, 2 prompts × 77 tokens',
      'median ms': await time(10, () => c.text.clipG.run({ input_ids: ids(77) })),
    });
    rows.push({
      case: 'T5, 2 prompts × 77 tokens',
      'median ms': await time(10, () => c.text.t5!.run({ input_ids: ids(77) })),
    });
    for (const side of [256, 1024]) {
      const h = side / 8;
      const latent = new Float32Array(2 * 16 * h * h);
      const mmdit = c.mmdit;
      if (!mmdit) throw new Error('the CPU bench measures the stock path (models.runtime: stock)');
      const step = () =>
        mmdit.run({
          x: floatTensor(latent, [2, 16, h, h]),
          timestep: floatTensor(new Float32Array([500, 500]), [2]),
          context: floatTensor(new Float32Array(2 * 154 * c.text.contextDim), [2, 154, c.text.contextDim]),
          y: floatTensor(new Float32Array(2 * c.mmditConfig.admInChannels), [2, c.mmditConfig.admInChannels]),
        });
      rows.push({ case: `MMDiT step with CFG (batch 2), ${side}²`, 'median ms': await time(5, step) });
      const decode = () =>
        c.vaeDecoder.run({ latent: floatTensor(latent.subarray(0, 16 * h * h), [1, 16, h, h]) });
      rows.push({ case: `VAE decode, ${side}²`, 'median ms': await time(3, decode) });
      const encoder = await c.vaeEncoder();
      const encode = () =>
        encoder.run({ image: floatTensor(new Float32Array(3 * side * side), [1, 3, side, side]) });
      rows.push({ case: `VAE encode, ${side}²`, 'median ms': await time(3, encode) });
    }
    await c.release();

    const engine = new Sd35Engine(options);
    const t0 = performance.now();
    await engine.load();
    rows.push({ case: 'engine load (graphs cached)', 'median ms': performance.now() - t0 });
    const request = (side: number, count: number): GenerationRequest => ({
      prompt: 'a lighthouse at dusk, oil painting',
      negativePrompt: '',
      width: side,
      height: side,
      seed: 1,
      steps: 4,
      guidance: 4.5,
      sampler: 'euler',
      count,
    });
    for (const [side, count] of [
      [256, 1],
      [256, 4],
      [1024, 1],
    ]) {
      rows.push({
        case: `end to end, ${side}², ${count} image(s), 4 steps`,
        'median ms': await time(3, () => engine.generate(request(side, count))),
      });
    }
    await engine.dispose();
    return rows;
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
