/**
 * Issue 11 through the engine on the bundled tiny model (CPU): info() reports the placement and
 * the provider each component runs on, and the text encoders', VAE's and stock MMDiT's sessions
 * opened through ONNX Runtime's C API (what a memory limit does on CUDA, forced here with
 * `sessionApi: 'capi'`) give the same pixels as onnxruntime-node's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import { ensureTinyModel } from '../../src/pipeline/tiny/index.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';

let dataDir: string;
let base: EngineOptions;
const engines: Sd35Engine[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'atelier-placement-'));
  const tiny = await ensureTinyModel(dataDir);
  base = { modelsDir: tiny.modelsDir, checkpoint: tiny.checkpoint, dataDir, threads: 1 };
});
afterAll(async () => {
  for (const e of engines) await e.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

async function engine(options: Partial<EngineOptions> = {}): Promise<Sd35Engine> {
  const e = new Sd35Engine({ ...base, ...options });
  engines.push(e);
  await e.load();
  return e;
}

const request: GenerationRequest = {
  prompt: 'a lighthouse at dusk',
  negativePrompt: 'blurry',
  width: 128,
  height: 96,
  seed: 5,
  steps: 3,
  guidance: 4.5,
  sampler: 'euler',
  count: 1,
};

describe('placement through the engine', () => {
  it('reports the placement and each component’s provider in info(); a limit means nothing on the CPU', async () => {
    const e = await engine({ placement: 'gpu', gpuMemoryLimit: 2 ** 30 });
    const memory = e.info().memory!;
    expect(memory).toMatchObject({
      placement: 'cpu',
      providers: { clipL: 'cpu', clipG: 'cpu', t5: 'cpu', mmdit: 'cpu', vae: 'cpu' },
      budgetSource: 'unknown',
      fits: true,
    });
    expect(memory.arenaLimits).toBeUndefined();
    expect(memory.summary).toMatch(/cpu/);
    // No budget: the VAE decodes whole, and any count is accepted.
    expect(e.vaeDecodePlan([16, 128, 128]).tiled).toBe(false);
  });

  it('gives the same pixels with every session opened through the C API (host tensors in and out)', async () => {
    const stock = await engine();
    const capi = await engine({ sessionApi: 'capi' });
    expect(capi.info().runtime?.path).toBe('stock');
    const a = await stock.generate(request);
    const b = await capi.generate(request);
    expect(b.images[0].width).toBe(128);
    expect(Buffer.from(b.images[0].data).equals(Buffer.from(a.images[0].data))).toBe(true);
  });
});
