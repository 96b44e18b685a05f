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

/** The linker version script of a build with the cuDNN or FA3 deps: the symbols the library exports. */
const EXPORTS_MAP = join(NATIVE_DIR, 'exports.map');

/**
 * FlashAttention-3's hopper/ sources and the CUTLASS they pin, for atelier:FlashAttention's CUDA
 * kernel: exported by `native/fa3-deps.sh` into the git-ignored .gpu/fa3/ (never committed). When its
 * SOURCES file is there, native/fa3/fa3_forward.cu is compiled with FA3's own flags into an object
 * (cached under native/build/fa3-<hash>/: FA3's kernel takes minutes to compile) and linked into the
 * CUDA library, which then compiles with -DATELIER_WITH_FA3; otherwise the library builds as without it.
 */
export const FA3_DEPS_DIR = join(NATIVE_DIR, '..', '.gpu', 'fa3');
const FA3_SOURCE = join(NATIVE_DIR, 'fa3', 'fa3_forward.cu');
const FA3_HEADER = join(NATIVE_DIR, 'src', 'fa3_forward.h');

/**
 * hopper/setup.py's nvcc flags for its sm90 files (with the ones PyTorch's CUDAExtension adds to every
 * nvcc call: the __CUDA_NO_HALF* defines, --expt-relaxed-constexpr), and the FLASHATTENTION_DISABLE_*
 * defines it passes for what we do not build: everything but the fp16, head size 64, sm90 forward.
 */
const FA3_FLAGS = [
  '-std=c++17',
  '-O3',
  '-gencode=arch=compute_90a,code=sm_90a',
  '--use_fast_math',
  '--expt-relaxed-constexpr',
  '--expt-extended-lambda',
  '-DCUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED',
  '-DCUTLASS_ENABLE_GDC_FOR_SM90',
  '-DCUTLASS_DEBUG_TRACE_LEVEL=0',
  '-DNDEBUG',
  '-D__CUDA_NO_HALF_OPERATORS__',
  '-D__CUDA_NO_HALF_CONVERSIONS__',
  '-D__CUDA_NO_BFLOAT16_CONVERSIONS__',
  '-D__CUDA_NO_HALF2_OPERATORS__',
  ...[
    'BACKWARD',
    'SPLIT',
    'PAGEDKV',
    'APPENDKV',
    'LOCAL',
    'SOFTCAP',
    'PACKGQA',
    'FP8',
    'VARLEN',
    'CLUSTER',
    'HDIM96',
    'HDIM128',
    'HDIM192',
    'HDIM256',
    'SM8x',
    'HDIMDIFF64',
    'HDIMDIFF192',
    'DROPOUT',
  ].map((what) => `-DFLASHATTENTION_DISABLE_${what}`),
  '-Xcompiler',
  '-fPIC,-fvisibility=hidden',
];

/**
 * The FA3 deps when exported (`native/fa3-deps.sh`): the SOURCES text (their commits) and where the
 * object compiled from them goes, named by the hash of everything that goes into it.
 * @returns {{ version: string, object: string } | undefined}
 */
export function fa3Deps() {
  const sources = join(FA3_DEPS_DIR, 'SOURCES');
  if (!existsSync(sources) || !existsSync(FA3_SOURCE)) return undefined;
  if (!existsSync(join(FA3_DEPS_DIR, 'hopper', 'flash_fwd_launch_template.h'))) return undefined;
  const version = readFileSync(sources, 'utf8');
  const hash = createHash('sha256')
    .update(JSON.stringify({ flags: FA3_FLAGS, version }))
    .update(readFileSync(FA3_SOURCE))
    .update(readFileSync(FA3_HEADER))
    .digest('hex')
    .slice(0, 16);
  return { version, object: join(NATIVE_DIR, 'build', `fa3-${hash}`, 'fa3_forward.o') };
}

/**
 * FA3's object (native/fa3/fa3_forward.cu) for these sources, compiled now unless built; its path, or
 * undefined without the FA3 deps. Also links into bench/gpu/fa3-bench (fa3-build.sh).
 * @param {string} [nvcc]
 */
export function fa3Object(nvcc = findNvcc()) {
  const fa3 = fa3Deps();
  if (!fa3) return undefined;
  if (!nvcc) throw new NativeBuildError('cannot build the FlashAttention-3 object: nvcc not found', '');
  buildFa3Object(nvcc, fa3.object);
  return fa3.object;
}

/** Compiles FA3's object unless built; synchronously (minutes). */
function buildFa3Object(compiler, object) {
  if (existsSync(object)) return;
  const includes = [
    join(NATIVE_DIR, 'src'),
    join(FA3_DEPS_DIR, 'hopper'),
    join(FA3_DEPS_DIR, 'cutlass', 'include'),
  ];
  compileTo(object, 'cuda: FlashAttention-3 object', compiler, (out) => [
    ...FA3_FLAGS,
    ...includes.map((dir) => `-I${dir}`),
    '-c',
    FA3_SOURCE,
    '-o',
    out,
  ]);
}

/**
 * Runs `compiler` with `argsFor(partial)` writing beside `target`, then renames, so a concurrent
 * build or a crash never leaves a half-written file at the target. Throws NativeBuildError with
 * the compiler's output when it fails.
 * @param {string} target @param {string} what @param {string} compiler
 * @param {(partial: string) => string[]} argsFor
 */
function compileTo(target, what, compiler, argsFor) {
  mkdirSync(dirname(target), { recursive: true });
  const partial = `${target}.${process.pid}.partial`;
  try {
    execFileSync(compiler, argsFor(partial), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (error) {
    rmSync(partial, { force: true });
    const e = /** @type {{ stdout?: string, stderr?: string, message: string }} */ (error);
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message;
    throw new NativeBuildError(`${what}: ${compiler} failed`, output);
  }
  renameSync(partial, target);
}

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
  if (kind !== 'cuda') return FLAGS[kind];
  const cudnn = cudnnDeps();
  const fa3 = fa3Deps();
  return [
    ...FLAGS.cuda,
    ...(cudnn ? cudnn.flags : []),
    ...(fa3 ? ['-DATELIER_WITH_FA3'] : []),
    // Only what exports.map names leaves the library when third-party code is linked in.
    ...(fa3 && !cudnn ? ['-Xlinker', `--version-script=${EXPORTS_MAP}`] : []),
  ];
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
  const cudnn = kind === 'cuda' ? cudnnDeps() : undefined;
  const fa3 = kind === 'cuda' ? fa3Deps() : undefined;
  // Without the deps the hash (and so the path) is what it was before they existed.
  const hash = createHash('sha256').update(
    JSON.stringify(
      cudnn || fa3
        ? {
            kind,
            flags: flagsOf(kind),
            ...(cudnn ? { cudnn: cudnn.version } : {}),
            ...(fa3 ? { fa3: fa3.object } : {}),
            exports: readFileSync(EXPORTS_MAP, 'utf8'),
          }
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
  const fa3 = kind === 'cuda' ? fa3Deps() : undefined;
  if (fa3) {
    buildFa3Object(compiler, fa3.object);
    sources.push(fa3.object);
  }
  compileTo(path, kind, compiler, (out) => [
    ...flagsOf(kind),
    `-I${join(NATIVE_DIR, 'include')}`,
    '-o',
    out,
    ...sources,
  ]);
  return { path, built: true };
}
