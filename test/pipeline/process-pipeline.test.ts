import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CancelledError, ModelError, PipelineError } from '../../src/errors.js';
import { ProcessPipeline } from '../../src/pipeline/process/process-pipeline.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';

const fixture = fileURLToPath(new URL('../fixtures/scripted-pipeline.ts', import.meta.url));
const request = (prompt: string, steps = 3): GenerationRequest => ({
  prompt,
  negativePrompt: '',
  width: 8,
  height: 8,
  seed: 7,
  steps,
  guidance: 1,
  sampler: 'euler',
  count: 1,
});

let pipeline: ProcessPipeline | undefined;
afterEach(async () => {
  await pipeline?.dispose();
  pipeline = undefined;
});

describe('ProcessPipeline', () => {
  it('runs the pipeline in another process and relays steps and images', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} } });
    await pipeline.load();
    expect(pipeline.info().components[0].bytes).not.toBe(process.pid);
    const steps: number[] = [];
    const out = await pipeline.generate(request('a lighthouse'), { onStep: (s) => steps.push(s.step) });
    expect(steps).toEqual([1, 2, 3]);
    expect(out.images[0].data).toBeInstanceOf(Uint8Array);
    expect(out.images[0].data[0]).toBe(7);
  });

  it('cancels a running job between steps', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} } });
    const controller = new AbortController();
    const job = pipeline.generate(request('wait'), {
      signal: controller.signal,
      onStep: (s) => s.step === 5 && controller.abort(),
    });
    await expect(job).rejects.toBeInstanceOf(CancelledError);
    await expect(pipeline.generate(request('after'))).resolves.toMatchObject({ seeds: [7] });
  });

  it('refuses a job whose signal is already aborted with a CancelledError', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} } });
    const controller = new AbortController();
    controller.abort();
    await expect(pipeline.generate(request('never'), { signal: controller.signal })).rejects.toBeInstanceOf(
      CancelledError,
    );
  });

  it('fails the job with a clear message when the process crashes, then restarts', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} } });
    await pipeline.load();
    const firstPid = pipeline.pid;
    const restarted = new Promise((resolve) => pipeline!.once('restarted', resolve));
    const error = await pipeline.generate(request('crash')).catch((e) => e);
    expect(error).toBeInstanceOf(PipelineError);
    expect(error.message).toMatch(/stopped unexpectedly \(signal SIGKILL\)/);
    expect(error.userMessage).toMatch(/crashed .* please try again/i);
    await restarted;
    expect(pipeline.pid).not.toBe(firstPid);
    await expect(pipeline.generate(request('again'))).resolves.toMatchObject({ seeds: [7] });
  });

  it('kills and restarts a child that does not stop after a cancel, failing the job as cancelled', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} }, abortGraceMs: 200 });
    await pipeline.load();
    const firstPid = pipeline.pid;
    const restarted = new Promise((resolve) => pipeline!.once('restarted', resolve));
    const controller = new AbortController();
    // The child blocks its thread right after reporting step 1, so it never sees the cancel.
    const job = pipeline.generate(request('hang'), {
      signal: controller.signal,
      onStep: () => controller.abort(),
    });
    await expect(job).rejects.toBeInstanceOf(CancelledError);
    await restarted;
    expect(pipeline.pid).not.toBe(firstPid);
    await expect(pipeline.generate(request('after'))).resolves.toMatchObject({ seeds: [7] });
  });

  it('answers pings from the child while a job runs, and refuses them without a child', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} } });
    await expect(pipeline.ping()).rejects.toThrow(/not running/);
    await pipeline.load();
    expect(await pipeline.ping()).toBeGreaterThanOrEqual(0);
    const controller = new AbortController();
    let during: Promise<number> | undefined;
    const job = pipeline.generate(request('wait'), {
      signal: controller.signal,
      // The job only stops once the child has answered a ping sent while it was running.
      onStep: (s) => {
        if (s.step === 3) during = pipeline!.ping().finally(() => controller.abort());
      },
    });
    await expect(job).rejects.toBeInstanceOf(CancelledError);
    expect(Number.isFinite(await during!)).toBe(true);
  });

  it('fails a ping that a blocked child never answers when the child is killed', async () => {
    pipeline = new ProcessPipeline({ spec: { module: fixture, options: {} }, abortGraceMs: 200 });
    await pipeline.load();
    const controller = new AbortController();
    let pong: Promise<number> | undefined;
    // "hang" blocks the child's thread after step 1: the ping waits until the grace kill.
    const job = pipeline.generate(request('hang'), {
      signal: controller.signal,
      onStep: () => {
        pong = pipeline!.ping();
        controller.abort();
      },
    });
    await expect(job).rejects.toBeInstanceOf(CancelledError);
    await expect(pong).rejects.toThrow(/exited \(signal SIGKILL\) before answering a ping/);
  });

  it('reports a load failure as the typed error naming the file', async () => {
    pipeline = new ProcessPipeline({
      spec: { module: fixture, options: { failLoad: '/models/clip_l.safetensors' } },
    });
    const error = await pipeline.load().catch((e) => e);
    expect(error).toBeInstanceOf(ModelError);
    expect(error.message).toBe('/models/clip_l.safetensors: the file does not exist');
  });
});
