/**
 * Where our ONNX Runtime custom-op libraries are built and how: the one place that knows the
 * sources, the compiler flags and the content hash that names a build. `native/build.mjs` (npm run
 * build:native) and `src/pipeline/ort/custom-ops.ts` both use it, so they agree on the path.
 *
 * A build lives in `native/build/<hash>/libatelier_ops_<kind>.so`, the hash covering the kind, the
 * flags and every source file: editing a kernel builds anew, an unchanged tree is never rebuilt.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const NATIVE_DIR = dirname(fileURLToPath(import.meta.url));
const SOURCE_DIRS = ['include', 'src'];
/**
 * cuDNN's headers and its frontend's, for atelier:Fp8Attention's cuDNN path: unpacked by
 * `native/cudnn-deps.mjs` into the git-ignored .gpu/cudnn/ (never committed). When its VERSION file
 * is there the CUDA library compiles with -DATELIER_WITH_CUDNN; otherwise exactly as without it.
 */
export const CUDNN_DEPS_DIR = join(NATIVE_DIR, '..', '.gpu', 'cudnn');

/**
 * How nvcc compiles our CUDA code, for the op library and anything else built from its sources (the
 * GEMM microbenchmark, bench/gpu/bundle.mjs): Hopper code (sm_90a) plus PTX for later GPUs, the CUDA
 * runtime linked shared, like ORT's provider.
 */
export const CUDA_CODE_FLAGS = [
  '-std=c++17',
  '-O3',
  '-gencode=arch=compute_90a,code=sm_90a',
  '-gencode=arch=compute_90,code=compute_90',
  '-cudart',
  'shared',
];

/** @type {Record<'cpu' | 'cuda', string[]>} */
const FLAGS = {
  // Host-only build: any machine with g++.
  cpu: ['-std=c++17', '-O3', '-fPIC', '-shared', '-fvisibility=hidden', '-Wall', '-Wextra'],
  // A shared library of CUDA_CODE_FLAGS' code.
  cuda: [
    ...CUDA_CODE_FLAGS,
    '-Xcompiler',
    '-fPIC,-fvisibility=hidden,-Wall,-Wextra',
    '-shared',
    '-DATELIER_WITH_CUDA',
  ],
};

/** The linker version script of a build with the cuDNN deps: the symbols the library exports. */
const EXPORTS_MAP = join(NATIVE_DIR, 'exports.map');

/**
 * The cuDNN deps when unpacked (`native/cudnn-deps.mjs`): the extra CUDA flags (headers as system
 * includes, so their warnings stay theirs; the frontend loads libcudnn.so.9 at run time, so nothing
 * links against it) and the VERSION text that goes into the build's hash.
 * @returns {{ flags: string[], version: string } | undefined}
 */
export function cudnnDeps() {
  const version = join(CUDNN_DEPS_DIR, 'VERSION');
  if (!existsSync(version)) return undefined;
  return {
    flags: [
      '-DATELIER_WITH_CUDNN',
      '-DNV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING',
      '-isystem',
      join(CUDNN_DEPS_DIR, 'include'),
      '-isystem',
      join(CUDNN_DEPS_DIR, 'frontend', 'include'),
      // Only what native/exports.map names leaves the library (RegisterCustomOps, the LoRA merge
      // kernel): the frontend's std:: template instances (default visibility in libstdc++'s
      // headers) must not bind to another library's copies, or theirs to ours.
      '-Xlinker',
      `--version-script=${EXPORTS_MAP}`,
    ],
    version: readFileSync(version, 'utf8'),
  };
}

/**
 * The flags `kind` compiles with: FLAGS, plus the cuDNN ones for CUDA when the deps are there.
 * @param {'cpu' | 'cuda'} kind
 */
function flagsOf(kind) {
  const deps = kind === 'cuda' ? cudnnDeps() : undefined;
  return deps ? [...FLAGS[kind], ...deps.flags] : FLAGS[kind];
}

/** The sources a kind compiles (.cu only with CUDA); headers (.h, .cuh) count for the hash only. */
function sourceFiles() {
  return SOURCE_DIRS.flatMap((dir) =>
    readdirSync(join(NATIVE_DIR, dir))
      .filter((name) => /\.(h|cuh|cc|cu)$/.test(name))
      .sort()
      .map((name) => join(NATIVE_DIR, dir, name)),
  );
}

/** False in a bundle or an install without native/ sources: nothing can be built or found. */
export function hasSources() {
  return SOURCE_DIRS.every((dir) => existsSync(join(NATIVE_DIR, dir)));
}

/**
 * The path the current sources and flags build to for `kind` (whether built or not).
 * @param {'cpu' | 'cuda'} kind
 */
export function libraryPath(kind) {
  const deps = kind === 'cuda' ? cudnnDeps() : undefined;
  // Without the cuDNN deps the hash (and so the path) is what it was before they existed.
  const hash = createHash('sha256').update(
    JSON.stringify(
      deps
        ? { kind, flags: flagsOf(kind), cudnn: deps.version, exports: readFileSync(EXPORTS_MAP, 'utf8') }
        : { kind, flags: FLAGS[kind] },
    ),
  );
  for (const file of sourceFiles())
    hash.update(relative(NATIVE_DIR, file)).update('\0').update(readFileSync(file));
  return join(NATIVE_DIR, 'build', hash.digest('hex').slice(0, 16), `libatelier_ops_${kind}.so`);
}

/** nvcc from PATH, $CUDA_HOME/bin or /usr/local/cuda/bin; undefined when there is none. */
export function findNvcc(env = process.env) {
  const candidates = [
    ...(env.PATH ?? '').split(delimiter).filter(Boolean),
    ...(env.CUDA_HOME ? [join(env.CUDA_HOME, 'bin')] : []),
    '/usr/local/cuda/bin',
  ].map((dir) => join(dir, 'nvcc'));
  return candidates.find((path) => existsSync(path));
}

/** A failed compile; `output` is what the compiler printed. */
export class NativeBuildError extends Error {
  /** @param {string} message @param {string} output */
  constructor(message, output) {
    super(`${message}\n${output}`);
    this.name = 'NativeBuildError';
    this.output = output;
  }
}

/**
 * Builds `kind` unless the current hash is already built, synchronously; returns its path and
 * whether it compiled now. Compiles beside the target and renames, so a concurrent build or a
 * crash never leaves a half-written library at the path.
 * @param {'cpu' | 'cuda'} kind
 * @param {{ nvcc?: string }} [options]
 * @returns {{ path: string, built: boolean }}
 */
export function buildLibrary(kind, options = {}) {
  const path = libraryPath(kind);
  if (existsSync(path)) return { path, built: false };
  const compiler = kind === 'cpu' ? 'g++' : (options.nvcc ?? findNvcc());
  if (!compiler) throw new NativeBuildError('cannot build the CUDA library: nvcc not found', '');
  const sources = sourceFiles().filter(
    (file) => file.endsWith('.cc') || (kind === 'cuda' && file.endsWith('.cu')),
  );
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  const args = [...flagsOf(kind), `-I${join(NATIVE_DIR, 'include')}`, '-o', partial, ...sources];
  try {
    execFileSync(compiler, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (error) {
    rmSync(partial, { force: true });
    const e = /** @type {{ stdout?: string, stderr?: string, message: string }} */ (error);
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message;
    throw new NativeBuildError(`${kind}: ${compiler} failed`, output);
  }
  renameSync(partial, path);
  return { path, built: true };
}
