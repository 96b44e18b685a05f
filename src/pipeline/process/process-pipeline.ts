/**
 * A Pipeline that runs another Pipeline in a child process. The bot's event loop never waits on
 * ONNX Runtime; a crash of the child fails the job in flight with a clear message and the child is
 * started again for the next job.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CancelledError, ModelError, PipelineError } from '../../errors.js';
import { residencyAfter, residencyFromInfo } from '../residency.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
  Residency,
  StepInfo,
} from '../types.js';
import { deserializeError } from './errors.js';
import type { ChildMessage, ParentMessage, PipelineModuleSpec } from './protocol.js';

export interface ProcessPipelineOptions {
  spec: PipelineModuleSpec;
  /** Environment of the child (defaults to this process's). */
  env?: NodeJS.ProcessEnv;
  /**
   * How long a load may take before the child is considered hung.
   * @default 600_000 (real SD3.5 weights take minutes to load from a slow disk)
   */
  loadTimeoutMs?: number;
  /**
   * A cancelled job normally stops at the next step boundary; if it has not within this time (a
   * hung kernel), the child is killed and started again, so the GPU slot is never lost.
   * @default 60_000
   */
  abortGraceMs?: number;
  /**
   * Scheduling priority (nice value) of the child: on a CPU-only machine the model's threads
   * otherwise delay the bot's answers to chat (measured: first-response p99 151 → 38 ms for 50
   * simultaneous /imagine on 2 cores at nice 19).
   * @default 0
   */
  niceness?: number;
}

interface PendingPing {
  child: ChildProcess;
  sent: number;
  resolve(ms: number): void;
  reject(error: Error): void;
}

interface PendingJob {
  resolve(output: GenerationOutput): void;
  reject(error: Error): void;
  onStep?: (info: StepInfo) => void;
}

export type ProcessPipelineEvent = 'crashed' | 'restarted';

export class ProcessPipeline
  extends EventEmitter<Record<ProcessPipelineEvent, [detail: string]>>
  implements Pipeline
{
  readonly #options: ProcessPipelineOptions;
  #child: ChildProcess | undefined;
  #info: PipelineInfo | undefined;
  /** Which models the child holds loaded (several models): from its info, then from each result. */
  #residency: Residency | undefined;
  #loading: Promise<void> | undefined;
  #nextId = 1;
  readonly #jobs = new Map<number, PendingJob>();
  #nextPing = 1;
  readonly #pings = new Map<number, PendingPing>();
  #disposed = false;
  /** Set after the first successful load: later crashes restart the child on demand. */
  #everLoaded = false;

  constructor(options: ProcessPipelineOptions) {
    super();
    this.#options = options;
  }

  /** The child's process id while it runs (for tests and `atelier doctor`). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  load(): Promise<void> {
    this.#loading ??= this.#start().catch((error) => {
      this.#loading = undefined;
      throw error;
    });
    return this.#loading;
  }

  info(): PipelineInfo {
    if (!this.#info) throw new PipelineError('the pipeline is not loaded yet');
    return this.#info;
  }

  residency(): Residency | undefined {
    return this.#residency;
  }

  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    if (this.#disposed) throw new PipelineError('the pipeline was shut down');
    if (options.signal?.aborted) throw new CancelledError();
    await this.load();
    const child = this.#child;
    if (!child) throw new PipelineError('the pipeline process is not running');
    const id = this.#nextId++;
    return new Promise<GenerationOutput>((resolve, reject) => {
      let grace: NodeJS.Timeout | undefined;
      const onAbort = () => {
        this.#send({ type: 'cancel', id });
        grace = setTimeout(() => {
          // The child did not stop between steps: fail the job as cancelled and restart the child.
          this.#jobs.get(id)?.reject(new CancelledError());
          this.#jobs.delete(id);
          child.kill('SIGKILL');
        }, this.#options.abortGraceMs ?? 60_000);
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => {
        clearTimeout(grace);
        options.signal?.removeEventListener('abort', onAbort);
      };
      this.#jobs.set(id, {
        resolve: (output) => {
          done();
          resolve(output);
        },
        reject: (error) => {
          done();
          reject(error);
        },
        onStep: options.onStep,
      });
      this.#send({ type: 'generate', id, request });
      // Aborted while the model was (re)loading: cancel right away.
      if (options.signal?.aborted) onAbort();
    });
  }

  /**
   * Round trip to the child's event loop in milliseconds. It does not start the child; while a
   * blocking session.run holds the child's thread the answer waits for it, so the round trip shows
   * how long the pipeline process would keep its parent (a cancel, a progress query) waiting.
   */
  ping(): Promise<number> {
    const child = this.#child;
    if (this.#disposed || !child?.connected)
      return Promise.reject(new PipelineError('the pipeline process is not running'));
    const id = this.#nextPing++;
    return new Promise<number>((resolve, reject) => {
      this.#pings.set(id, { child, sent: performance.now(), resolve, reject });
      this.#send({ type: 'ping', id });
    });
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.#send({ type: 'dispose' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  #start(): Promise<void> {
    const entry = fileURLToPath(
      new URL(`./child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
    );
    // Source checkouts run TypeScript through tsx; a bundled build runs plain JavaScript.
    const execArgv = entry.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
    const child = fork(entry, [], {
      execArgv,
      env: this.#options.env ?? process.env,
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child = child;
    if (this.#options.niceness && child.pid !== undefined) {
      try {
        setPriority(child.pid, this.#options.niceness);
      } catch {
        // Not permitted here (some containers): the pipeline runs at normal priority.
      }
    }
    child.on('message', (message: ChildMessage) => this.#onMessage(message));
    child.once('exit', (code, signal) => this.#failPings(child, describeExit(code, signal)));
    // A message to a child that just died fails with EPIPE; its exit is handled below.
    child.on('error', () => {});
    return new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new ModelError(
            'pipeline',
            `the pipeline did not finish loading within ${this.#options.loadTimeoutMs ?? 600_000} ms`,
          ),
        );
      }, this.#options.loadTimeoutMs ?? 600_000);
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timeout);
        reject(
          new ModelError(
            'pipeline',
            `the pipeline process exited while loading (${describeExit(code, signal)})`,
          ),
        );
      };
      child.once('exit', onExit);
      const onLoad = (message: ChildMessage) => {
        if (message.type === 'loaded') {
          this.#info = message.info;
          this.#residency = residencyFromInfo(message.info);
          this.#everLoaded = true;
        } else if (message.type !== 'load-failed') {
          return;
        }
        clearTimeout(timeout);
        child.off('message', onLoad);
        child.off('exit', onExit);
        child.once('exit', (code, signal) => this.#onCrash(child, code, signal));
        if (message.type === 'loaded') resolve();
        else {
          child.kill('SIGKILL');
          reject(deserializeError(message.error));
        }
      };
      child.on('message', onLoad);
      this.#send({ type: 'load', spec: this.#options.spec });
    });
  }

  #onMessage(message: ChildMessage): void {
    switch (message.type) {
      case 'step':
        this.#jobs.get(message.id)?.onStep?.(message.info);
        break;
      case 'result':
        if (this.#residency) this.#residency = residencyAfter(this.#residency, message.output);
        this.#jobs.get(message.id)?.resolve(message.output);
        this.#jobs.delete(message.id);
        break;
      case 'failed':
        this.#jobs.get(message.id)?.reject(deserializeError(message.error));
        this.#jobs.delete(message.id);
        break;
      case 'pong': {
        const ping = this.#pings.get(message.id);
        this.#pings.delete(message.id);
        ping?.resolve(performance.now() - ping.sent);
        break;
      }
    }
  }

  /** Pings the exited child can no longer answer. */
  #failPings(child: ChildProcess, detail: string): void {
    for (const [id, ping] of this.#pings) {
      if (ping.child !== child) continue;
      this.#pings.delete(id);
      ping.reject(new PipelineError(`the pipeline process exited (${detail}) before answering a ping`));
    }
  }

  #onCrash(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    this.#loading = undefined;
    if (this.#disposed) return;
    const detail = describeExit(code, signal);
    for (const job of this.#jobs.values()) {
      job.reject(
        new PipelineError(
          `the pipeline process stopped unexpectedly (${detail}) while generating`,
          'The image generator crashed while making your image. It is restarting; please try again.',
        ),
      );
    }
    this.#jobs.clear();
    this.emit('crashed', detail);
    if (this.#everLoaded) {
      // Start again now, so the next job does not wait for the models to load.
      this.load().then(
        () => this.emit('restarted', detail),
        () => {},
      );
    }
  }

  #send(message: ParentMessage): void {
    if (this.#child?.connected) this.#child.send(message);
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}
