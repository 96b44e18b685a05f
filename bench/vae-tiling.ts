/**
 * Tiled vs untiled VAE decode of the bundled tiny SD3.5 on the CPU (issue 11): median time of a
 * decode at 512² and 1024², and the process's peak resident memory during it (VmHWM, reset before
 * the decode), each case in a fresh process so one case's ONNX Runtime arena does not hide the
 * next's. The tiny VAE is 32 channels wide (SD3.5's: 128), so the memory is a quarter of the
 * real VAE's per pixel at most; the ratios are what carries over.
 *
 *   npm run bench -- vae-tiling
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadComponents } from '../src/pipeline/sd35/components.js';
import { decodeLatents } from '../src/pipeline/sd35/vae-codec.js';
import { planVaeDecode, type VaeDecodePlan } from '../src/pipeline/sd35/vae-tile-policy.js';
import { tileStarts } from '../src/pipeline/sd35/vae-tiled-decode.js';
import { ensureTinyModel } from '../src/pipeline/tiny/index.js';
import type { BenchRow } from './run.js';

export const name = 'vae-tiling';
export const description = 'bundled tiny SD3.5 on the CPU: tiled vs untiled VAE decode, time and peak memory';

interface Case {
  side: number;
  /** Tile side and overlap in latent pixels; none: untiled. */
  tile?: [number, number];
  session?: 'static' | 'dynamic';
}

interface CaseResult {
  medianMs: number;
  peakMiB: number;
  tiles: number;
  estimateMiB: number;
}

const RUNS = 3;
const CASE_ENV = 'ATELIER_BENCH_VAE_CASE';

function memoryKiB(field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return Number(line?.split(/\s+/)[1] ?? 0);
}

/** One case, in this (child) process. */
async function runCase(dataDir: string, tinyDir: string, checkpoint: string, c: Case): Promise<CaseResult> {
  const components = await loadComponents({
    modelsDir: tinyDir,
    checkpoint,
    dataDir,
    vaeTileSession: c.session,
  });
  const h = c.side / 8;
  const shape: [number, number, number] = [16, h, h];
  const latent = Float32Array.from({ length: 16 * h * h }, (_, i) => Math.sin(i * 0.37) * 0.8);
  const plan: VaeDecodePlan = c.tile
    ? planVaeDecode(components.vaeConfig, [h, h], { mode: 'always', tile: c.tile[0], overlap: c.tile[1] })
    : planVaeDecode(components.vaeConfig, [h, h], { mode: 'never' });
  // The tile session is opened (its graph built) before the measured window, not yet run: the
  // window holds every case's first decode, where ONNX Runtime's arena grows.
  if (plan.tiled) await components.vaeTileDecoder(plan.tile);
  const before = memoryKiB('VmRSS');
  // Linux: writing 5 to clear_refs resets the peak resident size (VmHWM) to the current one.
  writeFileSync('/proc/self/clear_refs', '5');
  const samples: number[] = [];
  for (let i = 0; i < RUNS + 1; i++) {
    const t0 = performance.now();
    await decodeLatents(components, latent, 1, shape, plan);
    if (i > 0) samples.push(performance.now() - t0);
  }
  const peak = memoryKiB('VmHWM');
  await components.release();
  samples.sort((a, b) => a - b);
  const tiles = plan.tiled ? countTiles(h, plan) : 1;
  return {
    medianMs: samples[Math.floor(samples.length / 2)],
    peakMiB: (peak - before) / 1024,
    tiles,
    estimateMiB: (plan.tiled ? plan.tileEstimateBytes : plan.estimateBytes) / 2 ** 20,
  };
}

function countTiles(h: number, plan: Extract<VaeDecodePlan, { tiled: true }>): number {
  return tileStarts(h, plan.tile[0], plan.overlap).length * tileStarts(h, plan.tile[1], plan.overlap).length;
}

export async function run(): Promise<BenchRow[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'atelier-bench-vae-tiling-'));
  try {
    const tiny = await ensureTinyModel(dataDir);
    const cases: Case[] = [
      { side: 512 },
      { side: 512, tile: [32, 8] },
      { side: 1024 },
      // What the policy picks under a budget that holds a 72² tile: 2 × 2 tiles.
      { side: 1024, tile: [72, 16] },
      // ComfyUI's fixed 512-pixel tiles: 3 × 3 at 1024².
      { side: 1024, tile: [64, 16] },
      { side: 1024, tile: [64, 16], session: 'static' },
      { side: 1024, tile: [32, 8] },
    ];
    const rows: BenchRow[] = [];
    for (const c of cases) {
      const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: {
          ...process.env,
          [CASE_ENV]: JSON.stringify({ dataDir, tinyDir: tiny.modelsDir, checkpoint: tiny.checkpoint, c }),
        },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const result = JSON.parse(out.trim().split('\n').at(-1)!) as CaseResult;
      rows.push({
        case: `${c.side}², ${c.tile ? `tiled ${c.tile[0]}/${c.tile[1]} (${c.session ?? 'dynamic'})` : 'untiled'}`,
        tiles: result.tiles,
        'median ms': result.medianMs,
        'peak +MiB (RSS)': result.peakMiB,
        'estimate MiB': result.estimateMiB,
      });
    }
    return rows;
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const asked = process.env[CASE_ENV];
if (asked) {
  const { dataDir, tinyDir, checkpoint, c } = JSON.parse(asked) as {
    dataDir: string;
    tinyDir: string;
    checkpoint: string;
    c: Case;
  };
  const result = await runCase(dataDir, tinyDir, checkpoint, c);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
