// Bundles what runs on the GPU machine into .gpu/bundle/ (git-ignored): the benchmark and check
// entry points, the pipeline child process and the SD3.5 module it loads, plus what cannot be
// bundled: koffi (a native module: its JavaScript and the linux-x64 glibc binary only, under
// .gpu/bundle/node_modules so `import 'koffi'` resolves from the bundle's own folder; the GPU
// machine's node_modules holds onnxruntime-node alone) and our CUDA custom-op library, built from
// native/ when nvcc is here (with atelier:Fp8Attention's cuDNN path when `node native/cudnn-deps.mjs`
// has unpacked cuDNN's headers into .gpu/cudnn/, and with atelier:FlashAttention's FlashAttention-3
// kernel when `bash native/fa3-deps.sh` has exported its sources into .gpu/fa3/; the custom-op line
// says which). onnxruntime-node
// stays external: the GPU machine's runtime (../shared/gpu recipe) provides it with CUDA. With nvcc
// it also compiles the GEMM microbenchmark gemm-overlap (issue 10). Prints the
// sizes of what each device call carries (64 MiB limit).
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import {
  buildLibrary,
  CUDA_CODE_FLAGS,
  cudnnDeps,
  fa3Deps,
  findNvcc,
  NativeBuildError,
} from '../../native/library.mjs';
import { bytes, copyKoffi, MIB, NODE_ESM, reportCarry } from './bundle-parts.mjs';

const OUT = '.gpu/bundle';

// Hashed chunk names change with every edit: start clean so stale chunks don't travel.
rmSync(OUT, { recursive: true, force: true });
await build({
  entryPoints: {
    'atelier-bench': 'bench/gpu/atelier-bench.ts',
    'capi-check': 'bench/gpu/capi-check.ts',
    'cuda-check': 'bench/gpu/cuda-check.ts',
    'quality-bench': 'bench/gpu/quality-bench.ts',
    // Issue 15: several models resident, switching, LoRA merge + load.
    'models-bench': 'bench/gpu/models-bench.ts',
    // The child's pipeline module for atelier-bench: the engine plus its arenas' counters (issue 11).
    'memory-pipeline': 'bench/gpu/memory-pipeline.ts',
    child: 'src/pipeline/process/child.ts',
    sd35: 'src/pipeline/sd35/index.ts',
    // The LoRA merge's worker threads, started from beside the bundle's code (merge-kernel.ts).
    'merge-worker': 'src/pipeline/lora/merge-worker.ts',
  },
  ...NODE_ESM,
  outdir: OUT,
  // Chunks beside the entries: the pipeline host finds child.js next to its own code.
  chunkNames: '[name]-[hash]',
  external: ['onnxruntime-node', 'sharp', 'koffi'],
});

copyKoffi(OUT);

// The CUDA custom-op library, as `npm run build:native` builds it (cached by source hash).
let ops = 'not built: nvcc not found';
const nvcc = findNvcc();
if (nvcc) {
  try {
    const { path } = buildLibrary('cuda', { nvcc });
    copyFileSync(path, join(OUT, 'libatelier_ops_cuda.so'));
    const deps = cudnnDeps();
    const cudnn = deps
      ? `with cuDNN FP8 attention (${deps.version.trim().split('\n').join('; ')}; libcudnn.so.9 opened at run time)`
      : 'WITHOUT cuDNN: Fp8Attention cannot run on the GPU (node native/cudnn-deps.mjs, then bundle again)';
    const fa3 = fa3Deps();
    const flash = fa3
      ? `with FlashAttention-3 (${fa3.version.trim().split('\n').join('; ')})`
      : 'WITHOUT FlashAttention-3: attention stays on MultiHeadAttention (bash native/fa3-deps.sh, then bundle again)';
    ops = `${path} → ${OUT}/libatelier_ops_cuda.so, ${cudnn}, ${flash}`;
  } catch (error) {
    if (!(error instanceof NativeBuildError)) throw error;
    ops = `BUILD FAILED, not bundled:\n${error.output}`;
    // The bundle is still written (capi-check then skips the op checks), but say so in the exit code.
    process.exitCode = 1;
  }
}

// Issue 10's GEMM microbenchmark (bench/gpu/gemm-overlap.cu) over our Fp8Linear CUDA code: a plain
// executable with the op library's code flags, the CUDA runtime from the GPU machine's install.
let gemmBench = 'not built: nvcc not found';
if (nvcc) {
  const includes = ['-Inative/include', '-Inative/src', '-DATELIER_WITH_CUDA'];
  const sources = ['bench/gpu/gemm-overlap.cu', 'native/src/fp8_linear_cuda.cu'];
  try {
    execFileSync(
      nvcc,
      [...CUDA_CODE_FLAGS, ...includes, ...sources, '-o', join(OUT, 'gemm-overlap'), '-ldl'],
      {
        stdio: 'pipe',
      },
    );
    gemmBench = `${OUT}/gemm-overlap`;
  } catch (error) {
    gemmBench = `BUILD FAILED, not bundled:\n${error.stderr ?? error.message}`;
    process.exitCode = 1;
  }
}

// Node resolves koffi from the bundle's folder, as it will on the GPU machine, both ways.
const probe =
  "const k = await import('koffi'); (await import('node:module')).createRequire(process.cwd() + '/x.js')('koffi'); if (!k.default.sizeof('void*')) process.exit(1);";
execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: OUT });

const CALL_2 = ['.gpu/runtime-b.tar.xz', '.gpu/device-env.sh', '.gpu/bundle', '.gpu/tokenizers'];
const sets = {
  'call 1 (gpu-call-1.sh)': ['.gpu/runtime-a.tar.xz', '.gpu/device-env.sh', '.gpu/ref'],
  'call 2 (gpu-call-2.sh)': CALL_2,
  'smoke A (node)': ['.gpu/runtime-a.tar.xz', '.gpu/device-env.sh'],
  'smoke B (gpu-smoke.sh)': CALL_2,
  'quality (gpu-quality.sh)': CALL_2,
  'memory (gpu-memory.sh)': CALL_2,
  'memory, mixed jobs (gpu-memory-mixed.sh)': CALL_2,
};
console.log(`bundled into ${OUT}: ${(bytes(OUT) / MIB).toFixed(1)} MiB`);
console.log(`custom-op library: ${ops}`);
console.log(`GEMM microbenchmark: ${gemmBench}`);
reportCarry(sets);
