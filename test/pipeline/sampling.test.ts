import { afterAll, describe, expect, it, vi } from 'vitest';
import { CancelledError } from '../../src/errors.js';
import {
  type Conditioning,
  cfgCombine,
  cfgDenoiser,
  type DiffusionModelInput,
  usesUncond,
} from '../../src/pipeline/sampling/cfg.js';
import { SAMPLING_DEFAULTS } from '../../src/pipeline/sampling/defaults.js';
import { processIn, processOut, SD3_LATENT_SHIFT } from '../../src/pipeline/sampling/latent-format.js';
import { type Denoiser, SAMPLERS, sampleDpmpp2m, sampleEuler } from '../../src/pipeline/sampling/samplers.js';
import {
  denoisedFromVelocity,
  ModelSamplingDiscreteFlow,
  noiseScaling,
  sigmas,
  truncateForDenoise,
} from '../../src/pipeline/sampling/schedule.js';
import {
  type GoldenComponent,
  type GoldenDpmpp2m,
  type GoldenE2E,
  type GoldenSampler,
  goldenSets,
} from '../golden/manifest.js';

describe.each(goldenSets('sampler'))('sigma schedules of the $name golden set (get_sigmas)', (set) => {
  const samplerGolden = set.component<GoldenSampler>('sampler');
  const io = set.open(samplerGolden.io);
  afterAll(() => io.close());
  const tabulated = Object.keys(samplerGolden.tensors)
    .map((key) => /^sigmas_(\d+)$/.exec(key))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[0], Number(m[1])] as const);

  it('has tabulated schedules in the golden set to check', () => {
    expect(tabulated.length).toBeGreaterThan(0);
  });

  it.each(tabulated)('reproduces the reference’s %s exactly', (key, steps) => {
    const ref = io.readFloat32(key);
    expect(Array.from(sigmas(steps, samplerGolden.shift))).toEqual(Array.from(ref));
  });

  it('reproduces the txt2img and img2img schedules (img2img drops int(steps·(1 − denoise)) sigmas)', () => {
    for (const name of ['txt2img', 'img2img'] as const) {
      const run = samplerGolden[name];
      const got = truncateForDenoise(sigmas(run.steps, samplerGolden.shift), run.denoise);
      expect(Array.from(got), name).toEqual(Array.from(io.readFloat32(`${name}_sigmas`)));
    }
  });

  // A component the set lacks makes no test (never a skipped one).
  if (set.has('sampler_dpmpp_2m'))
    it('reproduces the DPM++ 2M run’s schedule', () => {
      const dpm = set.component<GoldenDpmpp2m>('sampler_dpmpp_2m');
      const got = sigmas(dpm.steps, samplerGolden.shift);
      const dpmIo = set.open(dpm.io);
      expect(Array.from(got)).toEqual(Array.from(dpmIo.readFloat32('sigmas')));
      dpmIo.close();
    });
});

describe.each(goldenSets('sampler', 'e2e'))(
  'sigma schedules of the $name golden set’s end-to-end runs',
  (set) => {
    it('reproduces every run’s schedule', () => {
      const shift = set.component<GoldenSampler>('sampler').shift;
      const e2e = set.component<GoldenE2E>('e2e');
      const io = set.open(e2e.io);
      for (const run of e2e.runs) {
        const got = truncateForDenoise(sigmas(run.steps, shift), run.denoise ?? 1);
        expect(Array.from(got), run.name).toEqual(Array.from(io.readFloat32(`${run.name}.sigmas`)));
      }
      io.close();
    });
  },
);

describe('sigma schedule (ModelSamplingDiscreteFlow)', () => {
  it('tabulates σ(t) for t = 1…1000 with σ_max = 1 and shift 1 meaning σ = t/1000', () => {
    const flow = new ModelSamplingDiscreteFlow(3);
    expect(flow.sigmas.length).toBe(1000);
    expect(flow.sigmaMax).toBe(1);
    expect(flow.sigmaMin).toBeCloseTo((3 * 0.001) / (1 + 2 * 0.001), 7);
    for (let i = 1; i < 1000; i++) expect(flow.sigmas[i]).toBeGreaterThan(flow.sigmas[i - 1]);
    expect(flow.timestep(0.5)).toBe(500);
    expect(new ModelSamplingDiscreteFlow(1).sigma(250)).toBe(0.25);
    expect(() => new ModelSamplingDiscreteFlow(0)).toThrow(RangeError);
  });

  it('starts at σ = 1, ends at 0, and keeps only the final 0 at denoise 0', () => {
    const s = sigmas(10);
    expect(s.length).toBe(11);
    expect(s[0]).toBe(1);
    expect(s[10]).toBe(0);
    expect(truncateForDenoise(s, 1)).toEqual(s);
    expect(Array.from(truncateForDenoise(s, 0))).toEqual([0]);
    expect(() => truncateForDenoise(s, 1.5)).toThrow(RangeError);
    expect(() => sigmas(0)).toThrow(RangeError);
  });

  it('scales noise into the start latent: σ·noise + (1 − σ)·latent', () => {
    const noise = Float32Array.from([1, -2, 3]);
    const latent = Float32Array.from([10, 20, 30]);
    expect(noiseScaling(1, noise, latent)).toEqual(noise);
    expect(noiseScaling(0, noise, latent)).toEqual(latent);
    expect(Array.from(noiseScaling(0.25, noise, latent))).toEqual([7.75, 14.5, 23.25]);
    expect(noiseScaling(1, noise)).toEqual(noise);
  });

  it('turns a velocity into a denoised estimate: x − v·σ', () => {
    const x = Float32Array.from([1, 2]);
    expect(Array.from(denoisedFromVelocity(x, Float32Array.from([4, -2]), 0.5))).toEqual([-1, 3]);
  });
});

describe('SD3 latent format', () => {
  it('undoes process_in with process_out', () => {
    const latent = Float32Array.from([-3, 0, SD3_LATENT_SHIFT, 2.5]);
    const back = processOut(processIn(latent));
    for (let i = 0; i < latent.length; i++) expect(back[i]).toBeCloseTo(latent[i], 6);
    expect(processIn(Float32Array.of(SD3_LATENT_SHIFT))[0]).toBe(0);
    expect(processOut(Float32Array.of(0))[0]).toBe(Math.fround(SD3_LATENT_SHIFT));
  });
});

describe.each([
  ['sample_euler', sampleEuler],
  ['sample_dpmpp_2m', sampleDpmpp2m],
] as const)('%s', (_name, sample) => {
  it('follows the exact flow x(σ) = c + (x₀ − c)·σ/σ₀ when the denoiser predicts a constant c', async () => {
    const c = Float32Array.from([0.5, -1.25, 2]);
    const x0 = Float32Array.from([3, 1, -4]);
    const schedule = sigmas(8);
    const seen: number[] = [];
    const result = await sample(async () => c, x0, schedule, {
      onStep: (i, total, x) => {
        expect(total).toBe(8);
        seen.push(i);
        const ratio = schedule[i + 1] / schedule[0];
        for (let k = 0; k < x.length; k++) expect(x[k]).toBeCloseTo(c[k] + (x0[k] - c[k]) * ratio, 5);
      },
    });
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (let k = 0; k < c.length; k++) expect(result[k]).toBeCloseTo(c[k], 6);
  });

  it('does not modify the x it is given, and returns x unchanged for a schedule of no steps', async () => {
    const x0 = Float32Array.from([1, 2, 3]);
    const copy = Float32Array.from(x0);
    await sample(async (x) => x.map((v) => v / 2), x0, sigmas(3));
    expect(x0).toEqual(copy);
    const none = await sample(async () => Float32Array.from([9, 9, 9]), x0, [0]);
    expect(none).toEqual(copy);
    expect(none).not.toBe(x0);
  });

  it('stops between steps with a CancelledError once the signal is aborted', async () => {
    const controller = new AbortController();
    const denoise = vi.fn<Denoiser>(async (x) => x.map((v) => v / 2));
    const run = sample(denoise, Float32Array.from([1, 2]), sigmas(6), {
      signal: controller.signal,
      onStep: (i) => {
        if (i === 1) controller.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(denoise).toHaveBeenCalledTimes(2);
  });

  it('never calls the network when the signal is already aborted', async () => {
    const denoise = vi.fn<Denoiser>(async (x) => x);
    await expect(
      sample(denoise, Float32Array.of(1), sigmas(4), { signal: AbortSignal.abort() }),
    ).rejects.toBeInstanceOf(CancelledError);
    expect(denoise).not.toHaveBeenCalled();
  });

  it('waits for an asynchronous onStep before the next network call', async () => {
    const events: string[] = [];
    await sample(
      async (x, sigma) => {
        events.push(`denoise ${sigma.toFixed(3)}`);
        return x.map((v) => v / 2);
      },
      Float32Array.of(1),
      [1, 0.5, 0],
      {
        onStep: async (i) => {
          await new Promise((resolve) => setImmediate(resolve));
          events.push(`step ${i}`);
        },
      },
    );
    expect(events).toEqual(['denoise 1.000', 'step 0', 'denoise 0.500', 'step 1']);
  });
});

describe('convergence order (the second-order DPM++ 2M update is ported right)', () => {
  // denoised = a·x makes dx/dσ = (1 − a)·x/σ, solved by x(σ) = x₀·(σ/σ₀)^(1 − a).
  const a = 0.5;
  const denoise: Denoiser = async (x) => x.map((v) => Math.fround(v * a));
  const geometric = (n: number) => Float32Array.from({ length: n + 1 }, (_, i) => 0.1 ** (i / n));
  const error = async (sample: typeof sampleEuler, n: number) => {
    const x0 = Float32Array.from([1, -2, 0.5]);
    const out = await sample(denoise, x0, geometric(n));
    return Math.max(...Array.from(out, (v, i) => Math.abs(v / (x0[i] * 0.1 ** (1 - a)) - 1)));
  };

  it('Euler is first order: doubling the steps halves the error', async () => {
    const ratio = (await error(sampleEuler, 20)) / (await error(sampleEuler, 40));
    expect(ratio).toBeGreaterThan(1.8);
    expect(ratio).toBeLessThan(2.2);
  });

  it('DPM++ 2M is second order: doubling the steps quarters the error', async () => {
    const ratio = (await error(sampleDpmpp2m, 20)) / (await error(sampleDpmpp2m, 40));
    expect(ratio).toBeGreaterThan(3.5);
    expect(ratio).toBeLessThan(4.5);
  });

  it('DPM++ 2M lands exactly on the last denoised estimate when the schedule ends at σ = 0', async () => {
    let last: Float32Array | undefined;
    const out = await sampleDpmpp2m(
      async (x, sigma) => {
        last = x.map((v) => Math.fround(v * a + sigma));
        return last;
      },
      Float32Array.from([1, -2, 0.5]),
      sigmas(5),
    );
    expect(out).toEqual(last);
  });
});

describe('classifier-free guidance', () => {
  const cond: Conditioning = {
    context: Float32Array.from([1, 2, 3, 4, 5, 6]),
    tokens: 3,
    y: Float32Array.from([7, 8]),
  };
  const uncond: Conditioning = {
    context: new Float32Array(6).fill(-1),
    tokens: 3,
    y: Float32Array.from([0, 0]),
  };

  /** A stand-in network: velocity = x + the sample's first context value (so cond and uncond differ). */
  const fakeModel = () => {
    const calls: DiffusionModelInput[] = [];
    const model = async (input: DiffusionModelInput) => {
      calls.push(input);
      const [batch, c, h, w] = input.xDims;
      const per = c * h * w;
      const tokenValues = input.contextDims[1] * input.contextDims[2];
      const v = new Float32Array(batch * per);
      for (let b = 0; b < batch; b++) {
        for (let k = 0; k < per; k++) v[b * per + k] = input.x[b * per + k] + input.context[b * tokenValues];
      }
      return v;
    };
    return { calls, model };
  };

  it('combines as uncond + (cond − uncond)·scale', () => {
    expect(Array.from(cfgCombine(Float32Array.from([2, 0]), Float32Array.from([1, 1]), 4.5))).toEqual([
      5.5, -3.5,
    ]);
    expect(usesUncond(1)).toBe(false);
    expect(usesUncond(0)).toBe(false);
    expect(usesUncond(1.01)).toBe(true);
  });

  it('runs cond and uncond as one batch [cond…, uncond…] at timestep σ·1000 and guides the result', async () => {
    const { calls, model } = fakeModel();
    const denoise = cfgDenoiser({ model, latentDims: [2, 1, 1, 2], cond, uncond, scale: 4 });
    const x = Float32Array.from([1, 2, 3, 4]);
    const out = await denoise(x, 0.5);
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call.xDims).toEqual([4, 1, 1, 2]);
    expect(Array.from(call.x)).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
    expect(Array.from(call.timestep)).toEqual([500, 500, 500, 500]);
    expect(call.contextDims).toEqual([4, 3, 2]);
    expect(Array.from(call.context.filter((_, i) => i % 6 === 0))).toEqual([1, 1, -1, -1]);
    expect(Array.from(call.y)).toEqual([7, 8, 7, 8, 0, 0, 0, 0]);
    expect(call.yDims).toEqual([4, 2]);
    // denoised = x − (x + c)·σ; cond uses c = 1, uncond c = −1.
    const expected = Array.from(x, (v) => {
      const dc = v - (v + 1) * 0.5;
      const du = v - (v - 1) * 0.5;
      return du + (dc - du) * 4;
    });
    expect(Array.from(out)).toEqual(expected);
  });

  it('skips the unconditional pass at guidance ≤ 1', async () => {
    const { calls, model } = fakeModel();
    const denoise = cfgDenoiser({ model, latentDims: [1, 1, 1, 2], cond, scale: 1 });
    const out = await denoise(Float32Array.from([1, 3]), 0.5);
    expect(calls[0].xDims).toEqual([1, 1, 1, 2]);
    expect(Array.from(out)).toEqual([0, 1]);
    expect(() => cfgDenoiser({ model, latentDims: [1, 1, 1, 2], cond, scale: 4.5 })).toThrow(TypeError);
  });

  it('runs prompt and negative prompt in two calls when their token counts differ', async () => {
    const { calls, model } = fakeModel();
    const longCond: Conditioning = {
      context: new Float32Array(8).fill(1),
      tokens: 4,
      y: Float32Array.from([7, 8]),
    };
    const denoise = cfgDenoiser({ model, latentDims: [1, 1, 1, 2], cond: longCond, uncond, scale: 2 });
    const out = await denoise(Float32Array.from([1, 3]), 0.5);
    expect(calls.map((c) => c.contextDims)).toEqual([
      [1, 4, 2],
      [1, 3, 2],
    ]);
    // cond: x − (x + 1)/2 = [0, 1]; uncond: x − (x − 1)/2 = [1, 2]; uncond + (cond − uncond)·2:
    expect(Array.from(out)).toEqual([-1, 0]);
  });

  it('rejects an x of the wrong size', async () => {
    const { model } = fakeModel();
    const denoise = cfgDenoiser({ model, latentDims: [1, 1, 1, 2], cond, uncond, scale: 3 });
    await expect(denoise(Float32Array.from([1, 2, 3]), 0.5)).rejects.toThrow(RangeError);
  });
});

describe('per-model defaults', () => {
  it('names a known sampler and a positive step count for every model family', () => {
    for (const [family, d] of Object.entries(SAMPLING_DEFAULTS)) {
      expect(Object.keys(SAMPLERS), family).toContain(d.sampler);
      expect(d.steps, family).toBeGreaterThan(0);
    }
    // Turbo is distilled to run without the unconditional pass.
    expect(usesUncond(SAMPLING_DEFAULTS['sd3.5-large-turbo'].guidance)).toBe(false);
    expect(usesUncond(SAMPLING_DEFAULTS['sd3.5-large'].guidance)).toBe(true);
  });
});

// The full sampler golden runs need the MMDiT graph; they belong to the integration tests, which
// reuse cfgDenoiser + SAMPLERS from here. This checks the manifest still describes what they use.
describe.each(goldenSets('sampler', 'sampler_dpmpp_2m'))(
  'the $name golden set’s sampler description',
  (set) => {
    it('names the tensors the integration test will feed through cfgDenoiser', () => {
      const names = Object.keys(set.component<GoldenSampler>('sampler').tensors);
      for (const needed of ['noise', 'cond_context', 'cond_y', 'uncond_context', 'uncond_y', 'txt2img_out']) {
        expect(names).toContain(needed);
      }
      expect(set.component<GoldenComponent>('sampler_dpmpp_2m').io).toBeTruthy();
    });
  },
);
