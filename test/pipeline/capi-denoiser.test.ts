/**
 * The C-API denoising loop's CUDA-graph bookkeeping, on the CPU provider (where a graph id is
 * accepted and ignored, so the arithmetic is the plain run's): each binding warms up, captures,
 * then replays; a capture that fails reruns its step without a graph and leaves the shape on plain
 * runs, with the same latent as a loop that never tried. The failure is made by a stand-in binding
 * run (a real capture needs a GPU).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MmditConfig, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { buildSamplerStep, type SamplerStepShape } from '../../src/pipeline/models/sampler-step.js';
import { GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { type BindingRunOptions, CapiSession } from '../../src/pipeline/ort/index.js';
import type { Conditioning } from '../../src/pipeline/sampling/cfg.js';
import { sigmas } from '../../src/pipeline/sampling/schedule.js';
import { CapiDenoiser, type CapiJob, type StepQueue } from '../../src/pipeline/sd35/capi-denoiser.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type GoldenComponent, goldenSets } from '../golden/manifest.js';

describe.each(goldenSets('mmdit_large'))('the $name golden set’s mmdit_large in the C-API loop', (set) => {
  const mmdit = set.component<GoldenComponent & { weights: string; key_prefix?: string }>('mmdit_large');
  let weights: SafetensorsFile;
  let cfg: MmditConfig;
  const sessions: CapiSession[] = [];
  afterAll(() => {
    for (const s of sessions) s.release();
    weights.close();
  });

  beforeAll(() => {
    weights = set.open(mmdit.weights);
    const g = new GraphBuilder('probe');
    cfg = mmditConfig(new Params(g, new FileWeightSource(weights, mmdit.key_prefix ?? ''), 'float32'));
  });

  /**
   * Opens the step graph on the CPU; `runs` records every run's graph id, `fail` breaks captures,
   * `events` notes each run as it is issued.
   */
  function denoiser(options: {
    graphs: boolean;
    failCapture?: boolean;
    runs?: (number | undefined)[];
    events?: string[];
    stepQueue?: StepQueue;
  }) {
    const failures: string[] = [];
    const open = async (shape: SamplerStepShape) => {
      const g = new GraphBuilder('step');
      buildSamplerStep(
        new Net(g, new Params(g, new FileWeightSource(weights, mmdit.key_prefix ?? ''), 'float32')),
        cfg,
        shape,
      );
      const session = await CapiSession.create(g.build(), { provider: 'cpu' });
      sessions.push(session);
      const binding = session.binding.bind(session);
      let failed = false;
      session.binding = () => {
        const b = binding();
        const run = b.run.bind(b);
        b.run = async (o: BindingRunOptions = {}) => {
          options.runs?.push(o.graphId);
          options.events?.push('run');
          if (options.failCapture && !failed && o.graphId !== undefined && o.graphId >= 0) {
            failed = true;
            throw new Error(
              'RunWithBinding: CUDA failure 901: operation failed due to a previous error during capture',
            );
          }
          return run(o);
        };
        return b;
      };
      return session;
    };
    const d = new CapiDenoiser({
      mmdit: cfg,
      maxSteps: 10,
      open,
      cudaGraph: () => options.graphs,
      onCaptureFailure: (_shape, reason) => failures.push(reason),
      ...(options.stepQueue ? { stepQueue: options.stepQueue } : {}),
    });
    return { d, failures };
  }

  function random(n: number, seed: number): Float32Array {
    let s = seed;
    return Float32Array.from({ length: n }, () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 30 - 1;
    });
  }

  function job(): CapiJob {
    const tokens = 6;
    const conditioning = (seed: number): Conditioning => ({
      context: random(tokens * cfg.contextDim, seed),
      tokens,
      y: random(cfg.admInChannels, seed + 1),
    });
    const [h, w] = [4 * cfg.patchSize, 3 * cfg.patchSize];
    return {
      x0: random(cfg.inChannels * h * w, 7),
      images: 1,
      latentShape: [cfg.inChannels, h, w],
      schedule: sigmas(8, 3),
      sampler: 'euler',
      cond: conditioning(1),
      uncond: conditioning(3),
      guidance: 4.5,
    };
  }

  describe('the loop keeps the GPU busy while the host reports', () => {
    it('issues step i + 1 before handing step i to onStep, with each step’s own preview', async () => {
      const events: string[] = [];
      const previews: Float32Array[] = [];
      const { d } = denoiser({ graphs: true, events });
      await d.sample(job(), {
        onStep: (i, total, denoised) => {
          expect(total).toBe(8);
          events.push(`report ${i}`);
          previews.push(denoised);
        },
      });
      // run 0, then for each step: the next run, then the report of the one before it.
      const expected = ['run'];
      for (let i = 0; i < 8; i++) expected.push(...(i + 1 < 8 ? ['run'] : []), `report ${i}`);
      expect(events).toEqual(expected);
      // The same previews as a loop that reports each step before running the next (plain runs on the
      // CPU): the queued step never wrote the buffer being reported.
      const plainPreviews: Float32Array[] = [];
      await denoiser({ graphs: false }).d.sample(job(), {
        onStep: (_i, _t, p) => void plainPreviews.push(p),
      });
      expect(previews).toEqual(plainPreviews);
      expect(previews[0]).not.toEqual(previews[7]);
    });

    it('lets a step already queued finish when onStep throws, and reports the error', async () => {
      const events: string[] = [];
      const { d } = denoiser({ graphs: false, events });
      await expect(
        d.sample(job(), {
          onStep: (i) => {
            if (i === 2) throw new Error('preview sink closed');
          },
        }),
      ).rejects.toThrow('preview sink closed');
      // Steps 0–3 ran (3 was queued when step 2's report threw); none after.
      expect(events).toEqual(['run', 'run', 'run', 'run']);
      // The buffers are free for the next job, which gives the plain latent.
      expect((await d.sample(job())).latent).toEqual(
        (await denoiser({ graphs: false }).d.sample(job())).latent,
      );
    });
  });

  describe('two steps queued (a completion event per binding)', () => {
    /** A queue over the CPU's synchronous runs: notes when each binding's step is marked and awaited. */
    const fakeQueue = (events: string[]): StepQueue => ({
      issued: (p) => void events.push(`mark ${p}`),
      done: async (p) => void events.push(`wait ${p}`),
      release: () => void events.push('events freed'),
    });

    it('issues step i + 2 once step i is done and read, before reporting it; the same latent and previews', async () => {
      const events: string[] = [];
      const previews: Float32Array[] = [];
      const { d } = denoiser({ graphs: true, events, stepQueue: fakeQueue(events) });
      const queued = await d.sample(job(), {
        onStep: (i, _t, p) => {
          events.push(`report ${i}`);
          previews.push(p);
        },
      });
      const expected = ['run', 'mark 0', 'run', 'mark 1'];
      for (let i = 0; i < 8; i++)
        expected.push(`wait ${i % 2}`, ...(i + 2 < 8 ? ['run', `mark ${i % 2}`] : []), `report ${i}`);
      expect(events).toEqual(expected);
      const plainPreviews: Float32Array[] = [];
      const plain = await denoiser({ graphs: false }).d.sample(job(), {
        onStep: (_i, _t, p) => void plainPreviews.push(p),
      });
      expect(queued.latent).toEqual(plain.latent);
      expect(previews).toEqual(plainPreviews);
    });

    it('waits for every queued step when cancelled, and reports none after the cancel', async () => {
      const events: string[] = [];
      const controller = new AbortController();
      const { d } = denoiser({ graphs: false, events, stepQueue: fakeQueue(events) });
      await expect(
        d.sample(job(), {
          signal: controller.signal,
          onStep: (i) => {
            events.push(`report ${i}`);
            if (i === 2) controller.abort();
          },
        }),
      ).rejects.toThrow(/cancelled/);
      // Steps 0–4 were issued (4 when step 2 was read); 3 and 4 are waited for, neither reported.
      expect(events.filter((e) => e === 'run')).toHaveLength(5);
      expect(events.filter((e) => e.startsWith('report'))).toEqual(['report 0', 'report 1', 'report 2']);
      expect(events.slice(-2)).toEqual(['wait 1', 'wait 0']);
    });

    it('frees the events on release, after the sessions they were recorded for', async () => {
      const events: string[] = [];
      const { d } = denoiser({ graphs: false, events, stepQueue: fakeQueue(events) });
      await d.sample(job());
      const session = sessions.at(-1)!;
      const release = session.release.bind(session);
      session.release = () => {
        events.push('session released');
        release();
      };
      await d.release();
      expect(events.slice(-2)).toEqual(['session released', 'events freed']);
    });
  });

  describe('CUDA graphs in the C-API loop', () => {
    let plain: Float32Array;
    beforeAll(async () => {
      plain = (await denoiser({ graphs: false }).d.sample(job())).latent;
    });

    it('warms each binding up twice, captures, then replays every later step', async () => {
      const runs: (number | undefined)[] = [];
      const { d } = denoiser({ graphs: true, runs });
      const first = await d.sample(job());
      expect(runs).toEqual([-1, -1, -1, -1, 0, 1, 0, 1]);
      expect(first.replayedSteps).toBe(2);
      expect(first.latent).toEqual(plain);
      const second = await d.sample(job());
      expect(second.replayedSteps).toBe(8);
      expect(second.latent).toEqual(plain);
    });

    it('reruns a step whose capture failed without a graph, and keeps the shape on plain runs', async () => {
      const runs: (number | undefined)[] = [];
      const { d, failures } = denoiser({ graphs: true, failCapture: true, runs });
      const first = await d.sample(job());
      expect(failures).toEqual([
        'RunWithBinding: CUDA failure 901: operation failed due to a previous error during capture',
      ]);
      expect(first.captureFailure).toBe(failures[0]);
      expect(first.replayedSteps).toBe(0);
      expect(first.latent).toEqual(plain);
      // A session opened for capture would take a run without a graph id as a capture of graph 0.
      expect(runs).toEqual([-1, -1, -1, -1, 0, -1, -1, -1, -1]);
      const second = await d.sample(job());
      expect(second.latent).toEqual(plain);
      expect(runs.slice(9)).toEqual(Array(8).fill(-1));
    });

    it('captures only after both bindings warmed up, also when jobs of odd step counts leave them uneven', async () => {
      const runs: (number | undefined)[] = [];
      const { d } = denoiser({ graphs: true, runs });
      const whole = job();
      // One step, then the remaining seven from its result: binding 0 has run twice, binding 1 once.
      const first = await d.sample({ ...whole, schedule: whole.schedule.slice(0, 2) });
      const rest = await d.sample({ ...whole, x0: first.latent, schedule: whole.schedule.slice(1) });
      expect(runs).toEqual([-1, -1, -1, -1, -1, 0, 1, 0]);
      expect(rest.latent).toEqual(plain);
    });
  });
});
