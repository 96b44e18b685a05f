import { defineConfig } from 'vitest/config';

// The GPU benchmark's own tests (the chart renderer); the root config collects test/ only.
//   npx vitest run --config bench/gpu/vitest.config.ts
export default defineConfig({
  test: {
    include: ['bench/gpu/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
  },
});
