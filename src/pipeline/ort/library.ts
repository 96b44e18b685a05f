/**
 * Loads ONNX Runtime's C library — the `libonnxruntime.so.1` that onnxruntime-node already ships,
 * so the C-API sessions share its OrtEnv and its CUDA provider — and checks that it is exactly the
 * version whose OrtApi table api.ts describes.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import koffi from 'koffi';
import { decodeApiTable, type OrtApiTable, prototype } from './api.js';
import { OrtLibraryError } from './errors.js';

/** The one ONNX Runtime release the slot table in api.ts was written for. */
export const ORT_VERSION = '1.29.0';
/** Its C API number (ORT_API_VERSION). */
export const ORT_API_VERSION = 29;

export interface OrtLibrary {
  path: string;
  version: string;
  apiVersion: number;
  api: OrtApiTable;
}

/**
 * Libraries stay referenced for the life of the process: koffi closes a library when its handle is
 * garbage-collected, and every function pointer decoded from it would then point at unmapped memory.
 */
const loaded = new Map<string, OrtLibrary>();
const handles: unknown[] = [];

/** The path of onnxruntime-node's own copy of the library, for this platform. */
function defaultLibraryPath(): string {
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('onnxruntime-node/package.json'));
  const name = process.platform === 'darwin' ? 'libonnxruntime.1.dylib' : 'libonnxruntime.so.1';
  return join(packageDir, 'bin', 'napi-v6', process.platform, process.arch, name);
}

/**
 * Loads (once per path) and checks ONNX Runtime's C library. Throws OrtLibraryError, one line
 * naming the file and what was found, when it is missing, is not ONNX Runtime, or is another version.
 */
export function loadOrtLibrary(path = defaultLibraryPath()): OrtLibrary {
  const known = loaded.get(path);
  if (known) return known;
  configureKoffi();
  if (!existsSync(path)) throw new OrtLibraryError(`ONNX Runtime's C library is missing: ${path}`);
  let handle: ReturnType<typeof koffi.load>;
  try {
    handle = koffi.load(path);
  } catch (error) {
    throw new OrtLibraryError(`${path} could not be loaded: ${(error as Error).message}`);
  }
  handles.push(handle);
  let getApiBase: () => unknown;
  try {
    getApiBase = handle.func('void* OrtGetApiBase()') as () => unknown;
  } catch {
    throw new OrtLibraryError(`${path} is not ONNX Runtime: it exports no OrtGetApiBase`);
  }
  const base = getApiBase();
  const pointer = (offset: number) => koffi.decode(base, offset, 'void*');
  const getVersion = koffi.decode(
    pointer(koffi.sizeof('void*')),
    prototype('OrtGetVersionString', 'const char* f()'),
  ) as () => string;
  const version = getVersion();
  if (version !== ORT_VERSION) {
    throw new OrtLibraryError(
      `${path} is ONNX Runtime ${version}; Atelier's C-API path needs exactly ${ORT_VERSION} (keep onnxruntime-node at ${ORT_VERSION})`,
    );
  }
  const getApi = koffi.decode(pointer(0), prototype('OrtGetApi', 'void* f(uint32_t version)')) as (
    v: number,
  ) => unknown;
  const api = getApi(ORT_API_VERSION);
  if (!api)
    throw new OrtLibraryError(`${path} (ONNX Runtime ${version}) does not offer C API ${ORT_API_VERSION}`);
  const library = { path, version, apiVersion: ORT_API_VERSION, api: decodeApiTable(api) };
  loaded.set(path, library);
  return library;
}

/**
 * koffi runs async calls on stacks of 128 KiB by default; ONNX Runtime's kernels need more (an fp16
 * RunWithBinding crashed with the default). Set once, before the first call.
 */
let configured = false;
function configureKoffi(): void {
  if (configured) return;
  configured = true;
  const config = koffi.config() as Record<string, number>;
  koffi.config({ ...config, async_stack_size: Math.max(config.async_stack_size ?? 0, 8 << 20) });
}
