/**
 * Issue 11 through the engine on the bundled tiny model (CPU): info() reports the placement and
 * the provider each component runs on, and the text encoders', VAE's and stock MMDiT's sessions
 * opened through ONNX Runtime's C API (what a memory limit does on CUDA, forced here with
 * `sessionApi: 'capi'`) give the same pixels as onnxruntime-node's.
 */
import { describe, expect, it } from 'vitest';
import { tinyEngines, tinyRequest } from '../fixtures/tiny-engines.js';

const tiny = tinyEngines('atelier-placement-', { threads: 1 });
const { engine } = tiny;

const request = tinyRequest({ seed: 5, steps: 3 });

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
