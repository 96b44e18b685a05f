/**
 * The cluster's roles as real processes for the cluster tests: `atelier worker` (the fixture in
 * ./fixtures/worker.ts: the worker role with the paced pipeline double) and `atelier serve --role
 * gateway` (bin/atelier.js itself, the command operators run). Each resolves once the process says
 * it is ready on stdout, or rejects with its stderr if it exits first. Test use only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..');
/** tsx's ESM loader as a file URL (resolved from here: a `--import tsx` would resolve from the process's cwd). */
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Short heartbeats and locks, so a killed worker is noticed within seconds. */
export const CLUSTER_ENV = {
  ATELIER_CLUSTER__WORKER_TTL_SECONDS: '2',
  ATELIER_CLUSTER__LOCK_SECONDS: '2',
  ATELIER_LOG__LEVEL: 'silent',
} as const;

export interface RoleProcess {
  child: ChildProcess;
  /** What it wrote to stderr so far (its log, when a level is set). */
  stderr(): string;
}

/** Starts `args` under node and resolves once a stdout line passes `ready`. */
async function startProcess(
  name: string,
  args: string[],
  options: { env: Record<string, string>; cwd: string; ready(line: string): boolean },
): Promise<RoleProcess> {
  const child = spawn(process.execPath, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) =>
      reject(new Error(`${name} exited early (${code ?? signal}):\n${stderr}`)),
    ),
  );
  exited.catch(() => {});
  const lines = createInterface({ input: child.stdout! });
  const ready = new Promise<void>((resolve) => {
    lines.on('line', (line) => {
      if (options.ready(line)) resolve();
    });
  });
  await Promise.race([ready, exited]);
  return { child, stderr: () => stderr };
}

/** `atelier worker` with the paced pipeline double (15 ms a step unless PACED_MS_PER_STEP). */
export function startWorkerProcess(id: string, env: Record<string, string>): Promise<RoleProcess> {
  return startProcess(`worker ${id}`, ['--import', 'tsx', join(here, 'fixtures', 'worker.ts'), id], {
    env: { ...CLUSTER_ENV, ...env },
    cwd: repoRoot,
    ready: (line) => line.startsWith('{') && (JSON.parse(line) as { ready?: string }).ready === id,
  });
}

/**
 * `atelier serve --role gateway` (bin/atelier.js), in `cwd` (so no `.env` of the repository is
 * read), ready once it prints its Discord line. `script`: a TypeScript entry point to run instead
 * of bin/atelier.js, with the same arguments, under tsx's loader (a fixture that wraps the CLI).
 */
export function startGatewayProcess(
  env: Record<string, string>,
  cwd: string,
  options: { script?: string } = {},
): Promise<RoleProcess> {
  const entry = options.script
    ? ['--import', tsxLoader, options.script]
    : [join(repoRoot, 'bin', 'atelier.js')];
  return startProcess('gateway', [...entry, 'serve', '--role', 'gateway'], {
    env: { ...CLUSTER_ENV, ...env },
    cwd,
    ready: (line) => line.startsWith('discord: connected as'),
  });
}

/** Sends `signal` and resolves once the process has exited (at once if it already has). */
export function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  return exited;
}
