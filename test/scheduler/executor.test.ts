import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { CancelledError, NotFoundError } from '../../src/errors.js';
import { readImageParameters } from '../../src/images/index.js';
import type { JobEvent } from '../../src/jobs/types.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { type Harness, harness, makeSpec, NO_LIMITS, TestPipeline } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function runJob(spec: ReturnType<typeof makeSpec>) {
  const receipt = await h!.scheduler.enqueue(spec);
  const final = await h!.scheduler.waitFor(receipt.job.id);
  return { id: receipt.job.id, final };
}

describe('JobExecutor', () => {
  it('writes one PNG per image with its parameters, and a grid, under <dataDir>/images/<jobId>/', async () => {
    h = await harness(NO_LIMITS);
    const spec = makeSpec('alice', { count: 2, prompt: 'a lighthouse, at dusk' });
    const { id, final } = await runJob(spec);
    if (final.type !== 'done') throw new Error(`expected done, got ${final.type}`);
    const { result } = final;
    const seed = spec.params.seed;
    expect(result.images).toEqual([
      { path: join(h.dir, 'images', id, `0-${seed}.png`), width: 64, height: 64, seed },
      { path: join(h.dir, 'images', id, `1-${seed + 1}.png`), width: 64, height: 64, seed: seed + 1 },
    ]);
    expect(readImageParameters(readFileSync(result.images[1]!.path))).toBe(
      `a lighthouse, at dusk\nSteps: 4, Sampler: Euler, CFG scale: 4.5, Seed: ${seed + 1}, Size: 64x64, Model: test-model`,
    );
    expect(result.gridPath).toBe(join(h.dir, 'images', id, 'grid.png'));
    expect(await sharp(result.gridPath!).metadata()).toMatchObject({ width: 128, height: 64, format: 'png' });
    // What the scheduler stored is what the event carried.
    expect(h.scheduler.getJob(id)?.result).toEqual(result);
  });

  it('forwards every step as progress, with encoded previews, before the done event', async () => {
    h = await harness(NO_LIMITS);
    const { id } = await runJob(makeSpec('alice', { steps: 4 }));
    const mine = h.events.filter((e) => e.jobId === id);
    expect(mine.map((e) => (e.type === 'progress' ? `${e.step}/${e.total}` : e.type))).toEqual([
      'queued',
      'started',
      '1/4',
      '2/4',
      '3/4',
      '4/4',
      'done',
    ]);
    const first = mine.find((e): e is Extract<JobEvent, { type: 'progress' }> => e.type === 'progress')!;
    const preview = await sharp(Buffer.from(first.preview!)).metadata();
    expect(['webp', 'jpeg']).toContain(preview.format);
  });

  it('makes a variation from the chosen image of an earlier job (img2img)', async () => {
    h = await harness(NO_LIMITS);
    const parentSpec = makeSpec('alice', { count: 2 });
    const parent = await runJob(parentSpec);
    const { final } = await runJob(
      makeSpec('bob', { kind: 'variation', parent: { jobId: parent.id, imageIndex: 1 } }),
    );
    expect(final.type).toBe('done');
    const request = h.pipeline.calls[1]!.request;
    expect(request.init?.strength).toBe(0.6);
    expect(request.init?.image.width).toBe(64);
    // The init image is the parent's second image (seed + 1 encodes its colour).
    const parentSeed = parentSpec.params.seed + 1;
    expect(Array.from(request.init!.image.data.subarray(0, 3))).toEqual([
      parentSeed % 256,
      (parentSeed >> 8) % 256,
      128,
    ]);
  });

  it('upscales 2× with Lanczos, then refines at low strength as one image', async () => {
    h = await harness(NO_LIMITS);
    const parent = await runJob(makeSpec('alice', { count: 4 }));
    const { final } = await runJob(
      makeSpec('alice', { kind: 'upscale', count: 4, parent: { jobId: parent.id, imageIndex: 2 } }),
    );
    if (final.type !== 'done') throw new Error(`expected done, got ${final.type}`);
    const request = h.pipeline.calls[1]!.request;
    expect([request.width, request.height, request.count]).toEqual([128, 128, 1]);
    expect(request.init?.strength).toBe(0.3);
    expect([request.init?.image.width, request.init?.image.height]).toEqual([128, 128]);
    expect(final.result.images).toHaveLength(1);
    expect(final.result.gridPath).toBeUndefined();
    expect(readImageParameters(readFileSync(final.result.images[0]!.path))).toMatch(
      /Size: 128x128, Model: test-model, Denoising strength: 0.3$/,
    );
  });

  it('refuses a variation of an image that does not exist, and fails one whose file was deleted', async () => {
    h = await harness(NO_LIMITS);
    await expect(
      h.scheduler.enqueue(makeSpec('alice', { kind: 'variation', parent: { jobId: 'nope', imageIndex: 0 } })),
    ).rejects.toThrow(NotFoundError);

    const parent = await runJob(makeSpec('alice'));
    h.pipeline.hold = true;
    const blocker = await h.scheduler.enqueue(makeSpec('carol'));
    const variation = await h.scheduler.enqueue(
      makeSpec('bob', { kind: 'upscale', parent: { jobId: parent.id } }),
    );
    rmSync(join(h.dir, 'images', parent.id), { recursive: true });
    (await h.pipeline.nextCall(1)).release();
    expect(await h.scheduler.waitFor(variation.job.id)).toMatchObject({
      type: 'failed',
      userMessage: "I can't read that image any more.",
    });
    expect((await h.scheduler.waitFor(blocker.job.id)).type).toBe('done');
  });

  it('hands the pipeline’s timings to the scheduler (for the ETA), which stores and publishes the result without them', async () => {
    h = await harness(NO_LIMITS);
    const timings = { encodeMs: 5, denoiseMs: 20, decodeMs: 5 };
    class TimedPipeline extends TestPipeline {
      override async generate(...args: Parameters<TestPipeline['generate']>) {
        return { ...(await super.generate(...args)), timings };
      }
    }
    const executor = new JobExecutor({ pipeline: new TimedPipeline(), store: h.store });
    const job = {
      id: 'timed',
      spec: makeSpec('alice'),
      state: 'running' as const,
      createdAt: 0,
      attempts: 1,
    };
    const run = await executor.run(job, { signal: new AbortController().signal, onProgress() {} });
    expect(run).toMatchObject({ timings });
    const scheduler = new Scheduler(h.store, {
      ...NO_LIMITS,
      runners: [executor],
      positionUpdateIntervalMs: 0,
    });
    await scheduler.start();
    try {
      const receipt = await scheduler.enqueue(makeSpec('bob'));
      const final = await scheduler.waitFor(receipt.job.id);
      if (final.type !== 'done') throw new Error(`expected done, got ${final.type}`);
      expect(final.result).not.toHaveProperty('timings');
      expect(scheduler.getJob(receipt.job.id)?.result).not.toHaveProperty('timings');
    } finally {
      await scheduler.stop();
    }
  });

  it('does not start a job whose signal is already aborted', async () => {
    h = await harness(NO_LIMITS);
    const executor = new JobExecutor({ pipeline: h.pipeline, store: h.store });
    const controller = new AbortController();
    controller.abort(new CancelledError());
    const job = { id: 'x', spec: makeSpec('alice'), state: 'running' as const, createdAt: 0, attempts: 1 };
    await expect(executor.run(job, { signal: controller.signal, onProgress() {} })).rejects.toThrow(
      CancelledError,
    );
    expect(h.pipeline.calls).toHaveLength(0);
  });
});
