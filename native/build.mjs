#!/usr/bin/env node
/**
 * npm run build:native: builds our custom-op libraries into native/build/<hash>/, one line per
 * library (its path, or why it was skipped). The CPU library always (g++); the CUDA one (CPU and
 * CUDA kernels) where nvcc is found. A failed compile prints the compiler's output and exits 1.
 */
import { relative } from 'node:path';
import { buildLibrary, findNvcc, NativeBuildError } from './library.mjs';

const shown = (path) => relative(process.cwd(), path) || path;

let failed = false;
for (const kind of /** @type {const} */ (['cpu', 'cuda'])) {
  const nvcc = kind === 'cuda' ? findNvcc() : undefined;
  if (kind === 'cuda' && !nvcc) {
    console.log('cuda: skipped, nvcc not found (looked on PATH, in $CUDA_HOME/bin and /usr/local/cuda/bin)');
    continue;
  }
  try {
    const { path, built } = buildLibrary(kind, { nvcc });
    console.log(`${kind}: ${shown(path)}${built ? '' : ' (up to date)'}`);
  } catch (error) {
    if (!(error instanceof NativeBuildError)) throw error;
    console.error(`${kind}: build failed\n${error.output}`);
    failed = true;
  }
}
process.exitCode = failed ? 1 : 0;
