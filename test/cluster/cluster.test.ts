/**
 * The distributed mode end to end: a real `redis-server` (test/helpers/redis-server.ts), a gateway
 * core (scheduler, store, the cluster's runner pool) in this process, and two `atelier worker`
 * processes (test/cluster/fixtures/worker.ts: the worker role, a ProcessPipeline, a paced test
 * double). Everything is synchronised on events (scheduler events, the gateway's `workers`,
 * `connection`, `progress` and `outcome` events, the workers' ready lines), never on sleeps; and
 * the gateway itself polls nothing (workers dying are seen through Redis's key-expiry events).
 * test/cluster/discord.test.ts runs the gateway as its own process too, behind the Discord simulator.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueEvents } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CreateGatewayOptions, createGatewayApp, type GatewayApp } from '../../src/app/index.js';
import { doctor } from '../../src/cli/doctor.js';
import type { ClusterJobOutcome, WorkerCard } from '../../src/cluster/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { JobEvent } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import type { EnqueueReceipt } from '../../src/scheduler/index.js';
import { startRedis, type TestRedis } from '../helpers/redis-server.js';
import { makeSpec } from '../scheduler/helpers.js';
import { CLUSTER_ENV, startWorkerProcess, stopProcess } from './processes.js';

/** The gateway's: short heartbeats and locks (CLUSTER_ENV), no limits in the way. */
const GATEWAY_ENV = {
  ...CLUSTER_ENV,
  ATELIER_LIMITS__USER__ENABLED: 'false',
  ATELIER_QUEUE__MAX_QUEUED_PER_USER: '50',
  ATELIER_QUEUE__POSITION_UPDATE_INTERVAL_MS: '0',
};

let redis: TestRedis;
let dataDir: string;
let prefix: string;
let gateway: GatewayApp | undefined;
const workers = new Map<string, ChildProcess>();
let testCount = 0;

beforeEach(async () => {
  redis = await startRedis();
  dataDir = mkdtempSync(join(tmpdir(), 'atelier-gateway-'));
  prefix = `atelier-test-${++testCount}`;
});

afterEach(async () => {
  await gateway?.close();
  gateway = undefined;
  await Promise.all([...workers.values()].map((child) => stopProcess(child, 'SIGKILL')));
  workers.clear();
  await redis.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Starts `atelier worker` (the fixture) and resolves once it takes jobs. */
async function startWorker(id: string): Promise<ChildProcess> {
  const { child } = await startWorkerProcess(id, {
    REDIS_URL: redis.url,
    ATELIER_CLUSTER__PREFIX: prefix,
    ATELIER_DATA_DIR: join(dataDir, `worker-${id}`),
  });
  workers.set(id, child);
  return child;
}

async function startGateway(
  options: Pick<CreateGatewayOptions, 'connectWaitMs' | 'cluster'> = {},
): Promise<GatewayApp> {
  const config = loadConfig({
    env: { ...GATEWAY_ENV, ATELIER_DATA_DIR: dataDir, REDIS_URL: redis.url, ATELIER_CLUSTER__PREFIX: prefix },
    cwd: dataDir,
  });
  gateway = await createGatewayApp(config, {
    logger: createLogger({ level: 'silent' }),
    // Were the gateway polling for workers, a minute would be too slow for every test here: they
    // pass because it hears of workers coming and going (and cards expiring) through Redis.
    cluster: { watchIntervalMs: 60_000 },
    ...options,
  });
  await gateway.load();
  return gateway;
}

/** Resolves when the gateway sees exactly `count` live workers (at once if it already does). */
function workersAlive(app: GatewayApp, count: number): Promise<readonly WorkerCard[]> {
  if (app.cluster.workers.length === count && app.scheduler.runnerCount === count)
    return Promise.resolve(app.cluster.workers);
  return new Promise((resolve) => {
    const listener = (cards: readonly WorkerCard[]) => {
      if (cards.length !== count) return;
      app.cluster.off('workers', listener);
      resolve(cards);
    };
    app.cluster.on('workers', listener);
  });
}

/** Resolves on the first progress frame of `jobId`, with the worker running it. */
function firstProgress(app: GatewayApp, jobId: string): Promise<{ worker: string }> {
  return new Promise((resolve) => {
    const listener = (p: { jobId: string; worker: string }) => {
      if (p.jobId !== jobId) return;
      app.cluster.off('progress', listener);
      resolve(p);
    };
    app.cluster.on('progress', listener);
  });
}

function record(app: GatewayApp) {
  const events: JobEvent[] = [];
  const outcomes: ClusterJobOutcome[] = [];
  let running = 0;
  let maxRunning = 0;
  app.scheduler.on('job', (event) => {
    events.push(event);
    if (event.type === 'started') maxRunning = Math.max(maxRunning, ++running);
    if (event.type === 'done' || event.type === 'failed' || event.type === 'cancelled') running--;
  });
  app.cluster.on('outcome', (outcome) => outcomes.push(outcome));
  return {
    events,
    outcomes,
    maxRunning: () => maxRunning,
    of: (type: JobEvent['type'], jobId?: string) =>
      events.filter((e) => e.type === type && (jobId === undefined || e.jobId === jobId)),
  };
}

describe('cluster (gateway + workers over BullMQ on a real Redis)', () => {
  it('runs jobs on two worker processes in the scheduler’s fair order, each result delivered once', async () => {
    const app = await startGateway();
    await Promise.all([startWorker('w1'), startWorker('w2')]);
    await workersAlive(app, 2);
    const log = record(app);

    // Queued before the scheduler starts, so the order is the fair queue's, not arrival's.
    const receipts: EnqueueReceipt[] = [];
    for (const [user, n] of [
      ['alice', 3],
      ['bob', 2],
      ['carol', 1],
    ] as const) {
      for (let i = 0; i < n; i++)
        receipts.push(await app.scheduler.enqueue(makeSpec(user, { prompt: `${user} ${i}`, steps: 6 })));
    }
    await app.resume();
    const finals = await Promise.all(receipts.map((r) => app.scheduler.waitFor(r.job.id)));
    expect(finals.map((f) => f.type)).toEqual(receipts.map(() => 'done'));

    // Round robin over users, as in the embedded mode, though the jobs ran on two machines.
    const prompt = (jobId: string) => receipts.find((r) => r.job.id === jobId)!.job.spec.params.prompt;
    const started = log.of('started').map((e) => prompt(e.jobId));
    expect(started).toEqual(['alice 0', 'bob 0', 'carol 0', 'alice 1', 'bob 1', 'alice 2']);
    // Never more jobs out than workers.
    expect(log.maxRunning()).toBeLessThanOrEqual(2);

    for (const receipt of receipts) {
      const id = receipt.job.id;
      expect(log.of('done', id)).toHaveLength(1);
      expect(log.outcomes.filter((o) => o.jobId === id)).toHaveLength(1);
      const job = app.scheduler.getJob(id)!;
      expect(job.state).toBe('done');
      expect(existsSync(job.result!.images[0]!.path)).toBe(true);
    }
    const ranOn = new Set(log.outcomes.map((o) => o.worker));
    expect(ranOn).toEqual(new Set(['w1', 'w2']));
    // Progress came back from the workers with step counts and previews.
    const progress = log.of('progress') as Extract<JobEvent, { type: 'progress' }>[];
    expect(progress.some((p) => p.total === 6 && p.step >= 1)).toBe(true);
    expect(progress.some((p) => p.preview && p.preview.byteLength > 0)).toBe(true);
  }, 60_000);

  it('a worker killed with SIGKILL mid-job: the job completes on the other worker, delivered once', async () => {
    const app = await startGateway();
    await Promise.all([startWorker('w1'), startWorker('w2')]);
    await workersAlive(app, 2);
    const log = record(app);
    await app.resume();

    // 120 steps × 15 ms: long enough to be killed in the middle.
    const receipt = await app.scheduler.enqueue(makeSpec('dave', { prompt: 'long', steps: 120 }));
    const id = receipt.job.id;
    const firstStep = await new Promise<{ worker: string }>((resolve) => {
      const listener = (p: { jobId: string; worker: string }) => {
        if (p.jobId !== id) return;
        app.cluster.off('progress', listener);
        resolve(p);
      };
      app.cluster.on('progress', listener);
    });
    const victim = firstStep.worker;
    const survivor = victim === 'w1' ? 'w2' : 'w1';
    const oneLeft = workersAlive(app, 1);
    await stopProcess(workers.get(victim)!, 'SIGKILL');

    const final = await app.scheduler.waitFor(id);
    expect(final.type).toBe('done');
    expect((await oneLeft).map((card) => card.id)).toEqual([survivor]);
    expect(log.outcomes.filter((o) => o.jobId === id)).toEqual([
      { jobId: id, worker: survivor, state: 'completed' },
    ]);
    expect(log.of('done', id)).toHaveLength(1);
    expect(log.of('failed', id)).toHaveLength(0);

    // The pool follows: one runner now, and the next job runs on the survivor.
    expect(app.scheduler.runnerCount).toBe(1);
    const next = await app.scheduler.enqueue(makeSpec('erin', { prompt: 'after', steps: 3 }));
    expect((await app.scheduler.waitFor(next.job.id)).type).toBe('done');
    expect(log.outcomes.find((o) => o.jobId === next.job.id)?.worker).toBe(survivor);
  }, 60_000);

  it('a cancel reaches the worker running the job, which stops between steps and takes the next job', async () => {
    const app = await startGateway();
    await startWorker('w1');
    await workersAlive(app, 1);
    const log = record(app);
    await app.resume();

    // 4000 steps × 15 ms = a minute: only a cancel that reaches the worker frees it in time.
    const long = await app.scheduler.enqueue(makeSpec('frank', { prompt: 'forever', steps: 4000 }));
    await new Promise<void>((resolve) => {
      const listener = (p: { jobId: string }) => {
        if (p.jobId !== long.job.id) return;
        app.cluster.off('progress', listener);
        resolve();
      };
      app.cluster.on('progress', listener);
    });
    const next = await app.scheduler.enqueue(makeSpec('gina', { prompt: 'next', steps: 3 }));
    await app.scheduler.cancel(long.job.id, long.job.spec.requester);
    expect((await app.scheduler.waitFor(next.job.id)).type).toBe('done');
    expect(log.of('cancelled', long.job.id)).toHaveLength(1);
    expect(log.of('done', long.job.id)).toHaveLength(0);
    expect(app.scheduler.getJob(long.job.id)!.state).toBe('cancelled');
  }, 30_000);

  it('a gateway stopped mid-job collects, at its next start, the result finished meanwhile and posts it once', async () => {
    let app = await startGateway();
    await startWorker('w1');
    await workersAlive(app, 1);
    await app.resume();
    const receipt = await app.scheduler.enqueue(makeSpec('hana', { prompt: 'while away', steps: 100 }));
    const id = receipt.job.id;
    await firstProgress(app, id);

    // BullMQ's own events, watched from outside the gateway, say when the worker finished.
    const events = new QueueEvents('jobs', { connection: { host: '127.0.0.1', port: redis.port }, prefix });
    await events.waitUntilReady();
    const completed = new Promise<void>((resolve) =>
      events.on('completed', ({ jobId }) => jobId === id && resolve()),
    );
    await app.close();
    gateway = undefined;
    await completed;
    await events.close();

    app = await startGateway();
    await workersAlive(app, 1);
    const log = record(app);
    const report = await app.resume();
    expect(report.requeued).toEqual([id]);
    expect((await app.scheduler.waitFor(id)).type).toBe('done');
    expect(log.of('done', id)).toHaveLength(1);
    expect(log.outcomes).toEqual([{ jobId: id, worker: 'w1', state: 'completed' }]);
    expect(existsSync(app.scheduler.getJob(id)!.result!.images[0]!.path)).toBe(true);
  }, 30_000);

  it('Redis restarted (AOF on): the gateway keeps taking jobs meanwhile, saying they wait for a worker; the running and the new job complete once each', async () => {
    await redis.dispose();
    redis = await startRedis({ aof: true });
    const app = await startGateway();
    await startWorker('w1');
    await workersAlive(app, 1);
    const log = record(app);
    await app.resume();
    const running = await app.scheduler.enqueue(makeSpec('ivan', { prompt: 'across a restart', steps: 100 }));
    await firstProgress(app, running.job.id);

    const down = once(app.cluster, 'connection');
    await redis.stop();
    expect(await down).toEqual([false]);
    // No Redis: the gateway still answers (the scheduler and SQLite are its own), hands nothing
    // out, and says the job waits for a worker.
    expect(app.scheduler.runnerCount).toBe(0);
    const waiting = await app.scheduler.enqueue(makeSpec('jane', { prompt: 'queued while down', steps: 3 }));
    expect(waiting.position).toBe(1);
    expect(waiting.waitingForRunner).toBe(true);
    const back = once(app.cluster, 'connection');
    await redis.restart();
    expect(await back).toEqual([true]);

    const finals = await Promise.all([running, waiting].map((r) => app.scheduler.waitFor(r.job.id)));
    expect(finals.map((f) => f.type)).toEqual(['done', 'done']);
    for (const r of [running, waiting]) expect(log.of('done', r.job.id)).toHaveLength(1);
    // Told it waited for a worker, then, once Redis was back, given a time again before it started.
    const told = log.of('queued', waiting.job.id) as Extract<JobEvent, { type: 'queued' }>[];
    expect(told[0]).toMatchObject({ waitingForRunner: true });
    expect(told.at(-1)!.waitingForRunner).toBeUndefined();
  }, 60_000);

  it('a worker frozen (SIGSTOP) past its lock: the job completes on the other worker; resumed, it posts nothing twice', async () => {
    const app = await startGateway();
    await Promise.all([startWorker('w1'), startWorker('w2')]);
    await workersAlive(app, 2);
    const log = record(app);
    await app.resume();
    const receipt = await app.scheduler.enqueue(makeSpec('kim', { prompt: 'frozen', steps: 100 }));
    const id = receipt.job.id;
    const { worker: frozen } = await firstProgress(app, id);
    const other = frozen === 'w1' ? 'w2' : 'w1';
    workers.get(frozen)!.kill('SIGSTOP');

    expect((await app.scheduler.waitFor(id)).type).toBe('done');
    expect(log.outcomes).toEqual([{ jobId: id, worker: other, state: 'completed' }]);
    const bothBack = workersAlive(app, 2);
    workers.get(frozen)!.kill('SIGCONT');
    await bothBack;

    // The woken worker finishes its stale copy before it can take another job (one at a time):
    // once it has run a new job, its late completion has been tried and dropped.
    for (let i = 0; i < 20 && !log.outcomes.some((o) => o.worker === frozen); i++) {
      const next = await app.scheduler.enqueue(makeSpec(`user${i}`, { prompt: `after ${i}`, steps: 2 }));
      await app.scheduler.waitFor(next.job.id);
    }
    expect(log.outcomes.some((o) => o.worker === frozen)).toBe(true);
    expect(log.of('done', id)).toHaveLength(1);
    expect(log.outcomes.filter((o) => o.jobId === id)).toHaveLength(1);
  }, 60_000);

  it('where Redis refuses CONFIG (no key-expiry events), a worker killed with SIGKILL is still noticed: the gateway re-reads the workers', async () => {
    await redis.dispose();
    redis = await startRedis({ refuseConfig: true });
    const app = await startGateway({ cluster: { watchIntervalMs: 200 } });
    await startWorker('w1');
    await workersAlive(app, 1);
    const gone = workersAlive(app, 0);
    await stopProcess(workers.get('w1')!, 'SIGKILL');
    expect(await gone).toEqual([]);
    expect(app.scheduler.runnerCount).toBe(0);
    const receipt = await app.scheduler.enqueue(makeSpec('max', { prompt: 'after the only worker died' }));
    expect(receipt.waitingForRunner).toBe(true);
  }, 60_000);

  it('atelier doctor shows Redis, the live workers and the queue, never the password', async () => {
    await redis.dispose();
    redis = await startRedis({ password: 's3cret-password-123' });
    await startWorker('w1');
    const url = redis.url;
    const config = loadConfig({
      env: { ...GATEWAY_ENV, ATELIER_DATA_DIR: dataDir, REDIS_URL: url, ATELIER_CLUSTER__PREFIX: prefix },
      cwd: dataDir,
    });
    const lines: string[] = [];
    await doctor(
      config,
      (line) => lines.push(line),
      () => undefined,
    );
    const text = lines.join('\n');
    expect(text).not.toContain('s3cret');
    expect(text).toMatch(/cluster +serve, Redis \d+\.\d+\.\d+ at redis:\/\/:\*\*\*\*@127\.0\.0\.1/);
    expect(text).toContain('queue: 0 waiting, 0 running');
    expect(text).toContain('1 worker alive');
    expect(text).toMatch(/device 0: paced, idle/);
  }, 60_000);

  it('Redis down when the gateway starts: it starts anyway, takes jobs, and runs them once Redis and a worker are there', async () => {
    await redis.stop();
    const app = await startGateway({ connectWaitMs: 200 });
    await app.resume();
    const receipt = await app.scheduler.enqueue(makeSpec('lena', { prompt: 'waits for redis', steps: 3 }));
    expect(receipt.position).toBe(1);
    expect(receipt.waitingForRunner).toBe(true);
    expect(app.scheduler.runnerCount).toBe(0);
    await redis.restart();
    await startWorker('w1');
    expect((await app.scheduler.waitFor(receipt.job.id)).type).toBe('done');
  }, 60_000);
});
