/**
 * The `atelier` command as an operator runs it: a real process (bin/atelier.js) on a temporary
 * data dir with the bundled demo model (the default: no models folder configured).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/images/index.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';
import { demoSampling as readDemoSampling } from '../helpers/demo-sampling.js';
import { FakeHub } from '../hub/fake-hub.js';
import { serveTinyAsRepo } from '../hub/fixtures.js';
import { startDiscordSimulator } from '../simulators/discord/index.js';
import { startSlackSimulator } from '../simulators/slack/index.js';

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

/** A port nothing listens on (connections to it are refused). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** What the bundled demo model's checkpoint suggests (the default model of these runs). */
const demoSampling = readDemoSampling();

describe('atelier imagine', () => {
  it('makes a PNG with its parameters through the queue and pipeline, with progress on stderr', async () => {
    const r = await atelier(['imagine', 'a lighthouse at dusk', '-s', '7', '-c', '2', '-o', 'out.png']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`step ${demoSampling.steps}/${demoSampling.steps}`));
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
    const d = await startDiscordSimulator({ token: 'not-a-real-token-but-long-enough' });
    const r = await atelier(['doctor'], { DISCORD_TOKEN: d.token, DISCORD_API_URL: d.apiUrl }).finally(() =>
      d.stop(),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ {2}discord +DISCORD_TOKEN accepted: signs in as Atelier/);
    expect(r.stdout).toMatch(/DISCORD_TOKEN = not-…\(32 chars\)/);
    expect(r.stdout).not.toMatch(/not-a-real-token/);
    expect(r.stdout).toMatch(/database +atelier\.db schema \d+, wal, check: ok/);
    expect(r.stdout).toMatch(
      /model +atelier-demo-sd35 \(tiny, comfyui layout\) in .*models\/demo — the bundled demo model/,
    );
    const { steps, guidance, sampler, resolution } = demoSampling;
    expect(r.stdout).toContain(
      `defaults      ${steps} steps, guidance ${guidance}, ${sampler}, ${resolution}px`,
    );
    expect(r.stdout).toMatch(/ {2}mmdit +F8_E4M3 +[\d.]+ MB/);
    expect(r.stdout).toMatch(/provider +cpu \(onnxruntime-node 1\.29\.0\) loads/);
    expect(r.stdout).toMatch(
      /runtime +stock \(onnxruntime-node session\.run\) — models\.runtime is auto on the CPU: .*CUDA graphs/,
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

  it('checks the tokens live and names what serve would hit: a revoked Discord token, an unreachable Slack', async () => {
    const d = await startDiscordSimulator();
    const s = await startSlackSimulator();
    const port = await closedPort();
    try {
      const r = await atelier(['doctor'], {
        DISCORD_TOKEN: 'revoked-token',
        DISCORD_API_URL: d.apiUrl,
        SLACK_BOT_TOKEN: s.botToken,
        SLACK_SIGNING_SECRET: s.signingSecret,
        SLACK_API_URL: `http://127.0.0.1:${port}/api/`,
      });
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(
        / {2}discord +PROBLEM: discord: Discord refused DISCORD_TOKEN \(401 Unauthorized\)/,
      );
      expect(r.stdout).toMatch(
        new RegExp(
          ` {2}slack +PROBLEM: slack: connection to 127\\.0\\.0\\.1:${port} refused \\(ECONNREFUSED\\)`,
        ),
      );
      expect(r.stdout).not.toMatch(/Everything looks right/);

      const ok = await atelier(['doctor'], {
        DISCORD_TOKEN: d.token,
        DISCORD_API_URL: d.apiUrl,
        SLACK_BOT_TOKEN: s.botToken,
        SLACK_SIGNING_SECRET: s.signingSecret,
        SLACK_API_URL: s.apiUrl,
      });
      expect(ok.stdout).toMatch(
        / {2}slack +SLACK_BOT_TOKEN accepted: @atelier in Atelier Lab T\w+ \(auth\.test\)/,
      );
      expect(ok.code).toBe(0);
    } finally {
      await d.stop();
      await s.stop();
    }
  });

  it('names an ONNX Runtime folder that lacks the library, in doctor and before any job runs', async () => {
    const env = { ATELIER_MODELS__ONNX_RUNTIME_DIR: '/nowhere/ort' };
    const checked = await atelier(['doctor'], env);
    expect(checked.code).toBe(1);
    expect(checked.stdout).toMatch(
      /provider +PROBLEM: .*models\.onnxRuntimeDir: \/nowhere\/ort lacks libonnxruntime\.so\.1/,
    );
    // The pipeline process loads the folder before onnxruntime-node, so the job fails on it, in one line.
    const made = await atelier(['imagine', 'a fox', '-o', 'fox.png'], env);
    expect(made.code).toBe(1);
    expect(made.stderr).toMatch(
      /^atelier: .*models\.onnxRuntimeDir: \/nowhere\/ort lacks libonnxruntime\.so\.1/m,
    );
    expect(made.stderr).not.toMatch(/\n\s+at /);
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

describe('the command itself', () => {
  it('prints the help for a bare `atelier` instead of starting a server', async () => {
    const r = await atelier([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: atelier \[options\] \[command\]/);
    expect(r.stdout).toMatch(/serve( \[options\])? +run the bot/);
    expect(r.stdout).toMatch(/worker( \[options\])? +run one pipeline/);
    expect(r.stdout).not.toMatch(/playground: http/);
  });

  it('refuses the cluster roles without REDIS_URL, saying where to set it', async () => {
    for (const args of [
      ['worker', '--device', '1'],
      ['serve', '--role', 'gateway'],
    ]) {
      const r = await atelier(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^atelier: config: the (worker|gateway) role needs Redis: set REDIS_URL/);
    }
    const bad = await atelier(['worker', '--device', 'x']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('expected a GPU index');
  });

  it('prints its version', async () => {
    const version = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
    for (const flag of ['--version', '-V']) {
      const r = await atelier([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(`atelier ${version}`);
    }
  });

  it('answers a mistyped command with the one meant', async () => {
    const r = await atelier(['imagne', 'a fox']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      "atelier: unknown command 'imagne'; did you mean 'imagine'? (see atelier --help)",
    );
    const sub = await atelier(['models', 'pul', 'sd3.5-large']);
    expect(sub.code).toBe(1);
    expect(sub.stderr.trim()).toMatch(/^atelier models: unknown command 'pul'; did you mean 'pull'\?/);
  });

  it('keeps `npm start` on serve', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(pkg.scripts.start).toBe('node bin/atelier.js serve');
  });
});

describe('atelier serve with a chat platform it cannot use', () => {
  it('ends with one line naming the cause and exit code 1, never a stack trace', async () => {
    const d = await startDiscordSimulator();
    try {
      const r = await atelier(['serve'], { DISCORD_TOKEN: 'revoked-token', DISCORD_API_URL: d.apiUrl });
      expect(r.code).toBe(1);
      // The log lines (JSON) aside, stderr ends with the one line.
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(
        /^atelier: discord: Discord refused DISCORD_TOKEN \(401 Unauthorized\)[^\n]*$/,
      );
      expect(r.stderr).not.toMatch(/^\s+at /m);
    } finally {
      await d.stop();
    }
  });
});
