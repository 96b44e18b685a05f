/**
 * `atelier imagine "prompt"`: one job through the same scheduler and pipeline the bot uses, with a
 * progress bar, written to a PNG (parameters embedded). The queue lives in a temporary folder so a
 * command-line run never picks up, or disturbs, the bot's own queue.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, parse, resolve } from 'node:path';
import { createApp, engineOptions } from '../app/index.js';
import type { AtelierConfig } from '../config/index.js';
import type { JobEvent, JobResult } from '../jobs/types.js';
import { validateJobParams } from '../jobs/validate.js';
import { createLogger } from '../log.js';
import { ProcessPipeline } from '../pipeline/process/process-pipeline.js';
import { sd35ProcessSpec } from '../pipeline/sd35/index.js';
import { bar, ProgressLine } from './progress-bar.js';

export interface ImagineOptions {
  negative?: string;
  seed?: string;
  steps?: string;
  guidance?: string;
  aspect?: string;
  count?: string;
  sampler?: string;
  output?: string;
}

export async function imagine(
  config: AtelierConfig,
  prompt: string,
  options: ImagineOptions,
): Promise<string[]> {
  const line = new ProgressLine();
  const queueDir = mkdtempSync(join(tmpdir(), 'atelier-imagine-'));
  const pipeline = new ProcessPipeline({ spec: sd35ProcessSpec(await engineOptions(config)) });
  const app = await createApp(
    { ...config, dataDir: queueDir },
    { pipeline, logger: createLogger({ level: 'silent' }) },
  );
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    line.update('Loading the model…');
    await app.start();
    const info = pipeline.info();
    line.done(`Model ${info.model} on ${info.executionProvider}.`);
    const params = validateJobParams(
      {
        prompt,
        negativePrompt: options.negative,
        seed: options.seed,
        steps: options.steps,
        guidance: options.guidance,
        aspect: options.aspect,
        count: options.count,
        sampler: options.sampler,
      },
      app.validation(),
    );
    const user = userInfo().username;
    const requester = { platform: 'cli', userId: user, displayName: user };
    const started = Date.now();
    const result = await new Promise<JobResult>((resolvePromise, reject) => {
      let jobId: string | undefined;
      const onEvent = (event: JobEvent) => {
        if (jobId !== undefined && event.jobId !== jobId) return;
        if (event.type === 'progress') {
          const seconds = ((Date.now() - started) / 1000).toFixed(1);
          line.update(
            `${bar(event.step / event.total)} step ${event.step}/${event.total}  ${seconds} s`,
            (100 * event.step) / event.total,
          );
        } else if (event.type === 'done') resolvePromise(event.result);
        else if (event.type === 'failed') reject(new Error(event.userMessage));
        else if (event.type === 'cancelled') reject(new Error('Cancelled.'));
      };
      app.scheduler.on('job', onEvent);
      app.scheduler
        .enqueue({ kind: 'txt2img', requester, params, reply: { platform: 'cli', channelId: 'terminal' } })
        .then((receipt) => {
          jobId = receipt.job.id;
          controller.signal.addEventListener(
            'abort',
            () => void app.scheduler.cancel(receipt.job.id, requester),
          );
        }, reject);
    });
    line.done(`Done in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${params.seed}).`);
    return writeOutputs(result, app.store.dataDir, options.output ?? `atelier-${params.seed}.png`);
  } finally {
    process.off('SIGINT', onSigint);
    await app.close();
    rmSync(queueDir, { recursive: true, force: true });
  }
}

/** The grid (or the single image) at `output`; with several images, each also as `<name>-<n>.png`. */
function writeOutputs(result: JobResult, dataDir: string, output: string): string[] {
  const target = resolve(output);
  const from = (path: string) => resolve(dataDir, path);
  const written = [target];
  copyFileSync(from(result.gridPath ?? result.images[0].path), target);
  if (result.images.length > 1) {
    const { dir, name, ext } = parse(target);
    result.images.forEach((image, i) => {
      const path = join(dir, `${name}-${i + 1}${ext || '.png'}`);
      copyFileSync(from(image.path), path);
      written.push(path);
    });
  }
  return written;
}
