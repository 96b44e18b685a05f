/** Types of library.mjs (plain JavaScript so build.mjs runs on bare Node). */
export type LibraryKind = 'cpu' | 'cuda';

export const NATIVE_DIR: string;
export const CUDNN_DEPS_DIR: string;
export function cudnnDeps(): { flags: string[]; version: string } | undefined;
export const FA3_DEPS_DIR: string;
export function fa3Deps(): { version: string; object: string } | undefined;
export function fa3Object(nvcc?: string): string | undefined;
export function hasSources(): boolean;
export function libraryPath(kind: LibraryKind): string;
export function findNvcc(env?: NodeJS.ProcessEnv): string | undefined;
export class NativeBuildError extends Error {
  constructor(message: string, output: string);
  readonly output: string;
}
export function buildLibrary(
  kind: LibraryKind,
  options?: { nvcc?: string },
): { path: string; built: boolean };
