/**
 * A session made through ONNX Runtime's C API: the provider options onnxruntime-node cannot pass
 * (CUDA graphs, the attention kernel, arena settings), custom-op libraries, device tensors and IO
 * bindings. Creation and runs happen on worker threads; the caller's event loop stays free.
 */
import koffi from 'koffi';
import type { BuiltModel } from '../onnx/graph.js';
import { Binding, type BindingRunOptions } from './binding.js';
import { RunThread } from './run-thread.js';
import { type Handle, type OrtRuntime, ortRuntime } from './runtime.js';
import {
  DeviceTensor,
  type ElementType,
  elementType,
  type HostTensor,
  type Location,
  readHostValue,
} from './tensor.js';

const OPTIMIZATION = { disable: 0, basic: 1, extended: 2, all: 99 } as const;
/** OrtArenaAllocator, OrtMemTypeDefault: what the CUDA provider allocates its tensors with. */
const ARENA_ALLOCATOR = 1;
const MEM_TYPE_DEFAULT = 0;

export interface CapiSessionOptions {
  provider: Location;
  /** @default 0 */
  deviceId?: number;
  /** CPU provider threads; @default ONNX Runtime's choice */
  intraOpThreads?: number;
  /** Session config entries, full keys (`session.use_device_allocator_for_initializers`: '1'). */
  config?: Record<string, string>;
  /** CUDA provider options by ONNX Runtime's names (`enable_cuda_graph`, `sdpa_kernel`, …). */
  cuda?: Record<string, string>;
  /** Custom-op libraries to register (RegisterCustomOpsLibrary_V2). */
  customOpsLibraries?: string[];
  /** @default 'all' */
  optimization?: keyof typeof OPTIMIZATION;
  /** Writes an ONNX Runtime profile starting with this path. */
  profilePrefix?: string;
  /** Another ONNX Runtime library than onnxruntime-node's (tests). */
  libraryPath?: string;
}

/**
 * An arena's counters as ONNX Runtime reports them (`AllocatorGetStats` on the session's allocator),
 * in bytes and counts. Initializers placed with `session.use_device_allocator_for_initializers`
 * are reserved through the arena: they count in `inUse`, `maxInUse` and `totalAllocated`, but not
 * against `gpu_mem_limit`, which caps the arena's own regions (the activations).
 */
export interface ArenaStats {
  /** Bytes handed out now (reserved initializers and live tensors). */
  inUse: number;
  /** The most bytes handed out at once since the session opened: the high-water mark. */
  maxInUse: number;
  /** Bytes the arena holds from the device (its regions and the reserved blocks): its footprint. */
  totalAllocated: number;
  /** `gpu_mem_limit` of the arena; absent when unlimited (ONNX Runtime says −1 or SIZE_MAX). */
  limit?: number;
  /** The largest single allocation (with memory patterns, a run's whole activation block). */
  maxAllocSize: number;
  allocs: number;
  /** Blocks reserved outside the arena's regions (initializers). */
  reserves: number;
  /** Times the arena grew (each a cudaMalloc of a new region). */
  extensions: number;
  shrinkages: number;
}

/** ArenaStats from ONNX Runtime's key/value strings; undefined when it reports no arena counters. */
export function arenaStatsFrom(pairs: Record<string, string>): ArenaStats | undefined {
  const n = (key: string) => {
    const value = Number(pairs[key]);
    return Number.isFinite(value) ? value : 0;
  };
  if (pairs.MaxInUse === undefined || pairs.TotalAllocated === undefined) return undefined;
  const limit = Number(pairs.Limit);
  return {
    inUse: n('InUse'),
    maxInUse: n('MaxInUse'),
    totalAllocated: n('TotalAllocated'),
    // −1 (no limit), or SIZE_MAX read back as a double.
    ...(Number.isFinite(limit) && limit >= 0 && limit < 2 ** 63 ? { limit } : {}),
    maxAllocSize: n('MaxAllocSize'),
    allocs: n('NumAllocs'),
    reserves: n('NumReserves'),
    extensions: n('NumArenaExtensions'),
    shrinkages: n('NumArenaShrinkages'),
  };
}

export class CapiSession {
  readonly inputNames: string[];
  readonly outputNames: string[];
  #allocator: Handle | undefined;
  /** The session's CPU arena, for its statistics on the CPU provider. */
  #hostAllocator: Handle | undefined;
  #thread: RunThread | undefined;
  #released = false;
  /** Runs on worker threads right now: freeing the session under one would crash the process. */
  #inFlight = 0;
  #freed = false;
  readonly #tensors = new Set<DeviceTensor>();
  readonly #bindings = new Set<Binding>();

  private constructor(
    readonly rt: OrtRuntime,
    readonly handle: Handle,
    readonly options: CapiSessionOptions,
  ) {
    this.inputNames = this.#names('SessionGetInputCount', 'SessionGetInputName');
    this.outputNames = this.#names('SessionGetOutputCount', 'SessionGetOutputName');
  }

  /** Opens a session over a model's bytes (a BuiltModel reads its external weights from its folder). */
  static async create(model: Uint8Array | BuiltModel, options: CapiSessionOptions): Promise<CapiSession> {
    const rt = ortRuntime(options.libraryPath);
    const built = model instanceof Uint8Array ? { bytes: model, externalFolder: undefined } : model;
    const sessionOptions: Handle = rt.out('CreateSessionOptions');
    try {
      configure(rt, sessionOptions, options, built.externalFolder);
      const handle = await rt.outAsync(
        'CreateSessionFromArray',
        rt.env,
        built.bytes,
        built.bytes.byteLength,
        sessionOptions,
      );
      return new CapiSession(rt, handle, options);
    } finally {
      rt.api.ReleaseSessionOptions(sessionOptions);
    }
  }

  get location(): Location {
    return this.options.provider;
  }

  /** A tensor in this session's device memory (host memory on the CPU provider), released with the session. */
  deviceTensor(type: ElementType, dims: readonly number[]): DeviceTensor {
    this.#live();
    elementType(type);
    const allocator = this.location === 'cuda' ? this.#deviceAllocator() : this.rt.cpuAllocator;
    const tensor = new DeviceTensor(this.rt, allocator, type, dims, this.location, () =>
      this.#tensors.delete(tensor),
    );
    this.#tensors.add(tensor);
    return tensor;
  }

  /** An IO binding over this session, released with it. */
  binding(): Binding {
    this.#live();
    const binding = new Binding(
      this.rt,
      this.handle,
      this.#runThread(),
      () => this.#bindings.delete(binding),
      (run) => this.#track(run),
    );
    this.#bindings.add(binding);
    return binding;
  }

  /**
   * One run from host tensors to host tensors (through an IO binding; outputs land in host memory,
   * so this works on either provider). For loops that keep data on the device, use `binding()`.
   */
  async run(
    feeds: Record<string, HostTensor>,
    outputs = this.outputNames,
    options: BindingRunOptions = {},
  ): Promise<Record<string, HostTensor>> {
    this.#live();
    const tensors: DeviceTensor[] = [];
    const binding = new Binding(this.rt, this.handle, this.#runThread(), undefined, (run) =>
      this.#track(run),
    );
    const cpu = this.rt.out('CreateCpuMemoryInfo', ARENA_ALLOCATOR, MEM_TYPE_DEFAULT);
    try {
      for (const [name, feed] of Object.entries(feeds)) {
        const tensor = new DeviceTensor(this.rt, this.rt.cpuAllocator, feed.type, feed.dims, 'cpu');
        tensors.push(tensor);
        tensor.write(feed.data);
        binding.bindInput(name, tensor);
      }
      for (const name of outputs) this.rt.call('BindOutputToDevice', binding.handle, name, cpu);
      await binding.run(options);
      return this.#boundOutputs(binding, outputs);
    } finally {
      binding.release();
      for (const t of tensors) t.release();
      this.rt.api.ReleaseMemoryInfo(cpu);
    }
  }

  /**
   * The counters of the arena this session allocates from (the CUDA arena on CUDA, the CPU arena on
   * the CPU): its high-water mark, footprint and limit. Undefined once released, or when ONNX
   * Runtime reports no arena (an allocator without one). Safe while a run is in flight (the arena
   * takes its lock).
   */
  arenaStats(): ArenaStats | undefined {
    if (this.#released) return undefined;
    let kvps: Handle;
    try {
      kvps = this.rt.out(
        'AllocatorGetStats',
        this.location === 'cuda' ? this.#deviceAllocator() : this.#hostArena(),
      );
    } catch {
      return undefined;
    }
    if (!kvps) return undefined;
    try {
      const keys: unknown[] = [null];
      const values: unknown[] = [null];
      const count: unknown[] = [0];
      this.rt.api.GetKeyValuePairs(kvps, keys, values, count);
      const n = Number(count[0]);
      if (!n) return undefined;
      const k = koffi.decode(keys[0], 'const char*', n) as string[];
      const v = koffi.decode(values[0], 'const char*', n) as string[];
      return arenaStatsFrom(Object.fromEntries(k.map((key, i) => [key, v[i]])));
    } finally {
      this.rt.api.ReleaseKeyValuePairs(kvps);
    }
  }

  /**
   * Releases the session with every tensor and binding made from it; when runs are still going on
   * worker threads, once the last of them has returned.
   */
  release(): void {
    this.#released = true;
    if (this.#inFlight === 0) this.#free();
  }

  async #track<T>(run: () => Promise<T>): Promise<T> {
    this.#live();
    this.#inFlight++;
    try {
      return await run();
    } finally {
      this.#inFlight--;
      if (this.#released && this.#inFlight === 0) this.#free();
    }
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    for (const b of this.#bindings) b.release();
    for (const t of this.#tensors) t.release();
    if (this.#allocator !== undefined) this.rt.api.ReleaseAllocator(this.#allocator);
    if (this.#hostAllocator !== undefined) this.rt.api.ReleaseAllocator(this.#hostAllocator);
    this.rt.api.ReleaseSession(this.handle);
    void this.#thread?.terminate();
  }

  #boundOutputs(binding: Binding, names: string[]): Record<string, HostTensor> {
    const array: unknown[] = [null];
    const count: unknown[] = [0];
    this.rt.call('GetBoundOutputValues', binding.handle, this.rt.cpuAllocator, array, count);
    const n = Number(count[0]);
    const values = n ? (koffi.decode(array[0], 'void*', n) as Handle[]) : [];
    try {
      return Object.fromEntries(names.map((name, i) => [name, readHostValue(this.rt, values[i])]));
    } finally {
      for (const v of values) this.rt.api.ReleaseValue(v);
      if (n) this.rt.call('AllocatorFree', this.rt.cpuAllocator, array[0]);
    }
  }

  #runThread(): RunThread {
    this.#thread ??= new RunThread(this.rt);
    return this.#thread;
  }

  #deviceAllocator(): Handle {
    if (this.#allocator === undefined) {
      const info = this.rt.out(
        'CreateMemoryInfo',
        'Cuda',
        ARENA_ALLOCATOR,
        this.options.deviceId ?? 0,
        MEM_TYPE_DEFAULT,
      );
      try {
        this.#allocator = this.rt.out('CreateAllocator', this.handle, info);
      } finally {
        this.rt.api.ReleaseMemoryInfo(info);
      }
    }
    return this.#allocator!;
  }

  #hostArena(): Handle {
    if (this.#hostAllocator === undefined) {
      const info = this.rt.out('CreateCpuMemoryInfo', ARENA_ALLOCATOR, MEM_TYPE_DEFAULT);
      try {
        this.#hostAllocator = this.rt.out('CreateAllocator', this.handle, info);
      } finally {
        this.rt.api.ReleaseMemoryInfo(info);
      }
    }
    return this.#hostAllocator!;
  }

  #names(
    countSlot: 'SessionGetInputCount' | 'SessionGetOutputCount',
    nameSlot: 'SessionGetInputName' | 'SessionGetOutputName',
  ): string[] {
    const count = Number(this.rt.out<number | bigint>(countSlot, this.handle));
    return Array.from({ length: count }, (_, i) =>
      this.rt.takeString(this.rt.out(nameSlot, this.handle, i, this.rt.cpuAllocator)),
    );
  }

  #live(): void {
    if (this.#released) throw new Error('This session was released');
  }
}

/** Session options: optimization, threads, config entries, custom ops, then the provider. */
function configure(
  rt: OrtRuntime,
  options: Handle,
  o: CapiSessionOptions,
  externalFolder: string | undefined,
): void {
  rt.call('SetSessionGraphOptimizationLevel', options, OPTIMIZATION[o.optimization ?? 'all']);
  rt.call('SetSessionLogSeverityLevel', options, 3);
  if (o.intraOpThreads) rt.call('SetIntraOpNumThreads', options, o.intraOpThreads);
  const config = { ...o.config };
  // ONNX Runtime 1.29 refuses external data paths outside the model's folder; a model loaded from
  // memory names its folder here instead (as the stock path does).
  if (externalFolder) config['session.model_external_initializers_file_folder_path'] = externalFolder;
  for (const [key, value] of Object.entries(config)) rt.call('AddSessionConfigEntry', options, key, value);
  if (o.profilePrefix) rt.call('EnableProfiling', options, o.profilePrefix);
  for (const library of o.customOpsLibraries ?? []) rt.call('RegisterCustomOpsLibrary_V2', options, library);
  if (o.provider === 'cuda') {
    const cuda: Handle = rt.out('CreateCUDAProviderOptions');
    try {
      const entries = Object.entries({ device_id: String(o.deviceId ?? 0), ...o.cuda });
      rt.call(
        'UpdateCUDAProviderOptions',
        cuda,
        entries.map(([k]) => k),
        entries.map(([, v]) => v),
        entries.length,
      );
      rt.call('SessionOptionsAppendExecutionProvider_CUDA_V2', options, cuda);
    } finally {
      rt.api.ReleaseCUDAProviderOptions(cuda);
    }
  }
}
