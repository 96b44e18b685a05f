/**
 * Renders the performance chart of a GPU results file to PNG (SVG through sharp), for the README:
 *
 *   npx tsx bench/gpu/chart.ts bench/results/gpu-<date>.json bench/results/gpu-<date>.png [--steps 28] [--batch 1]
 *        [--metric denoise|image]   (denoising seconds per image, the default, or a generation's time per image)
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { type Chart, type ChartOptions, type ChartResults, chartSvg } from './chart-svg.js';

export async function renderChart(
  results: ChartResults,
  pngPath: string,
  options: ChartOptions = {},
): Promise<Chart> {
  const chart = chartSvg(results, options);
  await sharp(Buffer.from(chart.svg)).png().toFile(pngPath);
  return chart;
}

async function main(argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      steps: { type: 'string', default: '28' },
      batch: { type: 'string', default: '1' },
      width: { type: 'string', default: '1024' },
      height: { type: 'string', default: '1024' },
      metric: { type: 'string', default: 'denoise' },
    },
  });
  const [input, output] = positionals;
  if (!input || !output) throw new Error('usage: chart.ts RESULTS.json OUT.png [--steps 28] [--batch 1]');
  const results = JSON.parse(readFileSync(input, 'utf8')) as ChartResults;
  const chart = await renderChart(results, output, {
    steps: Number(values.steps),
    batch: Number(values.batch),
    width: Number(values.width),
    height: Number(values.height),
    metric: values.metric === 'image' ? 'image' : 'denoise',
  });
  console.log(`wrote ${output}: ${chart.bars.length} bars, ${chart.width}×${chart.height}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
