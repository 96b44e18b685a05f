/**
 * The `atelier` command as an operator runs it: a real process (bin/atelier.js) on a temporary
 * data dir with the bundled tiny model.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/images/index.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';
import { FakeHub } from '../hub/fake-hub.js';
import { serveTinyAsRepo } from '../hub/fixtures.js';

const bin = fileURLToPath(new URL('../../bin/atelier.js', import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** The working directory it ran in (a fresh temporary folder). */
  cwd: string;
}

function atelier(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const cwd = mkdtempSync(join(tmpdir(), 'atelier-cli-'));
  dirs.push(cwd);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: cwd, ATELIER_DATA_DIR: join(cwd, 'data'), ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, cwd }));
  });
}

describe('atelier imagine', () => {
  it('makes a PNG with its parameters through the queue and pipeline, with progress on stderr', async () => {
    const r = await atelier(['imagine', 'a lighthouse at dusk', '-s', '7', '-c', '2', '-o', 'out.png']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/step 4\/4/);
    expect(r.stderr).toMatch(/Done in .* \(seed 7\)/);
    const files = r.stdout.trim().split('\n');
    expect(files).toEqual([join(r.cwd, 'out.png'), join(r.cwd, 'out-1.png'), join(r.cwd, 'out-2.png')]);
    expect(await sharp(readFileSync(files[0])).metadata()).toMatchObject({ width: 512, height: 256 });
    expect(readPngText(readFileSync(files[2])).parameters).toMatch(/^a lighthouse at dusk\n.*Seed: 8,/s);
  });

  it('refuses bad options with the user message and exit code 2', async () => {
    const r = await atelier(['imagine', 'a fox', '--steps', '500']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^atelier: Steps .*1.*100/m);
  });
});

describe('atelier doctor', () => {
  it('reports the data dir, database, model components with their bytes, and the provider', async () => {
    const r = await atelier(['doctor'], { DISCORD_TOKEN: 'not-a-real-token-but-long-enough' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/DISCORD_TOKEN = not-…\(32 chars\)/);
    expect(r.stdout).not.toMatch(/not-a-real-token/);
    expect(r.stdout).toMatch(/database +atelier\.db schema \d+, wal, check: ok/);
    expect(r.stdout).toMatch(/model +atelier-tiny-sd35 \(tiny, comfyui layout\)/);
    expect(r.stdout).toMatch(/ {2}mmdit +F16 +[\d.]+ MB/);
    expect(r.stdout).toMatch(/provider +cpu \(onnxruntime-node 1\.29\.0\) loads/);
    expect(r.stdout).toMatch(
      /runtime +stock \(onnxruntime-node session\.run\) — models\.runtime is auto: .*opt-in/,
    );
    expect(r.stdout).toMatch(/Everything looks right\./);
  });

  it('says the C-API path runs, and with which kernels, when it is asked for', async () => {
    const r = await atelier(['doctor'], { ATELIER_MODELS__RUNTIME: 'capi' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /runtime +C API \(ONNX Runtime 1\.29\.0\)( \+ custom ops \S+libatelier_ops_cpu\.so| — no cpu custom-op library is built)/,
    );
  });

  it('names a missing models folder and exits 1', async () => {
    const r = await atelier(['doctor'], { ATELIER_MODELS__DIR: '/nowhere/models' });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/model +PROBLEM: models\.dir = \/nowhere\/models: no such folder/);
  });
});

describe('atelier models pull, then imagine on what it fetched', () => {
  it('downloads a set in the ComfyUI layout with progress, and the bot runs on it', async () => {
    const tinyDir = mkdtempSync(join(tmpdir(), 'atelier-cli-tiny-'));
    dirs.push(tinyDir);
    writeTinyModel(tinyDir);
    const hub = await FakeHub.start();
    try {
      const repo = 'stabilityai/stable-diffusion-3.5-large';
      serveTinyAsRepo(hub, repo, 'sd3.5_large.safetensors', tinyDir);
      hub.tokens.set('hf_cli_token', new Set([repo]));
      const refused = await atelier(['models', 'pull', 'sd3.5-large'], { HF_ENDPOINT: hub.url });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/atelier: .*HF_TOKEN/);

      const pulled = await atelier(['models', 'pull', 'sd3.5-large', '--dir', 'models'], {
        HF_ENDPOINT: hub.url,
        HF_TOKEN: 'hf_cli_token',
      });
      expect(pulled.code).toBe(0);
      expect(pulled.stderr).toMatch(/\d+ files, [\d.]+ [kMG]?B in /);
      const modelsDir = join(pulled.cwd, 'models');
      expect(pulled.stdout).toContain(`ATELIER_MODELS__DIR=${modelsDir}`);
      expect(existsSync(join(modelsDir, 'checkpoints', 'sd3.5_large.safetensors'))).toBe(true);

      // The tokenizers went to that run's data dir: the second command uses the same one.
      const made = await atelier(['imagine', 'a fox', '-s', '1', '-o', 'fox.png'], {
        ATELIER_MODELS__DIR: modelsDir,
        ATELIER_DATA_DIR: join(pulled.cwd, 'data'),
      });
      expect(made.code).toBe(0);
      expect(readPngText(readFileSync(join(made.cwd, 'fox.png'))).parameters).toMatch(/Model: sd3\.5_large/);
    } finally {
      await hub.close();
    }
  });
});

describe('configuration errors', () => {
  it('stop the start with one line naming the key, the value and what is allowed', async () => {
    const r = await atelier(['serve'], { ATELIER_QUEUE__CONCURRENCY: 'lots' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'atelier: config: queue.concurrency = "lots" is not allowed: expected an integer from 1 to 64 (from env ATELIER_QUEUE__CONCURRENCY)',
    );
  });

  it('name a secret put in a YAML file and the variable to use instead', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'atelier-cfg-'));
    dirs.push(cwd);
    const file = join(cwd, 'atelier.yaml');
    writeFileSync(file, 'discord:\n  token: abc\n');
    const r = await atelier(['doctor'], { ATELIER_CONFIG: file });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^atelier: config: discord\.token .*DISCORD_TOKEN/m);
    expect(existsSync(file)).toBe(true);
  });
});
