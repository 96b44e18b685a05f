/**
 * A real `redis-server` for a test, on a free loopback port, in a temporary folder. `--port 0`
 * would not listen on TCP at all, so the port is picked by binding port 0 first. Persistence is
 * off unless `aof` (the restart test); `password` sets `requirepass`; `refuseConfig` disables CONFIG, as
 * managed Redis services do. Debian's package: `apt-get install redis-server`.
 * Test use only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  port: number;
  url: string;
  /** Stops the server (SIGTERM, or SIGKILL with `kill`) and waits for it to exit. */
  stop(options?: { kill?: boolean }): Promise<void>;
  /** Starts it again on the same port and folder (AOF replayed when on). */
  restart(): Promise<void>;
  /** stop() and remove its folder. */
  dispose(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

interface LaunchOptions {
  aof: boolean;
  password?: string;
  refuseConfig?: boolean;
}

function launch(port: number, dir: string, options: LaunchOptions): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
  args.push('--appendonly', options.aof ? 'yes' : 'no', '--daemonize', 'no', '--logfile', '');
  if (options.password) args.push('--requirepass', options.password);
  if (options.refuseConfig) args.push('--rename-command', 'CONFIG', '');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${output}`)));
  });
}

export async function startRedis(
  options: { aof?: boolean; password?: string; refuseConfig?: boolean } = {},
): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-redis-'));
  const launchOptions: LaunchOptions = { ...options, aof: options.aof ?? false };
  const { password } = options;
  let port = await freePort();
  let child: ChildProcess;
  try {
    child = await launch(port, dir, launchOptions);
  } catch {
    // The port was taken between picking and binding it: once more.
    port = await freePort();
    child = await launch(port, dir, launchOptions);
  }
  const stop = async (how: { kill?: boolean } = {}) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(how.kill ? 'SIGKILL' : 'SIGTERM');
    await exited;
  };
  return {
    port,
    url: password
      ? `redis://:${encodeURIComponent(password)}@127.0.0.1:${port}`
      : `redis://127.0.0.1:${port}`,
    stop,
    async restart() {
      await stop();
      child = await launch(port, dir, launchOptions);
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
