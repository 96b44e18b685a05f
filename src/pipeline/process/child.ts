/**
 * Entry point of the pipeline child process: loads the pipeline module named by the parent and
 * serves generate/cancel requests over IPC. One job at a time is the scheduler's rule; the child
 * does not enforce it but keeps one AbortController per job id.
 */
import { pathToFileURL } from 'node:url';
import type { Pipeline } from '../types.js';
import { serializeError } from './errors.js';
import type { ChildMessage, ParentMessage, PipelineModuleSpec } from './protocol.js';

let pipeline: Pipeline | undefined;
const jobs = new Map<number, AbortController>();

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function load(spec: PipelineModuleSpec): Promise<void> {
  try {
    // Before the module: its import loads onnxruntime-node, which must find this copy already loaded.
    if (spec.onnxRuntime)
      (await import('../ort/library.js')).useOnnxRuntimeDir(spec.onnxRuntime.dir, spec.onnxRuntime.provider);
    const url = spec.module.startsWith('file:') ? spec.module : pathToFileURL(spec.module).href;
    const mod = (await import(url)) as { createPipeline(options: unknown): Pipeline | Promise<Pipeline> };
    pipeline = await mod.createPipeline(spec.options);
    await pipeline.load();
    send({ type: 'loaded', info: pipeline.info() });
  } catch (error) {
    send({ type: 'load-failed', error: serializeError(error) });
  }
}

async function generate(id: number, request: Parameters<Pipeline['generate']>[0]): Promise<void> {
  const controller = new AbortController();
  jobs.set(id, controller);
  try {
    if (!pipeline) throw new Error('the pipeline is not loaded');
    const output = await pipeline.generate(request, {
      signal: controller.signal,
      onStep: (info) => send({ type: 'step', id, info }),
    });
    send({ type: 'result', id, output });
  } catch (error) {
    send({ type: 'failed', id, error: serializeError(error) });
  } finally {
    jobs.delete(id);
  }
}

process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'load':
      void load(message.spec);
      break;
    case 'generate':
      void generate(message.id, message.request);
      break;
    case 'cancel':
      jobs.get(message.id)?.abort();
      break;
    case 'ping':
      // Answered at once: the round trip measures how long the event loop was busy (a blocking run).
      send({ type: 'pong', id: message.id });
      break;
    case 'dispose':
      void (async () => {
        await pipeline?.dispose();
        send({ type: 'disposed' });
        process.disconnect?.();
      })();
      break;
  }
});

// The parent going away (crash, SIGKILL) must not leave an orphan holding the GPU.
process.on('disconnect', () => process.exit(0));
