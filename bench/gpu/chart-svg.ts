/**
 * The README's performance chart as SVG: denoising seconds per image, grouped by model, one bar per
 * engine and precision (ours in FP8 and FP16 on each runtime path, PyTorch eager and torch.compile), from a
 * `bench/results/gpu-<date>.json` written by merge_results.py. Pure: chart.ts renders it to PNG.
 */

export interface ChartRun {
  engine: string;
  model: string;
  precision: string;
  mode?: string;
  /** Atelier's runtime path (`capi` or `stock`); absent in results from before the C-API path. */
  path?: string;
  /** A failed run (atelier-bench keeps it in the results): never charted. */
  error?: string;
  width: number;
  height: number;
  steps: number;
  batch: number;
  /** A generation's time per image: text encoding, denoising and VAE decode. */
  seconds_per_image: number;
  /** Denoising only (added to every run by merge_results.py where the engine reported it). */
  denoise_seconds_per_image?: number;
}

export interface ChartResults {
  device?: string;
  driver?: string;
  ort?: string;
  date?: string;
  runs: ChartRun[];
}

export interface ChartOptions {
  /** @default 28 */
  steps?: number;
  /** @default 1 */
  batch?: number;
  /** @default 1024 */
  width?: number;
  /** @default 1024 */
  height?: number;
  /**
   * `denoise`: denoising seconds per image (the targets); `image`: seconds_per_image.
   * @default 'denoise'
   */
  metric?: 'denoise' | 'image';
}

export interface Bar {
  model: string;
  series: string;
  value: number;
  color: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Chart {
  svg: string;
  width: number;
  height: number;
  bars: Bar[];
}

/** Thrown when the results hold no run for the requested workload. */
export class NoRunsError extends Error {
  constructor(readonly options: Required<ChartOptions>) {
    super(
      `no runs with ${options.metric === 'denoise' ? 'a denoising time' : 'seconds per image'} at ` +
        `${options.width}×${options.height}, ${options.steps} steps, batch ${options.batch} in the results`,
    );
    this.name = 'NoRunsError';
  }
}

const SIZE = { width: 960, height: 540 };
const PLOT = { left: 80, right: 24, top: 92, bottom: 110 };
// Ours in warm colours, PyTorch in cool ones, in series order within each; the same series keeps its
// colour in every group.
const WARM = ['#d95f02', '#f2a541', '#a6611a', '#e7298a'];
const COOL = ['#4c72b0', '#7fa7d9', '#8c8c8c', '#b07aa1', '#1b9e77'];
// Legend text width at font-size 13 (DejaVu Sans averages ≈ 7.4 px a character), for laying it out.
const LEGEND_CHAR_PX = 7.4;
const MODEL_ORDER = ['sd3.5-large', 'sd3.5-medium'];

function seriesName(run: ChartRun): string {
  const engine = run.engine === 'atelier' ? 'Atelier' : run.engine === 'pytorch' ? 'PyTorch' : run.engine;
  const mode = run.mode ? ` ${run.mode.startsWith('compile') ? 'torch.compile' : run.mode}` : '';
  const path = run.path ? ` ${run.path === 'capi' ? 'C API' : run.path}` : '';
  const precision = run.precision === 'fp8-weights' ? 'weight-only FP8' : run.precision.toUpperCase();
  return `${engine} ${precision}${mode}${path}`;
}

function seriesRank(run: ChartRun): number {
  const engine = run.engine === 'atelier' ? (run.path === 'capi' ? 0 : 1) : run.engine === 'pytorch' ? 2 : 4;
  const precision = ['fp8', 'fp16', 'bf16'].indexOf(run.precision);
  const compiled = run.mode?.startsWith('compile') ? 1 : 0;
  return engine * 100 + compiled * 10 + (precision < 0 ? 9 : precision);
}

/** Each series' colour: ours from WARM, PyTorch's and others' from COOL, in series order. */
function seriesColors(runs: ChartRun[]): string[] {
  let warm = 0;
  let cool = 0;
  return runs.map((r) => (r.engine === 'atelier' ? WARM[warm++ % WARM.length] : COOL[cool++ % COOL.length]));
}

export interface LegendItem {
  name: string;
  index: number;
  x: number;
  y: number;
  /** The swatch and the text, as laid out. */
  width: number;
}

/** The legend flowed left to right from (left, top), a new row of 20 px when an entry would pass right. */
export function legendLayout(names: string[], left: number, right: number, top: number): LegendItem[] {
  const items: LegendItem[] = [];
  let x = left;
  let y = top;
  names.forEach((name, index) => {
    const width = 20 + name.length * LEGEND_CHAR_PX;
    if (x > left && x + width > right) {
      x = left;
      y += 20;
    }
    items.push({ name, index, x, y, width });
    x += width + 24;
  });
  return items;
}

function modelLabel(model: string): string {
  return model.replace(/^sd3\.5-(\w)/, (_, c: string) => `SD3.5 ${c.toUpperCase()}`);
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A round axis maximum and step: 1, 2 or 5 times a power of ten, 4–8 ticks. */
function axis(max: number): { top: number; step: number } {
  const raw = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  return { top: Math.ceil(max / step) * step, step };
}

export function chartSvg(results: ChartResults, options: ChartOptions = {}): Chart {
  const want: Required<ChartOptions> = {
    steps: 28,
    batch: 1,
    width: 1024,
    height: 1024,
    metric: 'denoise',
    ...options,
  };
  const metricOf = (r: ChartRun) =>
    want.metric === 'denoise' ? r.denoise_seconds_per_image : r.seconds_per_image;
  const runs = results.runs.filter(
    (r) =>
      r.steps === want.steps &&
      r.batch === want.batch &&
      r.width === want.width &&
      r.height === want.height &&
      !r.error &&
      typeof metricOf(r) === 'number',
  );
  if (runs.length === 0) throw new NoRunsError(want);

  const seriesRuns = [...new Map(runs.map((r) => [seriesName(r), r])).values()].sort(
    (a, b) => seriesRank(a) - seriesRank(b),
  );
  const series = seriesRuns.map(seriesName);
  const colors = seriesColors(seriesRuns);
  const models = [...new Set(runs.map((r) => r.model))].sort(
    (a, b) => (MODEL_ORDER.indexOf(a) + 1 || 99) - (MODEL_ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b),
  );
  const { top, step } = axis(Math.max(...runs.map((r) => metricOf(r) as number)));
  const plotWidth = SIZE.width - PLOT.left - PLOT.right;
  const plotHeight = SIZE.height - PLOT.top - PLOT.bottom;
  const yOf = (v: number) => PLOT.top + plotHeight * (1 - v / top);
  const groupWidth = plotWidth / models.length;
  const barWidth = Math.min(72, (groupWidth * 0.8) / series.length);

  const parts: string[] = [];
  const workload = `${want.width}×${want.height}, ${want.steps} steps, CFG, batch ${want.batch}`;
  const title =
    want.metric === 'denoise'
      ? `SD3.5 denoising at ${workload}: seconds per image`
      : `SD3.5 at ${workload}: seconds per image (encode + denoise + decode)`;
  const subtitle = [
    results.device,
    results.driver && `driver ${results.driver}`,
    results.ort && `onnxruntime ${results.ort}`,
  ]
    .filter(Boolean)
    .concat(results.date ? [results.date] : [], ['lower is better'])
    .join(' · ');
  parts.push(`<rect width="${SIZE.width}" height="${SIZE.height}" fill="#ffffff"/>`);
  parts.push(
    `<text x="${PLOT.left}" y="36" font-size="20" font-weight="bold" fill="#222">${escapeXml(title)}</text>`,
  );
  parts.push(`<text x="${PLOT.left}" y="62" font-size="14" fill="#555">${escapeXml(subtitle)}</text>`);
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = yOf(v);
    parts.push(
      `<line x1="${PLOT.left}" x2="${SIZE.width - PLOT.right}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`,
    );
    const label = Number(v.toPrecision(6)).toString();
    parts.push(
      `<text x="${PLOT.left - 8}" y="${y + 4}" font-size="12" text-anchor="end" fill="#555">${label} s</text>`,
    );
  }

  const bars: Bar[] = [];
  models.forEach((model, g) => {
    const center = PLOT.left + groupWidth * (g + 0.5);
    const first = center - (barWidth * series.length) / 2;
    series.forEach((name, s) => {
      const run = runs.find((r) => r.model === model && seriesName(r) === name);
      if (!run) return;
      const value = metricOf(run) as number;
      const y = yOf(value);
      const bar = {
        model,
        series: name,
        value,
        color: colors[s],
        x: first + s * barWidth + 2,
        y,
        width: barWidth - 4,
        height: PLOT.top + plotHeight - y,
      };
      bars.push(bar);
      parts.push(
        `<rect x="${bar.x}" y="${bar.y}" width="${bar.width}" height="${bar.height}" fill="${bar.color}"/>`,
        `<text x="${bar.x + bar.width / 2}" y="${bar.y - 6}" font-size="12" text-anchor="middle" fill="#222">${value.toFixed(2)}</text>`,
      );
    });
    parts.push(
      `<text x="${center}" y="${PLOT.top + plotHeight + 24}" font-size="15" text-anchor="middle" fill="#222">${escapeXml(modelLabel(model))}</text>`,
    );
  });
  parts.push(
    `<line x1="${PLOT.left}" x2="${SIZE.width - PLOT.right}" y1="${PLOT.top + plotHeight}" y2="${PLOT.top + plotHeight}" stroke="#888"/>`,
  );

  for (const item of legendLayout(series, PLOT.left, SIZE.width - PLOT.right, SIZE.height - 52)) {
    parts.push(
      `<rect x="${item.x}" y="${item.y - 11}" width="14" height="14" fill="${colors[item.index]}"/>`,
      `<text x="${item.x + 20}" y="${item.y}" font-size="13" fill="#222">${escapeXml(item.name)}</text>`,
    );
  }

  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${SIZE.width}" height="${SIZE.height}" ` +
    `font-family="DejaVu Sans, Helvetica, Arial, sans-serif">${parts.join('')}</svg>`;
  return { svg, width: SIZE.width, height: SIZE.height, bars };
}
