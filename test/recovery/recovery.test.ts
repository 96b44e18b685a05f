import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/jobs/types.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec, TestPipeline, tempDataDir } from '../scheduler/helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');
const NOW = 1_750_000_000_000;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts the bot fixture and collects its JSON lines until it reports a job running. */
async function startCrashingBot(
  dataDir: string,
): Promise<{ child: ChildProcess; lines: Record<string, string>[] }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'fixtures', 'crashing-bot.ts'), dataDir],
    {
      cwd: repoRoot,
      env: { ...process.env, ATELIER_TEST_NOW: String(NOW) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const lines: Record<string, string>[] = [];
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`bot exited early (${code}):\n${stderr}`))),
  );
  const running = (async () => {
    for await (const line of createInterface({ input: child.stdout! })) {
      const message = JSON.parse(line) as Record<string, string>;
      lines.push(message);
      if (message.running) return;
    }
  })();
  await Promise.race([running, exited]);
  return { child, lines };
}

function bucketRows(store: Store) {
  return store.db.prepare('SELECT key, tokens, updated_at FROM rate_buckets ORDER BY key').all();
}

describe('restart recovery', () => {
  it('after SIGKILL mid-job, runs every queued or running job exactly once more, in order, and keeps buckets', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const { child, lines } = await startCrashingBot(temp.dir);
    const killed = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    expect(await killed).toBe('SIGKILL');

    const finished = lines.find((l) => l.finished)!.finished!;
    const queued = lines.filter((l) => l.queued).map((l) => ({ id: l.queued!, prompt: l.prompt! }));
    expect(lines.at(-1)).toEqual({ running: 'running at the crash' });

    const store = openStore({ dataDir: temp.dir });
    cleanups.push(() => store.close());
    const bucketsBefore = bucketRows(store);
    expect(store.jobs.get(queued[0]!.id)).toMatchObject({ state: 'running', attempts: 1 });

    const pipeline = new TestPipeline();
    const scheduler = new Scheduler(store, {
      runners: [new JobExecutor({ pipeline, store })],
      clock: () => NOW,
      positionUpdateIntervalMs: 0,
    });
    cleanups.push(() => scheduler.stop());
    const events: JobEvent[] = [];
    scheduler.on('job', (event) => events.push(event));
    const report = await scheduler.start();
    expect(report).toEqual({ requeued: queued.map((q) => q.id), failed: [], redelivered: [] });
    await scheduler.onIdle();

    // Each unfinished job ran exactly once: the one running at the crash first, then round-robin.
    expect(pipeline.calls.map((c) => c.request.prompt)).toEqual([
      'running at the crash',
      'alice waiting',
      'bob waiting 1',
      'carol waiting',
      'bob waiting 2',
    ]);
    for (const { id } of queued) {
      expect(events.filter((e) => e.jobId === id && e.type === 'done')).toHaveLength(1);
      expect(events.filter((e) => e.jobId === id).map((e) => e.type)[0]).toBe('queued');
      const job = store.jobs.get(id)!;
      expect(job.state).toBe('done');
      expect(job.attempts).toBe(id === queued[0]!.id ? 2 : 1);
      for (const image of scheduler.getJob(id)!.result!.images) expect(existsSync(image.path)).toBe(true);
    }
    // The job finished before the crash was not run or posted again, and its message still works.
    expect(events.some((e) => e.jobId === finished)).toBe(false);
    const clicked = scheduler.findJobByMessage({
      platform: 'discord',
      channelId: 'channel-1',
      messageId: 'result-message',
    });
    expect(clicked?.id).toBe(finished);
    expect(existsSync(clicked!.result!.images[0]!.path)).toBe(true);

    // Buckets are as the killed process left them, and still enforced.
    expect(bucketRows(store)).toEqual(bucketsBefore);
    await expect(scheduler.enqueue(makeSpec('alice'))).rejects.toMatchObject({ limit: 'user' });
    await expect(scheduler.enqueue(makeSpec('bob', { count: 2 }))).rejects.toMatchObject({ limit: 'user' });
    await scheduler.enqueue(makeSpec('bob', { count: 1 }));
  });

  it('gives up on a job that was running during maxAttempts crashes', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const store = openStore({ dataDir: temp.dir });
    cleanups.push(() => store.close());
    store.jobs.insert('poison', makeSpec('alice'), NOW);
    for (let i = 0; i < 3; i++) store.jobs.markRunning('poison', NOW);

    const pipeline = new TestPipeline();
    const scheduler = new Scheduler(store, {
      runners: [new JobExecutor({ pipeline, store })],
      maxAttempts: 3,
    });
    cleanups.push(() => scheduler.stop());
    const events: JobEvent[] = [];
    scheduler.on('job', (event) => events.push(event));
    expect((await scheduler.start()).failed).toEqual(['poison']);
    expect(events).toEqual([
      {
        type: 'failed',
        jobId: 'poison',
        reason: 'job was running during 3 crashes or restarts; not starting it again',
        userMessage:
          'This job was interrupted too many times and was dropped. Please try again, maybe with a different prompt.',
      },
    ]);
    expect(pipeline.calls).toHaveLength(0);
  });

  it('sends done again for a result finished but never confirmed posted', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const first = openStore({ dataDir: temp.dir });
    const pipeline = new TestPipeline();
    const before = new Scheduler(first, { runners: [new JobExecutor({ pipeline, store: first })] });
    await before.start();
    const posted = await before.enqueue(makeSpec('alice'));
    const unposted = await before.enqueue(makeSpec('bob'));
    await before.onIdle();
    before.markDelivered(posted.job.id);
    await before.stop();
    first.close();

    const store = openStore({ dataDir: temp.dir });
    cleanups.push(() => store.close());
    const after = new Scheduler(store, { runners: [new JobExecutor({ pipeline, store })] });
    cleanups.push(() => after.stop());
    const events: JobEvent[] = [];
    after.on('job', (event) => events.push(event));
    expect((await after.start()).redelivered).toEqual([unposted.job.id]);
    expect(events).toEqual([
      { type: 'done', jobId: unposted.job.id, result: store.getJob(unposted.job.id)!.result },
    ]);
  });
});
