/**
 * An IO binding: inputs and outputs bound once to tensors that stay where they are, then run as
 * often as needed (`RunWithBinding`, on a worker thread). With the CUDA provider's graph capture on,
 * the second and later runs replay the captured graph over the same addresses.
 */
import type { RunThread } from './run-thread.js';
import type { Handle, OrtRuntime } from './runtime.js';
import type { DeviceTensor } from './tensor.js';

export interface BindingRunOptions {
  /**
   * Return as soon as the work is queued on the GPU instead of waiting for it (ONNX Runtime's
   * `disable_synchronize_execution_providers`); call `synchronize()` before reading outputs.
   */
  noWait?: boolean;
  /** Which captured CUDA graph to use (`gpu_graph_id`): one per set of bound addresses. */
  graphId?: number;
  /**
   * Arenas that give their unused regions back at the end of the run
   * (`memory.enable_memory_arena_shrinkage`, e.g. `gpu:0`; only kSameAsRequested arenas shrink).
   */
  shrinkArena?: string;
}

export class Binding {
  readonly handle: Handle;
  readonly #runOptions = new Map<string, Handle>();
  #released = false;

  constructor(
    private readonly rt: OrtRuntime,
    private readonly session: Handle,
    /** The session's run thread (CUDA graphs are kept per thread). */
    private readonly thread: RunThread,
    private readonly onRelease?: () => void,
    /** Wraps each run, so the session is not freed under it. */
    private readonly track: <T>(run: () => Promise<T>) => Promise<T> = (run) => run(),
  ) {
    this.handle = rt.out('CreateIoBinding', session);
  }

  bindInput(name: string, tensor: DeviceTensor): this {
    this.rt.call('BindInput', this.handle, name, tensor.value);
    return this;
  }

  bindOutput(name: string, tensor: DeviceTensor): this {
    this.rt.call('BindOutput', this.handle, name, tensor.value);
    return this;
  }

  /** One run over the bound tensors, off the event loop. */
  async run(options: BindingRunOptions = {}): Promise<void> {
    if (this.#released) throw new Error('This binding was released');
    const runOptions = this.#options(options);
    await this.track(() => this.thread.run(this.session, runOptions, this.handle));
  }

  /** Waits, on a worker thread, until the outputs of a `noWait` run are complete. */
  async synchronizeAsync(): Promise<void> {
    await this.track(() => this.thread.synchronize(this.handle));
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const options of this.#runOptions.values()) this.rt.api.ReleaseRunOptions(options);
    this.rt.api.ReleaseIoBinding(this.handle);
    this.onRelease?.();
  }

  /** Run options are made once per combination and kept: a replayed step allocates nothing. */
  #options({ noWait = false, graphId, shrinkArena }: BindingRunOptions): Handle {
    const key = `${noWait}:${graphId ?? ''}:${shrinkArena ?? ''}`;
    const known = this.#runOptions.get(key);
    if (known !== undefined) return known;
    const options: Handle = this.rt.out('CreateRunOptions');
    this.#runOptions.set(key, options);
    if (noWait) this.rt.call('AddRunConfigEntry', options, 'disable_synchronize_execution_providers', '1');
    if (graphId !== undefined) this.rt.call('AddRunConfigEntry', options, 'gpu_graph_id', String(graphId));
    if (shrinkArena)
      this.rt.call('AddRunConfigEntry', options, 'memory.enable_memory_arena_shrinkage', shrinkArena);
    return options;
  }
}
