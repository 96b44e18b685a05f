/**
 * The prompt-embedding cache (issue 11): rerolls and variations of a prompt reuse its conditioning
 * instead of running CLIP-L, CLIP-G and T5 again; a different negative prompt, another model or
 * precision does not hit; the byte budget evicts the least recently used pair.
 */
import { describe, expect, it } from 'vitest';
import { loadComponents } from '../../src/pipeline/sd35/components.js';
import type { Conditioning } from '../../src/pipeline/sd35/conditioning.js';
import { conditioningBytes, PromptCache } from '../../src/pipeline/sd35/prompt-cache.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';
import { tinyEngines, tinyRequest } from '../fixtures/tiny-engines.js';

const cond = (tokens: number, value: number): Conditioning => ({
  context: new Float32Array(tokens * 4).fill(value),
  tokens,
  y: new Float32Array(2).fill(value),
});

describe('PromptCache', () => {
  it('encodes once per key and hands out copies', async () => {
    const cache = new PromptCache(1 << 20);
    let runs = 0;
    const encode = async () => {
      runs++;
      return [cond(3, 1), cond(3, 2)];
    };
    const first = await cache.get('a', encode);
    expect(first.hit).toBe(false);
    first.conds[0].context.fill(99); // the caller's copy, not the cache's
    const second = await cache.get('a', encode);
    expect(second.hit).toBe(true);
    expect(runs).toBe(1);
    expect(second.conds[0].context[0]).toBe(1);
    expect(second.conds[1].y[0]).toBe(2);
    await cache.get('b', encode);
    expect(runs).toBe(2);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2, entries: 2, evictions: 0 });
  });

  it('evicts the least recently used pair past its byte budget, and keeps none larger than it', async () => {
    const pair = [cond(10, 0), cond(10, 0)];
    const bytes = conditioningBytes(pair);
    const cache = new PromptCache(2 * bytes);
    const encode = async () => pair;
    await cache.get('a', encode);
    await cache.get('b', encode);
    await cache.get('a', encode); // a is now the most recent
    await cache.get('c', encode); // evicts b
    expect(cache.has('a')).toBe(true);
    expect(cache.has('b')).toBe(false);
    expect(cache.has('c')).toBe(true);
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 2 * bytes, evictions: 1 });

    const small = new PromptCache(bytes - 1);
    await small.get('a', encode);
    expect(small.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });
});

describe('the engine’s prompt cache', () => {
  const tiny = tinyEngines('atelier-prompt-cache-');
  const { engine } = tiny;
  const request = (overrides: Partial<GenerationRequest> = {}) =>
    tinyRequest({ width: 64, height: 64, seed: 5, steps: 2, ...overrides });

  it('runs the text encoders once for a prompt and its rerolls, again for a new negative prompt', async () => {
    const e = await engine();
    const first = await e.generate(request());
    expect(e.textEncoderRuns).toBe(1);
    expect(first.timings?.promptCached).toBe(false);

    // A reroll (new seed) and a variation (a starting image) of the same prompt.
    const reroll = await e.generate(request({ seed: 6 }));
    await e.generate(request({ init: { image: first.images[0], strength: 0.6 } }));
    expect(e.textEncoderRuns).toBe(1);
    expect(reroll.timings?.promptCached).toBe(true);
    // The cached conditioning is the encoded one: the same seed gives the same pixels.
    expect((await e.generate(request())).images[0].data).toEqual(first.images[0].data);

    const other = await e.generate(request({ negativePrompt: 'low quality' }));
    expect(e.textEncoderRuns).toBe(2);
    expect(other.timings?.promptCached).toBe(false);
    await e.generate(request({ prompt: 'a lighthouse at dawn' }));
    expect(e.textEncoderRuns).toBe(3);
    expect(e.promptCacheStats()).toMatchObject({ hits: 3, misses: 3, entries: 3 });
  });

  it('evicts past its budget, and runs the encoders every time when it is off', async () => {
    // The tiny model's pair: 2 × (154 tokens × 64 + 64) floats ≈ 79 KB; room for one.
    const e = await engine({ promptCacheBytes: 100_000 });
    await e.generate(request());
    await e.generate(request({ prompt: 'a harbour at night' }));
    expect(e.promptCacheStats()).toMatchObject({ entries: 1, evictions: 1 });
    await e.generate(request());
    expect(e.textEncoderRuns).toBe(3);

    const off = await engine({ promptCacheBytes: 0 });
    await off.generate(request());
    await off.generate(request());
    expect(off.textEncoderRuns).toBe(2);
    expect(off.promptCacheStats()).toBeUndefined();
  });

  it('keys on what the conditioning depends on: model weights, precision, compute type', async () => {
    const keys: string[] = [];
    for (const options of [{}, { compute: 'float16' as const }, { precision: 'fp8' as const }]) {
      const c = await loadComponents({ ...tiny.base, ...options });
      keys.push(c.textKey);
      await c.release();
    }
    expect(new Set(keys).size).toBe(3);
    const again = await loadComponents(tiny.base);
    expect(again.textKey).toBe(keys[0]);
    await again.release();
  });
});
