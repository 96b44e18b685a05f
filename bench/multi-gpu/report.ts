/**
 * The multi-GPU run's tables: one summary row per run (the JSON's `rows`), printed as a text table
 * and as the README's Markdown table. Scaling is each run's images per minute over the same mode's
 * one-GPU run.
 */
import type { BenchResult, RunResult, SummaryRow } from './results.js';

const round = (value: number | null | undefined, digits = 1) =>
  value === null || value === undefined || !Number.isFinite(value) ? null : Number(value.toFixed(digits));

/**
 * The engine that ran, in a few words, from the processes' log lines: the denoising path (the
 * embedded mode logs it; a worker logs its provider) and the fp8 route.
 */
export function engineOf(run: Pick<RunResult, 'engine'>): string {
  const runtime = run.engine.find((line) => line.runtime !== undefined)?.runtime as
    | { path?: string; cudaGraph?: boolean; customOps?: boolean }
    | undefined;
  const fp8 = run.engine.find((line) => line.fp8 !== undefined)?.fp8 as { route?: string } | undefined;
  const provider = run.engine.find((line) => line.provider !== undefined)?.provider;
  const path = runtime?.path
    ? `${runtime.path}${runtime.cudaGraph ? ' + CUDA graphs' : ''}${runtime.customOps ? ' + our ops' : ''}`
    : provider !== undefined
      ? String(provider)
      : '';
  return [path, fp8?.route].filter(Boolean).join(', ');
}

export function summaryRow(run: RunResult, all: readonly RunResult[]): SummaryRow {
  const base = all.find((r) => r.mode === run.mode && r.gpus === 1);
  // The devices this run's processes took memory on (the others are idle or another tenant's).
  const used = run.gpu.devices.filter((d) => d.peakAddedGiB > 0.5);
  const util = used.filter((d) => d.meanUtilPercent !== null);
  const front = run.cpu.roleCores.serve ?? run.cpu.roleCores.gateway;
  return {
    mode: run.mode,
    GPUs: run.gpus,
    'images/min': round(run.rates.imagesPerMinute),
    'steady images/min': round(run.rates.steadyImagesPerMinute),
    scaling:
      base && base.rates.imagesPerMinute > 0
        ? round(run.rates.imagesPerMinute / base.rates.imagesPerMinute, 2)
        : null,
    images: run.rates.images,
    'first image s': round(run.firstImageSeconds),
    'per-user first image mean s': round(run.userFirstImageSeconds?.mean),
    'per-user first image max s': round(run.userFirstImageSeconds?.max),
    's per image (one GPU)': round(run.jobSeconds?.p50, 2),
    fair: run.fairness.ok ? 'yes' : `NO (${run.fairness.violations.length})`,
    'max turns while waiting': run.fairness.maxTurnsWhileWaiting,
    'completion max between': run.completion.maxBetween,
    limits: run.limits.ok ? 'held' : 'NO',
    'peak GiB per GPU': run.gpu.available
      ? used.map((d) => `${d.device}:${round(d.peakAddedGiB)}`).join(' ')
      : null,
    'GPU util %': util.length
      ? round(util.reduce((s, d) => s + d.meanUtilPercent!, 0) / util.length, 0)
      : null,
    'host CPU %': round(run.cpu.hostBusyPercent, 0),
    'host mem GiB': round(run.cpu.hostMemPeakGiB),
    'front cores': round(front, 2),
    'worker cores': round(run.cpu.roleCores.workers, 2),
    'cold start s': round(run.coldStartSeconds),
    'warm-up s': round(run.warmupSeconds),
    engine: engineOf(run),
  };
}

function cell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number') return value.toLocaleString('en-US', { maximumFractionDigits: 2 });
  return value;
}

/** A plain text table for the console. */
export function formatTable(rows: readonly SummaryRow[]): string {
  if (rows.length === 0) return '(no runs)';
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cells = rows.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((line) => line[i]!.length)));
  const line = (values: string[]) =>
    values.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  return [line(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

const README_COLUMNS = [
  'mode',
  'GPUs',
  'images/min',
  'scaling',
  'first image s',
  'per-user first image mean s',
  'per-user first image max s',
  's per image (one GPU)',
  'peak GiB per GPU',
  'GPU util %',
  'host CPU %',
  'fair',
  'limits',
] as const;

/** The README's table: the columns that answer the issue, plus what was skipped and why. */
export function markdownTable(
  result: Pick<BenchResult, 'rows' | 'skipped' | 'machine' | 'measuredAt'>,
): string {
  const gpu = result.machine.gpus[0];
  const head = `${result.machine.gpus.length} × ${gpu?.name ?? 'no GPU'}, ${result.machine.cores} cores, ${result.measuredAt.slice(0, 10)}`;
  const lines = [
    `<!-- ${head} -->`,
    `| ${README_COLUMNS.join(' | ')} |`,
    `| ${README_COLUMNS.map((c, i) => (i < 2 || c === 'fair' || c === 'limits' || c === 'mode' ? '---' : '---:')).join(' | ')} |`,
    ...result.rows.map((row) => `| ${README_COLUMNS.map((c) => cell(row[c])).join(' | ')} |`),
  ];
  for (const s of result.skipped)
    lines.push(`| ${s.mode} | ${s.gpus} | not run: ${s.why} |${' |'.repeat(README_COLUMNS.length - 3)}`);
  return lines.join('\n');
}
