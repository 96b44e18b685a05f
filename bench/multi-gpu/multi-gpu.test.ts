/**
 * The multi-GPU run (issue 16) on this machine's CPU: the analysis on made-up timelines, the
 * monitors' parsers, and the whole driver end to end with the bundled tiny model on 1 and 2 CPU
 * "devices" (embedded) and a gateway with 2 workers over a real redis-server, so the GPU run only
 * changes flags (bench/multi-gpu/gpu-multi.sh).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  checkRoundRobin,
  completionOrder,
  maxOutstandingPerUser,
  rates,
  type StoredJobRow,
  summarize,
} from './analysis.js';
import { parseGpuLine, parseHostCpu, parseMeminfoUsed, parseProcStat, reportGpus } from './monitor.js';
import { DEFAULTS, parseRuns, runBenchmark } from './multi-gpu.js';
import { redisAvailable } from './product.js';
import { engineOf, markdownTable } from './report.js';
import type { BenchResult } from './results.js';

let seq = 0;
function job(
  user: string,
  createdAt: number,
  startedAt: number | null,
  finishedAt: number | null = null,
): StoredJobRow {
  seq++;
  return {
    id: `j${seq}`,
    seq,
    user,
    state: finishedAt === null ? 'queued' : 'done',
    createdAt,
    startedAt,
    finishedAt,
  };
}

/** Jobs created at `created` (user → count), started one at a time in `order`, 10 ms apart from t = 100. */
function timeline(created: Record<string, number>, order: string[]): StoredJobRow[] {
  const rows: StoredJobRow[] = [];
  let t = 0;
  for (const [user, count] of Object.entries(created))
    for (let i = 0; i < count; i++) rows.push(job(user, t++, null));
  order.forEach((user, i) => {
    const next = rows.find((r) => r.user === user && r.startedAt === null)!;
    next.startedAt = 100 + 10 * i;
    next.finishedAt = next.startedAt + 9;
  });
  return rows;
}

describe('the round-robin check', () => {
  it('passes the order the fair queue promises', () => {
    const report = checkRoundRobin(
      timeline({ a: 4, b: 2, c: 3 }, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'c', 'a']),
    );
    expect(report.ok).toBe(true);
    expect(report.dispatches).toBe(9);
    expect(report.maxTurnsWhileWaiting).toBe(1);
  });

  it('names the user who should have gone first', () => {
    const report = checkRoundRobin(timeline({ a: 3, b: 2 }, ['a', 'a', 'b', 'b', 'a']));
    expect(report.ok).toBe(false);
    expect(report.violations[0]).toMatchObject({ index: 1, started: 'a', expected: 'b' });
    expect(report.maxTurnsWhileWaiting).toBe(2);
  });

  it('takes jobs that started in the same millisecond in the order the rule prefers', () => {
    const rows = [job('b', 0, 50, 60), job('a', 1, 50, 60), job('c', 2, 50, 60), job('a', 3, 60, 70)];
    const report = checkRoundRobin(rows);
    expect(report.ok).toBe(true);
    expect(report.startOrder).toEqual(['b', 'a', 'c', 'a']);
  });

  it('does not hold a job created within the tolerance against a dispatch', () => {
    // b's job arrives 1 ms before a's second job starts: it may not have been queued yet.
    const rows = [job('a', 0, 10, 20), job('a', 1, 20, 30), job('b', 19, 30, 40)];
    expect(checkRoundRobin(rows).ok).toBe(true);
    // 5 ms before: it was waiting, and b (never served) came before a.
    const late = [job('a', 0, 10, 20), job('a', 1, 20, 30), job('b', 15, 30, 40)];
    expect(checkRoundRobin(late).violations).toHaveLength(1);
  });

  it('puts a returning user by when it was last served, and skips jobs cancelled before', () => {
    const rows = [
      job('a', 0, 10, 11),
      job('b', 1, 20, 21),
      // a comes back while b and c wait: c (never served) first, then a (served before b), then b.
      job('b', 2, 40, 41),
      job('c', 3, 30, 31),
      job('a', 25, 35, 36),
      // Cancelled while waiting: never a candidate after it left.
      { ...job('d', 4, null), state: 'cancelled', finishedAt: 5 },
    ];
    const report = checkRoundRobin(rows);
    expect(report.startOrder).toEqual(['a', 'b', 'c', 'a', 'b']);
    expect(report.ok).toBe(true);
  });
});

describe('the other readings', () => {
  it('completion order: one turn each under round robin', () => {
    expect(completionOrder(['a', 'b', 'c', 'a', 'b', 'c'], 3)).toMatchObject({
      maxBetween: 1,
      fullRounds: 2,
      rounds: 2,
    });
    expect(completionOrder(['a', 'b', 'b', 'a', 'c', 'a'], 3)).toMatchObject({
      maxBetween: 2,
      fullRounds: 0,
    });
  });

  it('the most jobs a user had at once, a job that left in the same ms counted out first', () => {
    const rows = [job('a', 0, 1, 10), job('a', 1, 10, 20), job('a', 10, 20, 30), job('b', 0, 5, 6)];
    expect(maxOutstandingPerUser(rows)).toEqual({ a: 2, b: 1 });
  });

  it('rates over the window and between its first and last result', () => {
    const report = rates([1000, 5000, 31_000, 61_000, 70_000], 1000, 60_000);
    expect(report.images).toBe(4);
    expect(report.imagesPerMinute).toBe(4);
    expect(report.steadyImagesPerMinute).toBe(3);
    expect(summarize([3, 1, 2])).toEqual({ n: 3, mean: 2, p50: 2, max: 3 });
  });

  it('reads nvidia-smi and /proc', () => {
    expect(parseGpuLine('1, 30652, 97', 5)).toEqual({ t: 5, device: 1, usedMiB: 30652, utilPercent: 97 });
    expect(parseGpuLine('[N/A]', 5)).toBeUndefined();
    const samples = [
      { t: 0, device: 0, usedMiB: 500, utilPercent: 0 },
      { t: 0, device: 1, usedMiB: 400, utilPercent: 0 },
      { t: 20, device: 0, usedMiB: 31_220, utilPercent: 90 },
      { t: 30, device: 0, usedMiB: 30_000, utilPercent: 100 },
      { t: 30, device: 1, usedMiB: 420, utilPercent: 0 },
    ];
    const [d0, d1] = reportGpus(samples, 10, 40, [25, 40]);
    expect(d0).toMatchObject({ device: 0, peakAddedGiB: 30_720 / 1024, meanUtilPercent: 100 });
    expect(d1!.peakAddedGiB).toBeCloseTo(20 / 1024);
    const stat = parseProcStat(
      '4242 (node (worker) 1) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 11 0 900 1000000 2560 1',
    );
    expect(stat).toEqual({ pid: 4242, ppid: 17, name: 'node (worker) 1', ticks: 300, rssPages: 2560 });
    expect(parseMeminfoUsed('MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    400 kB\n')).toBe(
      600 * 1024,
    );
    expect(parseHostCpu('cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1')).toEqual({ busy: 150, total: 1000 });
  });

  it('parses --runs and names the engine from the log lines', () => {
    expect(parseRuns('embedded:1, cluster:4')).toEqual([
      { mode: 'embedded', gpus: 1 },
      { mode: 'cluster', gpus: 4 },
    ]);
    expect(() => parseRuns('threads:2')).toThrow(/mode:gpus/);
    expect(
      engineOf({
        engine: [
          { role: 'serve', msg: 'model loaded', runtime: { path: 'capi', cudaGraph: true, customOps: true } },
          { role: 'serve', msg: 'fp8: W8A8', fp8: { route: 'w8a8' } },
        ],
      }),
    ).toBe('capi + CUDA graphs + our ops, w8a8');
  });
});

describe('the whole run on the CPU (tiny model)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-multi-gpu-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cluster = redisAvailable();

  it(`keeps 8 users × 4 jobs queued in both modes and finds the scheduler fair and the limits held${cluster ? '' : ' (no redis-server: embedded only)'}`, async () => {
    const out = join(dir, 'multi-gpu.json');
    const markdown = join(dir, 'table.md');
    const result = await runBenchmark({
      ...DEFAULTS,
      runs: [
        { mode: 'embedded', gpus: 1 },
        { mode: 'embedded', gpus: 2 },
        ...(cluster ? [{ mode: 'cluster' as const, gpus: 2 }] : []),
      ],
      jobs: 10,
      steps: 2,
      warmupSteps: 1,
      // One thread per pipeline on this 2-core machine.
      env: { ATELIER_MODELS__CPU_THREADS: '1' },
      workDir: join(dir, 'work'),
      out,
      markdown,
      log: () => {},
    });
    expect(result.skipped).toEqual([]);
    expect(result.runs.map((r) => `${r.mode}:${r.gpus}`)).toEqual([
      'embedded:1',
      'embedded:2',
      ...(cluster ? ['cluster:2'] : []),
    ]);
    for (const run of result.runs) {
      expect(run.rates.images).toBeGreaterThanOrEqual(10);
      expect(run.fairness.violations).toEqual([]);
      expect(run.fairness.maxTurnsWhileWaiting).toBe(1);
      expect(run.completion.maxBetween).toBeLessThanOrEqual(2);
      expect(run.limits).toMatchObject({
        ok: true,
        queueCap: { probes: 8, refused: 8 },
        rateLimit: { refused: true, cancelled: 2 },
        loadRefusals: 0,
        maxOutstanding: 4,
        failed: 0,
        wrongSize: 0,
      });
      expect(run.userFirstImageSeconds!.n).toBe(8);
      // No nvidia-smi here: no GPU readings, and nothing claimed about them.
      expect(run.gpu).toMatchObject({ available: false, devices: [], usedAsExpected: null });
      expect(run.errors).toEqual([]);
    }
    expect(result.rows[0]).toMatchObject({
      mode: 'embedded',
      GPUs: 1,
      scaling: 1,
      fair: 'yes',
      limits: 'held',
    });
    const written = JSON.parse(readFileSync(out, 'utf8')) as BenchResult;
    expect(written.runs).toHaveLength(result.runs.length);
    expect(readFileSync(markdown, 'utf8')).toContain('| embedded | 2 |');
    expect(markdownTable(result)).toContain('| mode | GPUs | images/min | scaling |');
    expect(existsSync(join(dir, 'work'))).toBe(true);
  }, 420_000);
});
