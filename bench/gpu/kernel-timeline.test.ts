/**
 * bench/gpu/kernel_timeline.py (where the GPU idles between kernels, from kernel-times.c's timeline)
 * on a timeline written here: busy time as the union of overlapping kernels, idle split at --long-us,
 * the longest gap and the kernels around it, the idle before each kind of kernel, and --from-name.
 * Needs python3.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'atelier-timeline-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FA3 = '_ZN7cutlass13device_kernelIN5flash11enable_sm90INS1_16FlashAttnFwdSm90';
const GEMM = 'nvjet_sm90_qqhsh_128x128_128x6_2x1_v_bz_ovscale_bias_TNT';
const ADALN =
  '_ZN7atelier46_GLOBAL__N__74075793_13_adaln_cuda_cu_a73090a321adaln_modulate_kernelI6__halfLi8E';

function run(rows: [number, number, string][], ...args: string[]) {
  return runText(`start,end,name\n${rows.map(([s, e, n]) => `${s},${e},"${n}"`).join('\n')}\n`, ...args);
}

function runText(text: string, ...args: string[]) {
  const csv = join(dir, `t${Math.random().toString(36).slice(2)}.csv`);
  writeFileSync(csv, text);
  const json = `${csv}.json`;
  const r = spawnSync(
    'python3',
    [join(import.meta.dirname, 'kernel_timeline.py'), csv, '--json', json, ...args],
    {
      encoding: 'utf8',
    },
  );
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(readFileSync(json, 'utf8'));
}

it('counts overlapping kernels once and splits the idle into long and short gaps', () => {
  const r = run([
    [1000, 2000, FA3],
    [2500, 3000, GEMM],
    [2800, 3500, GEMM], // overlaps the one before: 500 ns of it is new busy time
    [103_500, 104_000, ADALN],
  ]);
  expect(r).toMatchObject({
    kernels: 4,
    busy_ns: 2500,
    idle_ns: 100_500,
    idle_long_ns: 100_000,
    idle_short_ns: 500,
  });
  expect(r.longest[0]).toEqual({
    ns: 100_000,
    after: 'nvjet_sm90_qqhsh_128x128_128x6_2x1_v_bz_ovscale_bias',
    before: 'atelier:adaln_modulate_kernel',
  });
  expect(r.idle_before.map((e: { kernel: string }) => e.kernel)).toEqual([
    'atelier:adaln_modulate_kernel',
    'nvjet_sm90_qqhsh_128x128_128x6_2x1_v_bz_ovscale_bias',
  ]);
});

it('starts the window at the first kernel named like --from-name', () => {
  const r = run(
    [
      [0, 100, ADALN],
      [900_000, 901_000, FA3],
      [901_100, 901_200, GEMM],
    ],
    '--from-name',
    'FlashAttnFwdSm90',
  );
  expect(r).toMatchObject({ kernels: 2, busy_ns: 1100, idle_ns: 100, idle_long_ns: 0 });
  expect(r.longest[0].after).toBe('FlashAttention-3');
});

it('skips a torn line (two writers once interleaved) and reads the rest', () => {
  const r = runText(`start,end,name\n1000,2000,"${FA3}"\nalignment_kernelIffLi1E"\n2100,2600,"${GEMM}"\n`);
  expect(r).toMatchObject({ kernels: 2, busy_ns: 1500, idle_ns: 100 });
});
