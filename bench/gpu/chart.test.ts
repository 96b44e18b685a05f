import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { renderChart } from './chart.js';
import { type ChartResults, type ChartRun, chartSvg, legendLayout, NoRunsError } from './chart-svg.js';

/** A run as merge_results.py writes it: denoising time, and a generation's time per image (+0.3 s). */
function run(
  engine: string,
  model: string,
  precision: string,
  seconds: number,
  extra: Partial<ChartRun> = {},
): ChartRun {
  return {
    engine,
    model,
    precision,
    width: 1024,
    height: 1024,
    steps: 28,
    batch: 1,
    denoise_seconds_per_image: seconds,
    seconds_per_image: seconds + 0.3,
    ...extra,
  };
}

// Fabricated numbers, shaped like merge_results.py's output: never real results.
const results: ChartResults = {
  device: 'NVIDIA H100 80GB HBM3',
  driver: '580.65.06',
  ort: '1.29.0',
  date: '2026-11-24',
  runs: [
    run('atelier', 'sd3.5-large', 'fp8', 2.4),
    run('atelier', 'sd3.5-large', 'fp16', 2.6),
    run('pytorch', 'sd3.5-large', 'bf16', 5.3, { mode: 'eager' }),
    run('pytorch', 'sd3.5-large', 'bf16', 3.6, { mode: 'compile' }),
    run('atelier', 'sd3.5-medium', 'fp16', 1.1),
    run('pytorch', 'sd3.5-medium', 'bf16', 2.3, { mode: 'eager' }),
    // Other workloads: not on the default chart.
    run('atelier', 'sd3.5-large', 'fp16', 1.9, { steps: 20 }),
    run('atelier', 'sd3.5-large', 'fp16', 2.2, { batch: 4 }),
  ],
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('chartSvg', () => {
  it('draws one bar per model and engine/precision of the chosen workload, heights proportional to time', () => {
    const chart = chartSvg(results);
    expect(chart.bars.map((b) => `${b.model} ${b.series}`)).toEqual([
      'sd3.5-large Atelier FP8',
      'sd3.5-large Atelier FP16',
      'sd3.5-large PyTorch BF16 eager',
      'sd3.5-large PyTorch BF16 torch.compile',
      'sd3.5-medium Atelier FP16',
      'sd3.5-medium PyTorch BF16 eager',
    ]);
    const [fp8, , eager] = chart.bars;
    expect(eager.height / fp8.height).toBeCloseTo(5.3 / 2.4, 5);
    // The same series keeps its colour in every group.
    expect(chart.bars[4].color).toBe(chart.bars[1].color);
    expect(chart.svg).toContain('NVIDIA H100 80GB HBM3 · driver 580.65.06 · onnxruntime 1.29.0 · 2026-11-24');
    expect(chart.svg).toContain('>5.30<');
    expect(chart.svg).toContain('SD3.5 Large');
  });

  it("charts another workload, or a generation's whole time per image, when asked", () => {
    const chart = chartSvg(results, { steps: 20 });
    expect(chart.bars).toHaveLength(1);
    expect(chart.bars[0].value).toBe(1.9);
    const whole = chartSvg(results, { metric: 'image' });
    expect(whole.bars[0].value).toBeCloseTo(2.7, 10);
    expect(whole.svg).toContain('seconds per image (encode + denoise + decode)');
  });

  it('leaves out runs without a denoising time', () => {
    const chart = chartSvg({
      ...results,
      runs: [
        ...results.runs,
        run('other', 'sd3.5-large', 'fp16', 9, { denoise_seconds_per_image: undefined }),
      ],
    });
    expect(chart.bars.map((b) => b.series)).not.toContain('other FP16');
  });

  it("draws each of Atelier's runtime paths as its own series, the C API first, and no failed run", () => {
    const chart = chartSvg({
      ...results,
      runs: [
        run('atelier', 'sd3.5-large', 'fp16', 2.6, { path: 'stock' }),
        run('atelier', 'sd3.5-large', 'fp16', 2.0, { path: 'capi' }),
        run('atelier', 'sd3.5-large', 'fp8', 0, {
          path: 'capi',
          error: 'capture failed',
          denoise_seconds_per_image: 0,
        }),
        run('pytorch', 'sd3.5-large', 'bf16', 5.3, { mode: 'eager' }),
      ],
    });
    expect(chart.bars.map((b) => `${b.series} ${b.value}`)).toEqual([
      'Atelier FP16 C API 2',
      'Atelier FP16 stock 2.6',
      'PyTorch BF16 eager 5.3',
    ]);
  });

  it("colours ours warm and PyTorch's cool, names weight-only FP8, and lays the legend out without overlaps", () => {
    const chart = chartSvg({
      ...results,
      runs: [
        run('atelier', 'sd3.5-large', 'fp8', 2.2, { path: 'capi' }),
        run('atelier', 'sd3.5-large', 'fp16', 3.5, { path: 'capi' }),
        run('atelier', 'sd3.5-large', 'fp8-weights', 3.7, { path: 'capi' }),
        run('pytorch', 'sd3.5-large', 'fp8', 2.8, { mode: 'compile' }),
        run('pytorch', 'sd3.5-large', 'bf16', 3.5, { mode: 'compile' }),
      ],
    });
    expect(chart.bars.map((b) => b.series)).toEqual([
      'Atelier FP8 C API',
      'Atelier FP16 C API',
      'Atelier weight-only FP8 C API',
      'PyTorch FP8 torch.compile',
      'PyTorch BF16 torch.compile',
    ]);
    const warmth = (hex: string) =>
      Number.parseInt(hex.slice(1, 3), 16) - Number.parseInt(hex.slice(5, 7), 16);
    expect(chart.bars.slice(0, 3).every((b) => warmth(b.color) > 0)).toBe(true);
    expect(chart.bars.slice(3).every((b) => warmth(b.color) <= 0)).toBe(true);
    expect(new Set(chart.bars.map((b) => b.color)).size).toBe(5);

    const items = legendLayout(
      chart.bars.map((b) => b.series),
      80,
      936,
      488,
    );
    expect(new Set(items.map((i) => i.y)).size).toBeGreaterThan(1);
    for (const item of items) expect(item.x + item.width).toBeLessThanOrEqual(936);
    for (const [a, b] of items.slice(0, -1).map((item, i) => [item, items[i + 1]]))
      if (a.y === b.y) expect(a.x + a.width).toBeLessThan(b.x);
  });

  it('refuses a workload the results do not have', () => {
    expect(() => chartSvg(results, { steps: 50 })).toThrow(NoRunsError);
  });

  it('escapes text from the results file', () => {
    const chart = chartSvg({ ...results, device: 'GPU <A&B>' });
    expect(chart.svg).toContain('GPU &lt;A&amp;B&gt;');
  });
});

describe('renderChart', () => {
  it('writes a PNG whose bars are drawn in their series colours', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atelier-chart-'));
    dirs.push(dir);
    const path = join(dir, 'chart.png');
    const chart = await renderChart(results, path);

    const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([chart.width, chart.height]);
    for (const bar of chart.bars) {
      const x = Math.round(bar.x + bar.width / 2);
      const y = Math.round(bar.y + bar.height / 2);
      const at = (y * info.width + x) * info.channels;
      const hex = `#${[0, 1, 2].map((c) => data[at + c].toString(16).padStart(2, '0')).join('')}`;
      expect(hex, `${bar.model} ${bar.series}`).toBe(bar.color);
    }
  });
});
