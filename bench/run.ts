/**
 * Runs the benchmarks: every `bench/*.ts` module and every `bench/<folder>/bench.ts` that exports
 * `name` and `run()` (this file excepted). Each module's rows are printed as a table and written
 * to `bench/results/<name>.json` with the machine they were measured on (and the module's
 * `details()`, when it has them). Benchmarks are measurements, not tests: nothing here fails on a
 * slow number.
 *
 *   npm run bench                 # all modules
 *   npm run bench -- scheduler    # only the named ones
 *   npm run bench -- demo-model --demo-models=DIR   # `--key=value` arguments are the modules' own
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** One line of a benchmark's table; keys are column names. */
export type BenchRow = Record<string, string | number>;

/** What a `bench/*.ts` module exports to be picked up by this runner. */
export interface BenchModule {
  /** Short name, also the results file name. */
  name: string;
  /** One line saying what is measured. */
  description?: string;
  run(): Promise<BenchRow[]>;
  /** More for the results file, read after run() (per-case detail too long for a table). */
  details?(): unknown;
}

const benchDir = dirname(fileURLToPath(import.meta.url));

function isBenchModule(value: unknown): value is BenchModule {
  const candidate = value as Partial<BenchModule>;
  return typeof candidate?.name === 'string' && typeof candidate.run === 'function';
}

async function discover(): Promise<BenchModule[]> {
  const entries = readdirSync(benchDir, { withFileTypes: true });
  const files = [
    ...entries
      .filter(
        (e) =>
          e.isFile() &&
          e.name.endsWith('.ts') &&
          !e.name.endsWith('.d.ts') &&
          e.name !== basename(fileURLToPath(import.meta.url)),
      )
      .map((e) => e.name),
    ...entries
      .filter((e) => e.isDirectory() && existsSync(join(benchDir, e.name, 'bench.ts')))
      .map((e) => join(e.name, 'bench.ts')),
  ].sort();
  const modules: BenchModule[] = [];
  for (const file of files) {
    const loaded: unknown = await import(pathToFileURL(join(benchDir, file)).href);
    if (isBenchModule(loaded)) modules.push(loaded);
  }
  return modules;
}

function format(value: string | number): string {
  if (typeof value === 'string') return value;
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  return value.toLocaleString('en-US', { maximumSignificantDigits: 4 });
}

/** Four significant digits are plenty for a measurement and keep the JSON readable. */
function roundNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isInteger(value) ? Number(value.toPrecision(4)) : value;
}

function printTable(rows: BenchRow[]): void {
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const cells = rows.map((row) => columns.map((column) => (column in row ? format(row[column]!) : '')));
  const widths = columns.map((column, i) => Math.max(column.length, ...cells.map((line) => line[i]!.length)));
  const line = (values: string[]) =>
    values.map((value, i) => (i === 0 ? value.padEnd(widths[i]!) : value.padStart(widths[i]!))).join('  ');
  console.log(line(columns));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const values of cells) console.log(line(values));
}

async function main(): Promise<void> {
  const wanted = new Set(process.argv.slice(2).filter((arg) => !arg.startsWith('--')));
  const modules = (await discover()).filter((module) => wanted.size === 0 || wanted.has(module.name));
  if (modules.length === 0) {
    console.error(`No benchmark matched ${[...wanted].join(', ') || '(none found)'}`);
    process.exitCode = 1;
    return;
  }
  const machine = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
  };
  const resultsDir = join(benchDir, 'results');
  mkdirSync(resultsDir, { recursive: true });
  for (const module of modules) {
    console.log(`\n${module.name}${module.description ? ` — ${module.description}` : ''}`);
    const rows = await module.run();
    printTable(rows);
    const file = join(resultsDir, `${module.name}.json`);
    const details = module.details?.();
    writeFileSync(
      file,
      `${JSON.stringify({ name: module.name, measuredAt: new Date().toISOString(), machine, rows, ...(details !== undefined ? { details } : {}) }, roundNumbers, 2)}\n`,
    );
    console.log(`→ ${file}`);
  }
}

await main();
