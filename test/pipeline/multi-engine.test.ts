/**
 * Several models resident (config `models.list`) in the real SD3.5 engine, in-process on the CPU,
 * with tiny models made by the bundled model's generator: two of different seeds are two models
 * (their own hash, their own images), text encoders of the same files open once, and with fewer
 * places than models the least recently used one is unloaded before the next job's model loads.
 * Plus the pure residency rule (src/pipeline/residency.ts) the engine and the ETA share.
 */
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedCombinationsOf, estimatedMergeMs, mergeKernelFor } from '../../src/pipeline/lora/index.js';
import { checkpointHash } from '../../src/pipeline/models-dir/model-hash.js';
import type { ComponentLocation } from '../../src/pipeline/models-dir/types.js';
import { componentContentHash } from '../../src/pipeline/models-dir/weight-source.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import {
  footprintBytes,
  initialResidents,
  loraCombinationKey,
  planLoad,
  ResidencySimulation,
  residencyAfter,
  residencyFromInfo,
} from '../../src/pipeline/residency.js';
import { SharedSessions } from '../../src/pipeline/sd35/components.js';
import type { PlacementBreakdown } from '../../src/pipeline/sd35/gpu-memory.js';
import { MultiModelEngine } from '../../src/pipeline/sd35/index.js';
import { footprintOf } from '../../src/pipeline/sd35/multi-engine.js';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';

let root: string;
/** One models folder, two checkpoints (seeds 1 and 2) beside one set of text encoders. */
let shared: string;
/** A third model in a folder of its own (its own text encoders). */
let apart: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-multi-'));
  shared = join(root, 'shared');
  apart = join(root, 'apart');
  writeTinyModel(shared, { ...TINY_MODEL_CONFIG, seed: 1 }, { name: 'tiny-one' });
  copyFileSync(join(shared, 'checkpoints', TINY_CHECKPOINT), join(shared, 'checkpoints', 'one.safetensors'));
  writeTinyModel(join(root, 'two'), { ...TINY_MODEL_CONFIG, seed: 2 }, { name: 'tiny-two' });
  copyFileSync(
    join(root, 'two', 'checkpoints', TINY_CHECKPOINT),
    join(shared, 'checkpoints', 'two.safetensors'),
  );
  rmSync(join(shared, 'checkpoints', TINY_CHECKPOINT));
  writeTinyModel(apart, { ...TINY_MODEL_CONFIG, seed: 3 }, { name: 'tiny-three' });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

const request = (model?: string): GenerationRequest => ({
  prompt: 'a red fox',
  negativePrompt: '',
  width: 64,
  height: 64,
  seed: 11,
  steps: 2,
  guidance: 4.5,
  sampler: 'euler',
  count: 1,
  ...(model ? { model } : {}),
});

function engine(maxResident?: number) {
  return new MultiModelEngine({
    engine: { dataDir: join(root, 'data'), provider: 'cpu', threads: 1, promptCacheBytes: 0 },
    models: [
      { name: 'one', modelsDir: shared, checkpoint: 'one.safetensors' },
      { name: 'two', modelsDir: shared, checkpoint: 'two.safetensors' },
      { name: 'three', modelsDir: apart },
    ],
    ...(maxResident !== undefined ? { maxResident } : {}),
  });
}

describe('MultiModelEngine (tiny models, CPU)', () => {
  it('loads every model that fits; same text encoder files open once; each model makes its own images', async () => {
    const e = engine();
    try {
      await e.load();
      const info = e.info();
      expect(info.models!.map((m) => [m.name, m.resident])).toEqual([
        ['one', true],
        ['two', true],
        ['three', true],
      ]);
      expect(info.maxResident).toBe(3);
      // one and two share CLIP-L, CLIP-G and T5; each checkpoint has its own VAE; three has its own set.
      expect(e.sharedSessions).toBe(3 + 2 + 4);
      const hashes = info.models!.map((m) => m.hash);
      expect(new Set(hashes).size).toBe(3);
      expect(hashes[0]).toBe(checkpointHash([join(shared, 'checkpoints', 'one.safetensors')]));
      expect(hashes[0]).toMatch(/^[0-9a-f]{10}$/);

      const one = await e.generate(request('one'));
      const two = await e.generate(request('two'));
      const byDefault = await e.generate(request());
      expect(one).toMatchObject({ modelName: 'one', modelHash: hashes[0], model: 'one' });
      expect(two).toMatchObject({ modelName: 'two', modelHash: hashes[1] });
      expect(byDefault.modelName).toBe('one');
      // Same seed and prompt, other weights: other pixels. The default is the first model.
      expect(Buffer.compare(one.images[0]!.data, two.images[0]!.data)).not.toBe(0);
      expect(Buffer.compare(one.images[0]!.data, byDefault.images[0]!.data)).toBe(0);
      expect(one.timings?.loadMs).toBeUndefined();
      await expect(e.generate(request('four'))).rejects.toMatchObject({
        userMessage: 'The model “four” is no longer configured here. Configured models: one, two, three.',
      });
    } finally {
      await e.dispose();
    }
    expect(e.sharedSessions).toBe(0);
  }, 120_000);

  it('shares one VAE between checkpoints that carry the same one (as Large, Large Turbo and Medium do)', async () => {
    // A copy of one's checkpoint under another name: another file, its own MMDiT session, the same VAE.
    copyFileSync(
      join(shared, 'checkpoints', 'one.safetensors'),
      join(shared, 'checkpoints', 'copy.safetensors'),
    );
    const e = new MultiModelEngine({
      engine: { dataDir: join(root, 'data'), provider: 'cpu', threads: 1, promptCacheBytes: 0 },
      models: [
        { name: 'one', modelsDir: shared, checkpoint: 'one.safetensors' },
        { name: 'copy', modelsDir: shared, checkpoint: 'copy.safetensors' },
        { name: 'two', modelsDir: shared, checkpoint: 'two.safetensors' },
      ],
    });
    try {
      await e.load();
      // CLIP-L, CLIP-G, T5 once; one VAE for one and copy, another for two (other weights).
      expect(e.sharedSessions).toBe(3 + 2);
      const one = await e.generate(request('one'));
      const copy = await e.generate(request('copy'));
      expect(Buffer.compare(one.images[0]!.data, copy.images[0]!.data)).toBe(0);
    } finally {
      await e.dispose();
      rmSync(join(shared, 'checkpoints', 'copy.safetensors'));
    }
    expect(e.sharedSessions).toBe(0);
  }, 120_000);

  it('guesses a LoRA combination’s merge + load from the model’s size until one is measured', async () => {
    // The guess is the H200 host's measurement: Large (8.06 G weights) on 15 threads took 75–91 s
    // with the JS kernel, 16.9–20.7 s with the native one.
    expect(estimatedMergeMs(8.06e9, 15, 'js')).toBeGreaterThan(75_000);
    expect(estimatedMergeMs(8.06e9, 15, 'js')).toBeLessThan(91_000);
    expect(estimatedMergeMs(8.06e9, 15, 'native')).toBeGreaterThan(16_900);
    expect(estimatedMergeMs(8.06e9, 15, 'native')).toBeLessThan(21_000);
    expect(estimatedMergeMs(8.06e9, 1)).toBeCloseTo(15 * estimatedMergeMs(8.06e9, 15), 6);
    // The engine guesses with the kernel that will run: native when the op library loads.
    expect(mergeKernelFor(false)).toBe('js');
    expect(mergeKernelFor(buildCustomOpsLibrary('cpu'))).toBe('native');
    const e = new MultiModelEngine({
      engine: {
        dataDir: join(root, 'data'),
        provider: 'cpu',
        threads: 1,
        promptCacheBytes: 0,
        loras: { dir: join(root, 'no-loras') },
      },
      models: [
        { name: 'one', modelsDir: shared, checkpoint: 'one.safetensors' },
        { name: 'three', modelsDir: apart },
      ],
    });
    try {
      await e.load();
      const info = e.info().models!;
      const residency = e.residency()!;
      for (const m of info) {
        expect(m.loraMs).toBe(Math.round(estimatedMergeMs(m.parameters!, undefined, mergeKernelFor())));
        expect(residency.loraMs![m.name]).toBe(m.loraMs);
      }
    } finally {
      await e.dispose();
    }
    // Without LoRAs configured nothing is guessed.
    const plain = engine();
    try {
      await plain.load();
      expect(plain.residency()!.loraMs).toEqual({});
    } finally {
      await plain.dispose();
    }
  }, 120_000);

  it('knows a component by its content: the same tensors in another file, or one byte changed', () => {
    const file = join(shared, 'checkpoints', 'one.safetensors');
    const copy = join(root, 'content-copy.safetensors');
    copyFileSync(file, copy);
    const at = (f: string): ComponentLocation => ({
      file: f,
      prefix: 'first_stage_model.',
      format: 'reference',
      files: [f],
    });
    expect(componentContentHash(at(copy))).toBe(componentContentHash(at(file)));
    expect(componentContentHash({ ...at(file), prefix: 'model.diffusion_model.' })).not.toBe(
      componentContentHash(at(file)),
    );
    // One byte of one VAE tensor changed (a later modification time: not the remembered hash).
    const st = SafetensorsFile.open(copy);
    const name = st.names('first_stage_model.')[0]!;
    const { offset } = st.get(name);
    st.close();
    const fd = openSync(copy, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0x40;
    writeSync(fd, byte, 0, 1, offset);
    closeSync(fd);
    utimesSync(copy, new Date(), new Date(Date.now() + 5000));
    expect(componentContentHash(at(copy))).not.toBe(componentContentHash(at(file)));
  });

  it('with fewer places than models, unloads the least recently used before a job’s model loads', async () => {
    const e = engine(2);
    try {
      await e.load();
      expect(e.info().models!.map((m) => m.resident)).toEqual([true, true, false]);
      expect(e.residency()).toMatchObject({ resident: ['two', 'one'], capacity: 2, defaultModel: 'one' });

      await e.generate(request('two')); // now one is the least recently used
      const three = await e.generate(request('three'));
      expect(three.timings?.loadMs).toBeGreaterThan(0);
      expect(three.resident).toEqual(['two', 'three']);
      // The shared encoders stay while two holds them; one's VAE went with it.
      expect(e.sharedSessions).toBe(3 + 1 + 4);

      const again = await e.generate(request('one'));
      expect(again.resident).toEqual(['three', 'one']);
      expect(e.residency()!.loadMs).toMatchObject({ one: expect.any(Number), three: expect.any(Number) });
      expect(e.sharedSessions).toBe(3 + 1 + 4);
      const alone = await e.generate(request('two'));
      expect(alone.resident).toEqual(['one', 'two']);
      expect(e.sharedSessions).toBe(3 + 2);
    } finally {
      await e.dispose();
    }
  }, 120_000);
});

describe('MultiModelEngine at start', () => {
  it('a configured model that cannot be found stops the start, naming its key', async () => {
    const e = new MultiModelEngine({
      engine: { dataDir: join(root, 'data'), provider: 'cpu', threads: 1 },
      models: [
        { name: 'one', modelsDir: shared, checkpoint: 'one.safetensors' },
        { name: 'gone', modelsDir: shared, checkpoint: 'missing.safetensors' },
      ],
    });
    await expect(e.load()).rejects.toThrow(/^models\.list\.gone: /);
    await e.dispose();
  });
});

describe('SharedSessions', () => {
  it("a handle reports the shared session's arena; without one, none", async () => {
    const sessions = new SharedSessions();
    const stats = { inUse: 1 } as never;
    const base = { run: async () => ({}), release: async () => {} };
    const a = await sessions.acquire('a', async () => ({ ...base, arenaStats: () => stats }));
    const b = await sessions.acquire('b', async () => base);
    expect(a.arenaStats?.()).toBe(stats);
    expect(b.arenaStats).toBeUndefined();
    await a.release();
    await b.release();
    expect(sessions.size).toBe(0);
  });
});

describe('the residency rule', () => {
  const footprints = {
    large: { ownBytes: 10, shared: { t5: 5, 'vae:large': 1 } },
    turbo: { ownBytes: 10, shared: { t5: 5, 'vae:turbo': 1 } },
    medium: { ownBytes: 4, shared: { t5: 5, 'vae:medium': 1 } },
  };

  it('counts shared parts once', () => {
    expect(footprintBytes(['large'], footprints)).toBe(16);
    expect(footprintBytes(['large', 'turbo'], footprints)).toBe(27);
    expect(footprintBytes(['large', 'turbo', 'medium'], footprints)).toBe(32);
  });

  it('loads in order while they fit; unloads least recently used first, by count or bytes', () => {
    expect(initialResidents(['large', 'turbo', 'medium'], footprints, {})).toEqual([
      'large',
      'turbo',
      'medium',
    ]);
    expect(initialResidents(['large', 'turbo', 'medium'], footprints, { budgetBytes: 27 })).toEqual([
      'large',
      'turbo',
    ]);
    expect(initialResidents(['large', 'turbo'], footprints, { maxResident: 1 })).toEqual(['large']);
    // The first always loads, even over budget.
    expect(initialResidents(['large'], footprints, { budgetBytes: 1 })).toEqual(['large']);

    expect(planLoad('medium', ['large', 'turbo'], footprints, { budgetBytes: 27 })).toEqual({
      evict: ['large'],
      overBudget: false,
    });
    expect(planLoad('medium', ['large', 'turbo'], footprints, { budgetBytes: 32 })).toEqual({
      evict: [],
      overBudget: false,
    });
    expect(planLoad('large', ['turbo', 'medium'], footprints, { maxResident: 2 }).evict).toEqual(['turbo']);
    expect(planLoad('large', ['turbo', 'medium'], footprints, { budgetBytes: 10 })).toEqual({
      evict: ['turbo', 'medium'],
      overBudget: true,
    });
  });

  it('a model with LoRAs owns a full MMDiT (weights and arena) per cached combination', () => {
    const at = (file: string): ComponentLocation => ({
      file,
      prefix: '',
      format: 'reference',
      files: [file],
    });
    const set = {
      components: {
        mmdit: at('/m/large.safetensors'),
        vae: at('/m/vae.safetensors'),
        clipL: at('/m/clip_l.safetensors'),
        clipG: at('/m/clip_g.safetensors'),
      },
    };
    const breakdown: PlacementBreakdown = {
      placement: 'gpu',
      weights: { mmdit: 8e9, vae: 0.2e9, clipL: 0.1e9, clipG: 0.7e9 },
      weightsBytes: 9e9,
      overheadBytes: 2.9e9,
      extraShapesBytes: 0,
      textBytes: 0.1e9,
      mmditBytes: 7e9,
      vaeBytes: 6e9,
      vaeTiled: false,
      fixedBytes: 18e9,
      peakBytes: 25e9,
    };
    const plain = footprintOf(set, breakdown)!;
    expect(plain.ownBytes).toBe(15e9);
    // Two combinations (the default): the model's own MMDiT and two more, each weights + arena.
    const withLoras = footprintOf(set, breakdown, cachedCombinationsOf({ dir: '/loras' }))!;
    expect(withLoras.ownBytes).toBe(3 * 15e9);
    expect(withLoras.shared).toEqual(plain.shared);
    expect(
      footprintOf(set, breakdown, cachedCombinationsOf({ dir: '/loras', cachedCombinations: 1 }))!.ownBytes,
    ).toBe(30e9);
    expect(cachedCombinationsOf(undefined)).toBe(0);
    // The budget decision sees it: a second model that fits beside a plain one does not beside one with LoRAs.
    const other = { ownBytes: 15e9, shared: {} };
    const budgetBytes = footprintBytes(['plain', 'other'], { plain, other });
    expect(initialResidents(['plain', 'other'], { plain, other }, { budgetBytes })).toEqual([
      'plain',
      'other',
    ]);
    expect(initialResidents(['lora', 'other'], { lora: withLoras, other }, { budgetBytes })).toEqual([
      'lora',
    ]);
  });

  it('plays forward as the ETA needs it, from what a pipeline reports', () => {
    const start = residencyFromInfo({
      models: [
        { name: 'large', resident: true, loadMs: 9000 },
        { name: 'turbo', resident: true, loadMs: 8000 },
        { name: 'medium', resident: false },
      ],
      maxResident: 2,
    })!;
    expect(start).toEqual({
      resident: ['turbo', 'large'],
      capacity: 2,
      loadMs: { large: 9000, turbo: 8000 },
      defaultModel: 'large',
      loras: { turbo: [], large: [] },
      loraCapacity: 0,
      loraMs: {},
    });
    const sim = new ResidencySimulation(start.resident, start.capacity);
    expect([sim.use('large'), sim.use('medium'), sim.use('large'), sim.use('turbo')]).toEqual([
      false,
      true,
      false,
      true,
    ]);
    expect(sim.resident).toEqual(['large', 'turbo']);
  });

  it("plays LoRA combinations forward per model: the model's capacity, none after a (re)load", () => {
    const sim = new ResidencySimulation(['turbo', 'large'], 2, {
      loaded: { large: ['pixel'], turbo: [] },
      capacity: 2,
    });
    expect(sim.use('large')).toBe(false);
    expect([
      sim.useLoras('large', 'pixel'),
      sim.useLoras('large', 'ink'),
      sim.useLoras('large', 'pixel'),
    ]).toEqual([false, true, false]);
    // A third combination puts out the least recently used one (ink).
    expect(sim.useLoras('large', 'grain')).toBe(true);
    expect(sim.lorasOf('large')).toEqual(['pixel', 'grain']);
    expect(sim.useLoras('large', 'ink')).toBe(true);
    // Another model's combinations are its own.
    expect(sim.useLoras('turbo', 'pixel')).toBe(true);
    // medium in, turbo (least recently used) out with its combinations; back, it holds none.
    expect(sim.use('medium')).toBe(true);
    expect(sim.lorasOf('turbo')).toEqual([]);
    expect(sim.use('turbo')).toBe(true);
    expect(sim.useLoras('turbo', 'pixel')).toBe(true);
  });

  it('names a combination by its LoRAs of non-zero weight, whatever their order', () => {
    const pixel = { name: 'pixel', file: 'pixel.safetensors', weight: 0.6 };
    const ink = { name: 'ink', file: 'ink.safetensors', weight: 1 };
    expect(loraCombinationKey([pixel, ink])).toBe('ink=ink.safetensors@1|pixel=pixel.safetensors@0.6');
    expect(loraCombinationKey([ink, pixel, { ...pixel, name: 'grain', weight: 0 }])).toBe(
      loraCombinationKey([pixel, ink]),
    );
    expect(loraCombinationKey([{ ...pixel, weight: 0.8 }, ink])).not.toBe(loraCombinationKey([pixel, ink]));
    expect(loraCombinationKey([{ ...pixel, weight: 0 }])).toBeUndefined();
    expect(loraCombinationKey(undefined)).toBeUndefined();
  });

  it("follows a job's output: its model's combinations and merge time; an unloaded model's are gone", () => {
    const start = residencyFromInfo({
      models: [
        { name: 'large', resident: true, loadMs: 9000 },
        { name: 'turbo', resident: true, loadMs: 8000 },
      ],
      maxResident: 2,
      loraCombinations: 2,
    })!;
    const after = residencyAfter(start, {
      modelName: 'large',
      resident: ['turbo', 'large'],
      loraCombinations: ['pixel'],
      timings: { loraMs: 21_000 },
    });
    expect(after).toMatchObject({
      loras: { large: ['pixel'], turbo: [] },
      loraMs: { large: 21_000 },
      loraCapacity: 2,
    });
    const swapped = residencyAfter(after, {
      modelName: 'medium',
      resident: ['large', 'medium'],
      loraCombinations: [],
      timings: { loadMs: 3000 },
    });
    expect(swapped.loras).toEqual({ large: ['pixel'], medium: [] });
    expect(swapped.loraMs).toEqual({ large: 21_000 });
  });
});
