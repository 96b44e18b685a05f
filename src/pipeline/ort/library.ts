/**
 * Loads ONNX Runtime's C library — the `libonnxruntime.so.1` that onnxruntime-node already ships,
 * so the C-API sessions share its OrtEnv and its CUDA provider — and checks that it is exactly the
 * version whose OrtApi table api.ts describes.
 */
import { existsSync, readFileSync } from 'node:fs';
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

const LIBRARY_NAME = process.platform === 'darwin' ? 'libonnxruntime.1.dylib' : 'libonnxruntime.so.1';
/** Set by useOnnxRuntimeDir: the copy this process runs instead of onnxruntime-node's. */
let chosenPath: string | undefined;

/** The library this process uses: `models.onnxRuntimeDir`'s when set, else onnxruntime-node's own copy. */
function defaultLibraryPath(): string {
  if (chosenPath) return chosenPath;
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(packageDir, 'bin', 'napi-v6', process.platform, process.arch, LIBRARY_NAME);
}

/**
 * The ONNX Runtime library files mapped into this process, as the OS sees them (Linux; elsewhere the
 * path this module would load): proof of which copy onnxruntime-node and the C API really run.
 */
export function mappedOrtLibraries(): string[] {
  if (process.platform !== 'linux') return [defaultLibraryPath()];
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\n');
  return [
    ...new Set(
      maps.map((line) => line.split(/\s+/).at(-1) ?? '').filter((p) => p.endsWith(`/${LIBRARY_NAME}`)),
    ),
  ];
}

/** What a folder of ONNX Runtime's libraries must hold for `provider` (its execution-provider libraries). */
export function onnxRuntimeDirFiles(provider: string): string[] {
  return provider === 'cuda'
    ? [LIBRARY_NAME, 'libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so']
    : [LIBRARY_NAME];
}

/**
 * Makes this process run ONNX Runtime from `dir` (`models.onnxRuntimeDir`) instead of from
 * onnxruntime-node's package. Call before anything imports onnxruntime-node: its binding asks for
 * `libonnxruntime.so.1` by name, which the dynamic linker then finds already loaded from `dir`, and
 * ONNX Runtime loads its execution providers from the folder its own library came from. So a CUDA
 * provider kept in `dir` outlives `npm ci`, which replaces node_modules. Throws OrtLibraryError,
 * naming the key and the file, when a file is missing or the library is not ONNX Runtime 1.29.0.
 */
export function useOnnxRuntimeDir(dir: string, provider: string): OrtLibrary {
  const missing = onnxRuntimeDirFiles(provider).filter((name) => !existsSync(join(dir, name)));
  if (missing.length)
    throw new OrtLibraryError(
      `models.onnxRuntimeDir: ${dir} lacks ${missing.join(', ')} (it needs ONNX Runtime ${ORT_VERSION}'s ${onnxRuntimeDirFiles(provider).join(', ')})`,
    );
  const path = join(dir, LIBRARY_NAME);
  try {
    const library = loadOrtLibrary(path);
    chosenPath = path;
    return library;
  } catch (error) {
    throw new OrtLibraryError(`models.onnxRuntimeDir: ${(error as Error).message}`);
  }
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
 * RunWithBinding crashed with the default). Set once per thread, before the first call: koffi
 * refuses a new configuration once any library is loaded, so every koffi.load calls this first
 * (lora/merge-native.ts too).
 */
let configured = false;
export function configureKoffi(): void {
  if (configured) return;
  configured = true;
  const config = koffi.config() as Record<string, number>;
  koffi.config({ ...config, async_stack_size: Math.max(config.async_stack_size ?? 0, 8 << 20) });
}
