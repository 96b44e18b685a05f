/**
 * `npm test` needs nothing beside the clone: the golden tests run on the project's own set
 * (test/golden-data) when there is no ../shared/golden and no ATELIER_GOLDEN_DIR. Checked for real:
 * the repository's files (tracked, and new ones git does not ignore) are copied into a temporary
 * folder with nothing beside it, node_modules linked in, and golden test files run there by vitest
 * in a child process, without ATELIER_GOLDEN_DIR. They must pass, skip nothing, and run on the
 * project's own set alone.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Golden test files run in the clone: weights and graphs, the sampler, noise, tokenizers. */
const GOLDEN_FILES = [
  'test/pipeline/mmdit.test.ts',
  'test/pipeline/sampling-golden.test.ts',
  'test/pipeline/noise.test.ts',
  'test/pipeline/tokenizer.test.ts',
];

interface JsonReport {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: { name: string; status: string; assertionResults: { fullName: string; status: string }[] }[];
}

/** The files a fresh clone of the working tree would have (deleted ones left out). */
function cloneFiles(): string[] {
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  return listed.stdout.split('\0').filter((f) => f !== '' && existsSync(join(REPO_ROOT, f)));
}

const scratch = mkdtempSync(join(tmpdir(), 'atelier-standalone-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('npm test in a clone with nothing beside it', () => {
  it('runs the golden tests on the project’s own set, all passing, none skipped', () => {
    const clone = join(scratch, 'atelier');
    mkdirSync(clone);
    for (const file of cloneFiles()) {
      mkdirSync(dirname(join(clone, file)), { recursive: true });
      cpSync(join(REPO_ROOT, file), join(clone, file));
    }
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir');
    expect(existsSync(join(clone, 'test/golden-data/manifest.json'))).toBe(true);
    expect(existsSync(join(clone, '../shared'))).toBe(false);

    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (key !== 'ATELIER_GOLDEN_DIR' && !key.startsWith('VITEST')) env[key] = value;
    }
    const report = join(scratch, 'report.json');
    const run = spawnSync(
      process.execPath,
      [
        join(clone, 'node_modules/vitest/vitest.mjs'),
        'run',
        '--maxWorkers=1',
        '--reporter=json',
        `--outputFile=${report}`,
        ...GOLDEN_FILES,
      ],
      { cwd: clone, env, encoding: 'utf8', timeout: 170_000, maxBuffer: 64 * 1024 * 1024 },
    );
    const result = existsSync(report) ? (JSON.parse(readFileSync(report, 'utf8')) as JsonReport) : undefined;
    expect(result, `vitest in the clone wrote no report:\n${run.stderr}\n${run.stdout}`).toBeDefined();
    const failed = result!.testResults
      .flatMap((f) => f.assertionResults.filter((t) => t.status !== 'passed').map((t) => t.fullName))
      .concat(result!.testResults.filter((f) => f.status !== 'passed').map((f) => f.name));
    expect(failed, run.stderr).toEqual([]);
    expect(run.status, run.stderr).toBe(0);
    expect(result!.numFailedTests + result!.numPendingTests + result!.numTodoTests).toBe(0);
    expect(result!.numPassedTests).toBeGreaterThan(40);
    expect(result!.testResults.map((f) => f.name.slice(clone.length + 1)).sort()).toEqual(
      [...GOLDEN_FILES].sort(),
    );
    // The golden tests ran on the project's set, and on no other.
    const names = result!.testResults.flatMap((f) => f.assertionResults.map((t) => t.fullName));
    const onSets = names.filter((n) => / golden set/.test(n));
    expect(onSets.length).toBeGreaterThan(20);
    expect(onSets.filter((n) => !n.includes("'own' golden set"))).toEqual([]);
  }, 180_000);
});
