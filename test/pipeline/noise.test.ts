import { describe, expect, it } from 'vitest';
import { MT19937 } from '../../src/pipeline/sampling/mt19937.js';
import { randn, randnBatch } from '../../src/pipeline/sampling/noise.js';
import { type GoldenE2E, type GoldenNoise, goldenSets, maxAbsDiff } from '../golden/manifest.js';

describe('MT19937', () => {
  it('produces the standard mt19937 sequence (C++ [rand.predef]: the 10000th draw of seed 5489 is 4123659995)', () => {
    const rng = new MT19937(5489);
    expect(rng.nextUint32()).toBe(3499211612);
    for (let i = 2; i < 10000; i++) rng.nextUint32();
    expect(rng.nextUint32()).toBe(4123659995);
  });

  it('uses the low 32 bits of the seed, negative seeds as two’s complement (as torch.manual_seed)', () => {
    const draws = (seed: number | bigint) => {
      const rng = new MT19937(seed);
      return [rng.nextUint32(), rng.nextUint32(), rng.nextUint32()];
    };
    expect(draws(2 ** 32 + 17)).toEqual(draws(17));
    expect(draws(2n ** 63n + 17n)).toEqual(draws(17));
    expect(draws(-1)).toEqual(draws(2 ** 32 - 1));
    expect(() => new MT19937(1.5)).toThrow(RangeError);
  });
});

describe.each(goldenSets('noise'))('randn against the $name golden set', (set) => {
  const golden = set.component<GoldenNoise>('noise');

  it.each(golden.cases.map((c) => [c.key, c] as const))('matches the reference for %s', (_key, c) => {
    const io = set.open(golden.io);
    const ref = io.readFloat32(c.key);
    io.close();
    const got = randn(c.shape, c.seed);
    expect(got.length).toBe(ref.length);
    expect(maxAbsDiff(got, ref)).toBeLessThanOrEqual(golden.tolerance_abs);
  });
});

describe.each(goldenSets('noise', 'e2e'))('randn for the end-to-end runs of the $name golden set', (set) => {
  it('gives every run its initial noise from the run’s seed', () => {
    const tolerance = set.component<GoldenNoise>('noise').tolerance_abs;
    const e2e = set.component<GoldenE2E>('e2e');
    const io = set.open(e2e.io);
    for (const run of e2e.runs) {
      const ref = io.readFloat32(`${run.name}.noise`);
      const got = randn([1, 16, run.height / 8, run.width / 8], run.seed);
      expect(maxAbsDiff(got, ref), run.name).toBeLessThanOrEqual(tolerance);
    }
    io.close();
  });
});

describe('randn (torch.randn on the CPU)', () => {
  // Values printed by torch 1.13.1 (Debian python3-torch, CPU):
  // torch.randn(shape, generator=torch.manual_seed(seed)).flatten().tolist()
  it('takes torch’s scalar path below 16 elements (double Box-Muller with a cached second value)', () => {
    expect(Array.from(randn([5], 7))).toEqual(
      [
        -0.1467950940132141, 0.7861412763595581, 0.9468216300010681, -1.1143440008163452, 1.6907901763916016,
      ].map(Math.fround),
    );
    expect(Array.from(randn([2, 3], -5))).toEqual(
      [
        -1.8266246318817139, 0.6379720568656921, -1.7862693071365356, 1.1472562551498413, 0.2224971354007721,
        0.8550813794136047,
      ].map(Math.fround),
    );
  });

  it('redraws the last 16 values when the size is not a multiple of 16, as torch does', () => {
    expect(Array.from(randn([17], 2))).toEqual(
      [
        -1.0408011674880981, -0.4585607945919037, -0.8480006456375122, 0.5266043543815613,
        0.029916182160377502, -0.04983803629875183, 1.0650779008865356, 0.8860366940498352,
        -0.8109861612319946, -0.4986324608325958, 0.12886369228363037, 2.7630667686462402,
        0.14047646522521973, 1.1191015243530273, 0.3152315616607666, 1.7527765035629272, -0.7395675778388977,
      ].map(Math.fround),
    );
  });

  it('gives the same noise for the same seed and different noise for another', () => {
    const a = randn([1, 16, 8, 8], 42);
    expect(randn([1, 16, 8, 8], 42)).toEqual(a);
    expect(maxAbsDiff(randn([1, 16, 8, 8], 43), a)).toBeGreaterThan(1);
  });

  it('draws image i of a batch from seed + i, so each image can be reproduced alone', () => {
    const one = [1, 16, 4, 6];
    const batch = randnBatch(3, one, 1000);
    const per = 16 * 4 * 6;
    for (let i = 0; i < 3; i++) expect(batch.subarray(i * per, (i + 1) * per)).toEqual(randn(one, 1000 + i));
  });
});
