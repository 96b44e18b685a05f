import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // bench/gpu's chart test renders on the CPU; the rest of bench/ are measurements, not tests.
    include: ['test/**/*.test.ts', 'bench/**/*.test.ts'],
    // Native modules (onnxruntime-node, better-sqlite3, sharp) are safest in forked workers.
    pool: 'forks',
    // Chromium and the compilers the tests need: one message naming the packages when one is missing.
    globalSetup: ['test/setup/system-requirements.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Golden and end-to-end tests are CPU-heavy; two cores, two workers.
    maxWorkers: 2,
  },
});
