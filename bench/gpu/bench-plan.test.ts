import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  checkpointFor,
  groupLoads,
  LoadCosts,
  MODELS,
  type PlanOptions,
  planWorkloads,
} from './bench-plan.js';
import { PingMonitor, percentile } from './monitors.js';

const issue9: PlanOptions = {
  configs: ['large:fp8', 'large:fp16', 'medium:fp8', 'medium:fp16'],
  steps: [28],
  batches: [1],
  size: 1024,
  turbo: ['fp16'],
  turboSteps: 4,
  small: ['medium:fp16'],
  smallSize: 512,
  smallSteps: 28,
};

describe('atelier-bench plan', () => {
  it('loads each weights × precision once per path, stock then capi, most important first', () => {
    const loads = groupLoads(planWorkloads(issue9), ['stock', 'capi']);
    expect(loads.map((l) => `${l.weights}:${l.precision}:${l.path}`)).toEqual([
      'large:fp8:stock',
      'large:fp8:capi',
      'large:fp16:stock',
      'large:fp16:capi',
      'medium:fp8:stock',
      'medium:fp8:capi',
      'medium:fp16:stock',
      'medium:fp16:capi',
    ]);
    // Turbo rides on the Large fp16 load (same files), 4 steps without CFG; 512² on Medium fp16.
    expect(loads[2].rows.map((r) => [r.model, r.size, r.steps, r.guidance])).toEqual([
      ['large', 1024, 28, 4.5],
      ['turbo', 1024, 4, 0],
    ]);
    expect(loads[7].rows.map((r) => [r.model, r.size, r.priority])).toEqual([
      ['medium', 1024, 3],
      ['medium', 512, 5],
    ]);
  });

  it('keeps batch 4 and 20 steps only when asked, and refuses unknown configs', () => {
    const rows = planWorkloads({ ...issue9, configs: ['large:fp16'], steps: [28, 20], batches: [1, 4] });
    expect(rows.filter((r) => r.model === 'large').map((r) => `${r.batch}×${r.steps}`)).toEqual([
      '1×28',
      '1×20',
      '4×28',
      '4×20',
    ]);
    expect(() => planWorkloads({ ...issue9, configs: ['large:bf16'] })).toThrow(/unknown config/);
  });

  it("takes the product's precisions, fp8-weights apart from fp8 on the same fp8 files, and --precision for bare models", () => {
    const rows = planWorkloads({
      ...issue9,
      configs: ['large', 'large:fp8-weights'],
      precision: 'fp8',
      turbo: [],
      small: ['medium'],
    });
    expect(rows.map((r) => `${r.model}:${r.precision}:${r.size}`)).toEqual([
      'large:fp8:1024',
      'large:fp8-weights:1024',
      'medium:fp8:512',
    ]);
    expect(groupLoads(rows, ['capi']).map((l) => `${l.weights}:${l.precision}`)).toEqual([
      'large:fp8',
      'large:fp8-weights',
      'medium:fp8',
    ]);
    expect(checkpointFor(MODELS.large, 'fp8-weights')).toBe(checkpointFor(MODELS.large, 'fp8'));
    expect(checkpointFor(MODELS.large, 'fp16')).toBe('sd3.5_large.safetensors');
    expect(() => planWorkloads({ ...issue9, configs: ['large'] })).toThrow(/--precision/);
  });

  it('keeps time for later loads holding more important rows than an early, less important one', () => {
    const loads = groupLoads(planWorkloads(issue9), ['stock', 'capi']);
    const costs = new LoadCosts({ large: 50_000, medium: 20_000 });
    const turbo = loads[2].rows[1];
    // Before Turbo (priority 4) on large:fp16:stock: its capi twin (rows 1 and 4) and all 4 Medium loads.
    expect(costs.reserveMs(loads, 2, turbo.priority)).toBe(50_000 + 4 * 20_000);
    // A measured load stands for the others of its weights and path (Medium fp8 ≈ fp16 to load).
    costs.record(loads[4], 5_000);
    expect(costs.reserveMs(loads, 2, turbo.priority)).toBe(50_000 + 2 * 5_000 + 2 * 20_000);
    // The most important row of a load waits for nothing after it.
    expect(costs.reserveMs(loads, 0, 0)).toBe(0);
  });

  it('takes nearest-rank percentiles', () => {
    const samples = Array.from({ length: 200 }, (_, i) => 200 - i);
    expect(percentile(samples, 50)).toBe(100);
    expect(percentile(samples, 99)).toBe(198);
    expect(percentile([7], 99)).toBe(7);
  });
});

describe('PingMonitor', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('pings on a fixed beat whatever is outstanding, and keeps the pings sent in a window', async () => {
    vi.useFakeTimers();
    const waiting: ((ms: number) => void)[] = [];
    const monitor = new PingMonitor(() => new Promise<number>((resolve) => waiting.push(resolve)), 5);
    const t0 = performance.now();
    monitor.start();
    await vi.advanceTimersByTimeAsync(50);
    // A blocked child answers nothing, yet the pings keep going out.
    expect(waiting).toHaveLength(10);
    waiting.forEach((answer, i) => {
      answer(50 - 5 * (i + 1));
    });
    await monitor.stop();
    expect(monitor.stats()).toEqual({ count: 10, p50: 20, p99: 45, max: 45 });
    // Pings 3..6 were sent between 15 and 30 ms.
    expect(monitor.stats(t0 + 15, t0 + 30)).toEqual({ count: 4, p50: 25, p99: 35, max: 35 });
    expect(monitor.stats(t0 + 100, t0 + 200)).toBeUndefined();
  });
});
