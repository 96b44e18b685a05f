/**
 * The SD3.5 engine on the bundled tiny model, in this process: what the golden tests do not
 * cover — the same seed gives the same pixels, a cancel stops between steps, the float16 graphs
 * the GPU runs (here on the CPU) and fp8 weights quantized at load agree with float32, built
 * graphs come from the cache, and a load that runs out of memory says which sizes were involved.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CancelledError, ModelError } from '../../src/errors.js';
import { GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { cachedGraph } from '../../src/pipeline/onnx/graph-cache.js';
import { outOfMemory } from '../../src/pipeline/sd35/components.js';
import type { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import { tinyEngines, tinyRequest } from '../fixtures/tiny-engines.js';

const tiny = tinyEngines('atelier-engine-');
const { engine } = tiny;

const request = tinyRequest;

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

describe('Sd35Engine', () => {
  it('gives identical pixels for the same seed, and image i of a batch is seed + i on its own', async () => {
    const e = await engine();
    const a = await e.generate(request({ count: 2 }));
    const b = await e.generate(request({ count: 2 }));
    expect(a.seeds).toEqual([77, 78]);
    expect(b.images[1].data).toEqual(a.images[1].data);
    const alone = await e.generate(request({ seed: 78 }));
    expect(alone.images[0].data).toEqual(a.images[1].data);
    expect(meanAbsDiff(a.images[0].data, a.images[1].data)).toBeGreaterThan(1);
  });

  it('runs more images than fit at once in passes: the same images, progress over all of them', async () => {
    const whole = await (await engine()).generate(request({ count: 3 }));
    const e = await engine({ maxImagesPerPass: 2 });
    const steps: [number, number][] = [];
    const split = await e.generate(request({ count: 3 }), {
      onStep: ({ step, total }) => steps.push([step, total]),
    });
    // 3 images, 2 at most at once: passes of 2 and 1, each image still seed + i.
    expect(split.timings?.passes).toEqual([2, 1]);
    expect(whole.timings?.passes).toBeUndefined();
    expect(split.seeds).toEqual([77, 78, 79]);
    for (let i = 0; i < 3; i++) expect(split.images[i].data).toEqual(whole.images[i].data);
    expect(steps).toEqual(Array.from({ length: 8 }, (_, i) => [i + 1, 8]));
  });

  it('stops between steps when cancelled, after reporting the steps it made', async () => {
    const e = await engine();
    const controller = new AbortController();
    const steps: number[] = [];
    const job = e.generate(request({ steps: 8 }), {
      signal: controller.signal,
      onStep: ({ step, preview }) => {
        steps.push(step);
        expect(preview).toMatchObject({ width: 16, height: 12 });
        if (step === 3) controller.abort();
      },
    });
    await expect(job).rejects.toBeInstanceOf(CancelledError);
    expect(steps).toEqual([1, 2, 3]);
  });

  it('says when a prompt is longer than the text encoders read', async () => {
    const e = await engine();
    const long = await e.generate(request({ prompt: 'a very long prompt about a lighthouse '.repeat(30) }));
    expect(long.promptTruncated).toBe(true);
    expect((await e.generate(request())).promptTruncated).toBeUndefined();
  });

  it('runs the float16 graphs the GPU uses, close to float32', async () => {
    const f32 = await (await engine()).generate(request());
    const f16 = await (await engine({ compute: 'float16' })).generate(request());
    expect(meanAbsDiff(f16.images[0].data, f32.images[0].data)).toBeLessThan(1);
  });

  it('quantizes fp16 weights to fp8 once at load, keeping them one byte, close to the full weights', async () => {
    const full = await engine();
    const fp8 = await engine({ precision: 'fp8' });
    const bytes = (e: Sd35Engine, name: string) => e.info().components.find((c) => c.name === name)!;
    // The tiny MMDiT's position table (fp16, never quantized) is half its bytes: hence 0.8, not 0.5.
    expect(bytes(fp8, 'mmdit').bytes).toBeLessThan(0.8 * bytes(full, 'mmdit').bytes);
    expect(bytes(fp8, 't5').bytes).toBeLessThan(0.8 * bytes(full, 't5').bytes);
    expect(
      readdirSync(join(tiny.dataDir, 'quantized')).filter((f) => f.endsWith('.safetensors')),
    ).toHaveLength(2);
    const a = await full.generate(request());
    const b = await fp8.generate(request());
    const diff = meanAbsDiff(a.images[0].data, b.images[0].data);
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(8);
  });
});

describe('models.textEncoders', () => {
  it('reaches the load: a named T5 file that is not there is refused, naming the setting', async () => {
    await expect(engine({ textEncoders: { t5: 't5xxl_missing.safetensors' } })).rejects.toThrow(
      /models\.textEncoders\.t5 = t5xxl_missing\.safetensors/,
    );
  });
});

describe('graph cache', () => {
  it('builds once per key and code version, then reads the graph from disk', () => {
    const dir = join(tiny.dataDir, 'graph-cache-test');
    let builds = 0;
    const build = () => {
      builds++;
      const g = new GraphBuilder('identity');
      g.output(g.op('Identity', [g.input('x', 'float32', [1])]), 'y', 'float32', [1]);
      return g.build();
    };
    const first = cachedGraph(dir, 'identity', { weights: 'a' }, build);
    const again = cachedGraph(dir, 'identity', { weights: 'a' }, build);
    const other = cachedGraph(dir, 'identity', { weights: 'b' }, build);
    expect([first.cached, again.cached, other.cached]).toEqual([false, true, false]);
    expect(builds).toBe(2);
    expect(Buffer.from(again.bytes)).toEqual(Buffer.from(first.bytes));
  });
});

describe('loading out of memory', () => {
  it('is told with the sizes involved and what to do', () => {
    const error = outOfMemory(
      new Error('Failed to allocate memory for requested buffer of size 16460000000'),
      'mmdit',
      [
        { name: 'clipL', bytes: 246e6, dtype: 'F16' },
        { name: 't5', bytes: 9.79e9, dtype: 'F16' },
        { name: 'mmdit', bytes: 16.46e9, dtype: 'F16' },
      ],
      'cuda',
    );
    expect(error).toBeInstanceOf(ModelError);
    expect(error!.message).toMatch(
      /^mmdit: not enough GPU memory to load it: the model's weights take 26\.5 GB \(clipL 0\.2 GB \(F16\), t5 9\.8 GB \(F16\), mmdit 16\.5 GB \(F16\)\).*models\.precision: fp8/,
    );
    expect(outOfMemory(new Error('some other failure'), 'mmdit', [], 'cuda')).toBeUndefined();
  });
});
