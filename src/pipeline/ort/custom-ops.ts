/**
 * Our ONNX Runtime custom-op library (native/: atelier:AdaLNModulate …), for the C-API path's
 * `customOpsLibraries`. `cpu` holds the CPU kernels; `cuda` the CPU and the CUDA ones. Paths come
 * from native/library.mjs, which build.mjs (npm run build:native) uses too, so the path found here
 * is the build of the sources as they are now, never a stale one.
 */
import { existsSync } from 'node:fs';
import { buildLibrary, hasSources, type LibraryKind, libraryPath } from '../../../native/library.mjs';

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
