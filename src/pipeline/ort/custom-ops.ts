/**
 * Our ONNX Runtime custom-op library (native/: atelier:AdaLNModulate …), for the C-API path's
 * `customOpsLibraries`. `cpu` holds the CPU kernels; `cuda` the CPU and the CUDA ones. Paths come
 * from native/library.mjs, which build.mjs (npm run build:native) uses too, so the path found here
 * is the build of the sources as they are now, never a stale one.
 */
import { existsSync } from 'node:fs';
import koffi from 'koffi';
import { buildLibrary, hasSources, type LibraryKind, libraryPath } from '../../../native/library.mjs';
import { configureKoffi } from './library.js';

export type CustomOpsKind = LibraryKind;

/** The library built from the current sources, or undefined when it has not been built (or no sources). */
export function builtCustomOpsLibrary(kind: CustomOpsKind): string | undefined {
  if (!hasSources()) return undefined;
  const path = libraryPath(kind);
  return existsSync(path) ? path : undefined;
}

/**
 * Builds the library now unless it is up to date (synchronously: g++ takes seconds, nvcc more) and
 * returns its path. Throws NativeBuildError with the compiler's output when a compile fails. For
 * tests and tools; the product uses what `npm run build:native` left.
 */
export function buildCustomOpsLibrary(kind: CustomOpsKind): string {
  return buildLibrary(kind).path;
}

/** A build's extras (native/src/register.cc's atelier_ops_features): CUDA kernels, cuDNN, FlashAttention-3. */
export type CustomOpsFeature = 'cuda' | 'cudnn' | 'fa3';

const features = new Map<string, ReadonlySet<CustomOpsFeature> | null>();
/** koffi unloads a library whose handle is collected: keep them. */
const handles: unknown[] = [];

/**
 * What the library at `path` was built with, asked of the library itself (so a copied or named
 * library answers for itself, not for the sources here). Loading it maps it into this process, as
 * ONNX Runtime will when a session registers it. Undefined when it cannot be loaded or predates the
 * question.
 */
export function customOpsFeatures(path: string): ReadonlySet<CustomOpsFeature> | undefined {
  let found = features.get(path);
  if (found === undefined) {
    try {
      configureKoffi(); // before this thread's first load (library.ts)
      const lib = koffi.load(path);
      handles.push(lib);
      const text = (lib.func('const char *atelier_ops_features()') as () => string)();
      found = new Set(text.split(/\s+/).filter(Boolean) as CustomOpsFeature[]);
    } catch {
      found = null;
    }
    features.set(path, found);
  }
  return found ?? undefined;
}

/**
 * What load-time choices read of a library (attention-choice.ts): nothing without one; a library
 * that cannot be read counts as built without any feature.
 */
export function libraryFeatures(path: string | undefined): ReadonlySet<CustomOpsFeature> | undefined {
  return path === undefined ? undefined : (customOpsFeatures(path) ?? new Set());
}
