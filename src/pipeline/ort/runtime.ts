/**
 * The calling conventions of the C API in one place: status → OrtError, out-parameters, calls on a
 * worker thread, and the process's one OrtEnv (ONNX Runtime's singleton, shared with onnxruntime-node).
 */
import { promisify } from 'node:util';
import koffi from 'koffi';
import type { OrtApiTable, SlotName } from './api.js';
import { OrtError } from './errors.js';
import { loadOrtLibrary, type OrtLibrary } from './library.js';

/** An opaque ONNX Runtime handle (OrtSession*, OrtValue*, …) as koffi hands it over. */
export type Handle = bigint;

/** ORT_LOGGING_LEVEL_ERROR: warnings (e.g. nodes placed on the CPU) would flood the pipeline's log. */
const LOG_LEVEL_ERROR = 3;

export class OrtRuntime {
  readonly api: OrtApiTable;
  readonly env: Handle;
  /** ONNX Runtime's default CPU allocator (owned by ONNX Runtime, never released). */
  readonly cpuAllocator: Handle;

  constructor(readonly library: OrtLibrary) {
    this.api = library.api;
    this.env = this.out('CreateEnv', LOG_LEVEL_ERROR, 'atelier');
    this.cpuAllocator = this.out('GetAllocatorWithDefaultOptions');
  }

  /** Calls a status-returning function; throws OrtError with ONNX Runtime's message on failure. */
  call(name: SlotName, ...args: unknown[]): void {
    this.check(name, this.api[name](...args));
  }

  /** Calls a function whose last parameter is a pointer out-parameter, and returns what it wrote. */
  out<T = Handle>(name: SlotName, ...args: unknown[]): T {
    const result: unknown[] = [null];
    this.check(name, this.api[name](...args, result));
    return result[0] as T;
  }

  /** Like `out`, on a worker thread. */
  async outAsync<T = Handle>(name: SlotName, ...args: unknown[]): Promise<T> {
    const result: unknown[] = [null];
    const fn = promisify(this.api[name].async) as (...a: unknown[]) => Promise<unknown>;
    this.check(name, await fn(...args, result));
    return result[0] as T;
  }

  /** A string ONNX Runtime allocated with `allocator`: read, then freed. */
  takeString(pointer: Handle, allocator = this.cpuAllocator): string {
    try {
      return koffi.decode(pointer, 'char', -1) as string;
    } finally {
      this.call('AllocatorFree', allocator, pointer);
    }
  }

  check(name: string, status: unknown): void {
    if (!status) return;
    const code = this.api.GetErrorCode(status) as number;
    const message = this.api.GetErrorMessage(status) as string;
    this.api.ReleaseStatus(status);
    throw new OrtError(name, code, message);
  }
}

const runtimes = new Map<string, OrtRuntime>();

/** The runtime over onnxruntime-node's library (or the one at `libraryPath`); one per library. */
export function ortRuntime(libraryPath?: string): OrtRuntime {
  const library = loadOrtLibrary(libraryPath);
  let runtime = runtimes.get(library.path);
  if (!runtime) {
    runtime = new OrtRuntime(library);
    runtimes.set(library.path, runtime);
  }
  return runtime;
}
