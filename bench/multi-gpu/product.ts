/**
 * Starts Atelier as an operator would, in one of the two ways one machine with several GPUs can
 * run it, and takes it down again:
 *
 * - `embedded`: `atelier serve` with `queue.concurrency: N` — one process, one pipeline process
 *   per GPU on devices `models.deviceId` … + N − 1;
 * - `cluster`: a `redis-server` on a free loopback port, `atelier serve --role gateway` and one
 *   `atelier worker --device i` per GPU.
 *
 * Each process runs the real command (bin/atelier.js here, the bundled atelier.js on the GPU
 * machine) in its own data dir, with the playground on a free port as its only surface. Their
 * logs (stderr) go to files; the lines that say which engine loaded (runtime, fp8 route) are kept.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  symlinkSync,
  type WriteStream,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { clusterStatus } from '../../src/cluster/index.js';
import { startRedis, type TestRedis } from '../../test/helpers/redis-server.js';
import { childPidsNamed } from './monitor.js';

export type Mode = 'embedded' | 'cluster';

/**
 * NVLink multicast stays off in everything started here (the device notes: a program that uses
 * it can take a shared host's GPUs out of service). Atelier uses none of NCCL, PyTorch or NVSHMEM;
 * the variables are set anyway, as the machines' notes ask.
 */
export const NO_MULTICAST = {
  NCCL_NVLS_ENABLE: '0',
  TORCH_SYMM_MEM_DISABLE_MULTICAST: '1',
  NVSHMEM_DISABLE_NVLS: '1',
} as const;

/** Variables that would turn on another surface or move the playground: never passed on. */
const DROPPED_ENV = /^(ATELIER_|DISCORD_|SLACK_|PLAYGROUND_|REDIS_URL$|HF_TOKEN$)/;

export interface ProductOptions {
  mode: Mode;
  /** GPUs (pipelines or workers). */
  gpus: number;
  /** A fresh folder for this run: config, data dirs, logs. */
  dir: string;
  /** How to run the `atelier` command: [node, path to bin/atelier.js or the bundled atelier.js]. */
  atelier: string[];
  /** The config file's content (the driver's settings); `queue.concurrency` is set here. */
  settings: Record<string, unknown>;
  /** More environment for every process (e.g. ATELIER_MODELS__RUNTIME=stock). */
  env?: Record<string, string>;
  /** clip/ and t5/ tokenizer folders, linked into each data dir (ComfyUI folders carry none). */
  tokenizers?: string;
  /** The first GPU's index: models.deviceId. @default 0 */
  firstDevice?: number;
  /** How long loading may take (model load, graph builds). @default 600 s */
  readyTimeoutMs?: number;
}

/** A line a process logged about the model it loaded. */
export interface EngineLine {
  role: string;
  msg: string;
  runtime?: unknown;
  provider?: unknown;
  device?: unknown;
  fp8?: unknown;
  memory?: unknown;
}

export interface RunningProduct {
  mode: Mode;
  /** The playground's base URL (http://127.0.0.1:port). */
  url: string;
  /** The data dir holding the SQLite database (the serve or gateway process's). */
  dataDir: string;
  /** Root pids per role, for the CPU monitor. */
  roles: Record<string, number[]>;
  spawnedAt: number;
  readyAt: number;
  engine: EngineLine[];
  /** Error and fatal log lines (the first 50). */
  errors: string[];
  logFiles: string[];
  stop(): Promise<void>;
}

/** Whether a `redis-server` is on the PATH. */
export function redisAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

interface Role {
  name: string;
  child: ChildProcess;
  log: WriteStream;
  logFile: string;
  exited: Promise<void>;
}

export async function startProduct(options: ProductOptions): Promise<RunningProduct> {
  const spawnedAt = Date.now();
  const firstDevice = options.firstDevice ?? 0;
  const timeoutMs = options.readyTimeoutMs ?? 600_000;
  mkdirSync(options.dir, { recursive: true });
  const configFile = join(options.dir, 'atelier.yaml');
  const settings = { ...options.settings };
  const queue = (settings.queue ?? {}) as Record<string, unknown>;
  settings.queue = { ...queue, concurrency: options.mode === 'embedded' ? options.gpus : 1 };
  const models = (settings.models ?? {}) as Record<string, unknown>;
  settings.models = { ...models, deviceId: firstDevice };
  writeFileSync(configFile, stringify(settings));
  const baseEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env))
    if (value !== undefined && !DROPPED_ENV.test(key)) baseEnv[key] = value;
  Object.assign(baseEnv, NO_MULTICAST, { ATELIER_CONFIG: configFile }, options.env ?? {});

  const engine: EngineLine[] = [];
  const errors: string[] = [];
  const roles: Role[] = [];
  let redis: TestRedis | undefined;

  const dataDir = (name: string) => {
    const dir = join(options.dir, name);
    mkdirSync(dir, { recursive: true });
    if (options.tokenizers) {
      mkdirSync(join(dir, 'tokenizers'), { recursive: true });
      for (const kind of ['clip', 't5']) {
        const link = join(dir, 'tokenizers', kind);
        if (!existsSync(link)) symlinkSync(resolve(options.tokenizers, kind), link);
      }
    }
    return dir;
  };

  const launch = (name: string, args: string[], env: Record<string, string>): Role => {
    const logFile = join(options.dir, `${name}.log`);
    const log = createWriteStream(logFile);
    const child = spawn(options.atelier[0]!, [...options.atelier.slice(1), ...args], {
      // Its own folder: no .env of the repository is read.
      cwd: options.dir,
      env: { ...baseEnv, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log, { end: false });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      log.write(`${line}\n`);
      noteLogLine(name, line, engine, errors);
    });
    // 'close': the process exited and its output was read to the end (the log can be closed).
    const exited = new Promise<void>((done) => child.once('close', () => done()));
    const role = { name, child, log, logFile, exited };
    roles.push(role);
    return role;
  };

  /** Resolves with the stdout line that passes `ready`; rejects if the process exits or times out. */
  const readyLine = (role: Role, ready: (line: string) => boolean, what: string) =>
    new Promise<string>((resolveLine, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${role.name}: not ${what} within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      const lines = createInterface({ input: role.child.stdout! });
      lines.on('line', (line) => {
        if (!ready(line)) return;
        clearTimeout(timer);
        resolveLine(line);
      });
      role.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(`${role.name} exited (${code ?? signal}) before it was ${what}; log: ${role.logFile}`),
        );
      });
    });
  /** Resolves once the role logs `msg` (pino JSON on stderr). */
  const loggedLine = (role: Role, msg: string) =>
    new Promise<void>((resolveLine, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${role.name}: no "${msg}" within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      createInterface({ input: role.child.stderr! }).on('line', (line) => {
        if (!line.includes(`"msg":"${msg}"`)) return;
        clearTimeout(timer);
        resolveLine();
      });
      role.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${role.name} exited (${code ?? signal}) before "${msg}"; log: ${role.logFile}`));
      });
    });

  const stop = async () => {
    // The front first (it stops handing out jobs), then the workers, then Redis.
    for (const group of [
      roles.filter((r) => !r.name.startsWith('worker')),
      roles.filter((r) => r.name.startsWith('worker')),
    ]) {
      await Promise.all(group.map((role) => stopRole(role)));
    }
    await redis?.dispose();
  };

  try {
    const playgroundLine = (line: string) => /^playground: http/.test(line);
    let front: Role;
    if (options.mode === 'embedded') {
      front = launch('serve', ['serve'], { ATELIER_DATA_DIR: dataDir('serve') });
      const url = urlOf(await readyLine(front, playgroundLine, 'serving the playground'));
      return {
        mode: options.mode,
        url,
        dataDir: join(options.dir, 'serve'),
        roles: { serve: [front.child.pid!] },
        spawnedAt,
        readyAt: Date.now(),
        engine,
        errors,
        logFiles: roles.map((r) => r.logFile),
        stop,
      };
    }
    redis = await startRedis();
    const prefix = `atelier-bench-${options.gpus}-${Date.now()}`;
    const clusterEnv = { REDIS_URL: redis.url, ATELIER_CLUSTER__PREFIX: prefix };
    const workers = Array.from({ length: options.gpus }, (_, i) =>
      launch(`worker-${firstDevice + i}`, ['worker', '--device', String(firstDevice + i)], {
        ...clusterEnv,
        ATELIER_DATA_DIR: dataDir(`worker-${firstDevice + i}`),
      }),
    );
    front = launch('gateway', ['serve', '--role', 'gateway'], {
      ...clusterEnv,
      ATELIER_DATA_DIR: dataDir('gateway'),
    });
    const [line] = await Promise.all([
      readyLine(front, playgroundLine, 'serving the playground'),
      ...workers.map((w) => loggedLine(w, 'worker: connected')),
    ]);
    // What the gateway's runner pool reads: every worker's card in Redis.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const status = await clusterStatus(redis.url, prefix);
      if (status.workers.length >= options.gpus) break;
      if (Date.now() > deadline)
        throw new Error(`only ${status.workers.length} of ${options.gpus} workers registered in Redis`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return {
      mode: options.mode,
      url: urlOf(line),
      dataDir: join(options.dir, 'gateway'),
      roles: {
        gateway: [front.child.pid!],
        workers: workers.map((w) => w.child.pid!),
        redis: childPidsNamed(process.pid, 'redis-server'),
      },
      spawnedAt,
      readyAt: Date.now(),
      engine,
      errors,
      logFiles: roles.map((r) => r.logFile),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function urlOf(line: string): string {
  const match = /(http:\/\/[^\s]+)/.exec(line);
  if (!match) throw new Error(`no URL in "${line}"`);
  return match[1]!.replace(/\/$/, '');
}

/** SIGTERM, then SIGKILL after 30 s (a pipeline process stuck in a kernel, say). */
async function stopRole(role: Role): Promise<void> {
  if (role.child.exitCode === null && role.child.signalCode === null) {
    role.child.kill('SIGTERM');
    const killer = setTimeout(() => role.child.kill('SIGKILL'), 30_000);
    await role.exited;
    clearTimeout(killer);
  }
  await new Promise<void>((done) => role.log.end(() => done()));
}

/** Keeps the engine lines (model loaded, fp8 route) and errors of a process's pino log. */
function noteLogLine(role: string, line: string, engine: EngineLine[], errors: string[]): void {
  if (!line.startsWith('{')) {
    if (/error|fatal/i.test(line) && errors.length < 50) errors.push(`${role}: ${line}`);
    return;
  }
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return;
  }
  const msg = String(entry.msg ?? '');
  if (typeof entry.level === 'number' && entry.level >= 50 && errors.length < 50)
    errors.push(`${role}: ${msg}${entry.err ? ` (${JSON.stringify(entry.err).slice(0, 300)})` : ''}`);
  if (
    msg === 'model loaded' ||
    msg === 'worker: model loaded' ||
    'fp8' in entry ||
    msg.startsWith('GPU memory')
  ) {
    const kept: EngineLine = { role, msg };
    for (const key of ['runtime', 'provider', 'device', 'fp8', 'memory'] as const)
      if (entry[key] !== undefined) kept[key] = entry[key];
    engine.push(kept);
  }
}
