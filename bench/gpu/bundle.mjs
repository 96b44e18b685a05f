// Bundles what runs on the GPU machine into .gpu/bundle/ (git-ignored): the benchmark and CUDA
// check entry points, the pipeline child process and the SD3.5 module it loads. onnxruntime-node
// stays external: the GPU machine's runtime (../shared/gpu recipe) provides it with CUDA.
import { build } from 'esbuild';

await build({
  entryPoints: {
    'atelier-bench': 'bench/gpu/atelier-bench.ts',
    'cuda-check': 'bench/gpu/cuda-check.ts',
    child: 'src/pipeline/process/child.ts',
    sd35: 'src/pipeline/sd35/index.ts',
  },
  outdir: '.gpu/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Chunks beside the entries: the pipeline host finds child.js next to its own code.
  chunkNames: '[name]-[hash]',
  external: ['onnxruntime-node', 'sharp'],
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
console.log('bundled into .gpu/bundle');
