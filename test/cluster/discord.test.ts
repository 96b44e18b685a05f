/**
 * The distributed mode as people on Discord see it: `atelier serve --role gateway` (bin/atelier.js,
 * its own process, real discord.js) against the Discord simulator, two `atelier worker` processes
 * (the paced pipeline double: each step takes 15 ms however busy the machine) and a real
 * `redis-server`. What crossed each wire is asserted: messages and their revisions in the
 * simulator, jobs handed to BullMQ as a separate observer reads them from Redis. The embedded
 * mode's behaviour is the reference: its scheduler, run on the same requests, gives the order, and
 * an embedded bot on the same simulator gives the messages. The failures (the gateway killed,
 * also between sending an answer and recording it; a worker killed or frozen mid-job, Redis
 * restarted, Cancel pressed on a job a worker runs) are asserted as people see them too: each
 * message's revisions, what else was posted. Waits are on events only.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { serve } from '../../adapters/serve.js';
import { decodeButton } from '../../commands/custom-id.js';
import { runServe } from '../../src/app/index.js';
import { clusterKeys, QUEUE_NAME } from '../../src/cluster/keys.js';
import { decodeProgress, type ProgressFrame } from '../../src/cluster/wire.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore } from '../../src/store/index.js';
import { startRedis, type TestRedis } from '../helpers/redis-server.js';
import { makeSpec, NO_LIMITS, TestPipeline, tempDataDir } from '../scheduler/helpers.js';
import {
  type DiscordSimulator,
  type InteractionHandle,
  type SimMessage,
  type SimUser,
  startDiscordSimulator,
} from '../simulators/discord/index.js';
import { createPipeline } from './fixtures/paced-pipeline.js';
import {
  type RoleProcess,
  repoRoot,
  startGatewayProcess,
  startWorkerProcess,
  stopProcess,
} from './processes.js';

const WAIT = { timeoutMs: 45_000 };
const PREFIX = 'atelier-discord';
const WAITING_LINE = 'waiting for a GPU worker (none is online right now)';

let redis: TestRedis;
let d: DiscordSimulator;
let dataDir: string;
const processes: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(async () => {
  redis = await startRedis();
  d = await startDiscordSimulator({ waitTimeoutMs: WAIT.timeoutMs });
  dataDir = mkdtempSync(join(tmpdir(), 'atelier-cluster-discord-'));
});

afterEach(async () => {
  await Promise.all(processes.splice(0).map((child) => stopProcess(child, 'SIGKILL')));
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await d.stop();
  await redis.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

/** What the gateway and the embedded bot share: the simulator, the admin role, quick edits. */
function botEnv(extra: Record<string, string>): Record<string, string> {
  const adminRole = d.guild.roles.find((role) => role.name === 'Admin')!;
  return {
    DISCORD_TOKEN: d.token,
    DISCORD_API_URL: d.apiUrl,
    ATELIER_LIMITS__ADMINS__DISCORD__ROLE_IDS: adminRole.id,
    ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200',
    ...extra,
  };
}

/**
 * `atelier serve --role gateway` on the simulator; resolves once it is connected. `script`: a
 * fixture entry point that runs the gateway instead of bin/atelier.js (processes.ts).
 */
async function startGateway(extra: Record<string, string> = {}, script?: string): Promise<RoleProcess> {
  const gateway = await startGatewayProcess(
    botEnv({
      REDIS_URL: redis.url,
      ATELIER_CLUSTER__PREFIX: PREFIX,
      ATELIER_DATA_DIR: join(dataDir, 'gateway'),
      ...extra,
    }),
    dataDir,
    script ? { script } : {},
  );
  processes.push(gateway.child);
  return gateway;
}

/** An `atelier worker` whose pipeline double takes `msPerStep` per denoising step. */
async function startWorker(id: string, msPerStep = 15): Promise<RoleProcess> {
  const worker = await startWorkerProcess(id, {
    REDIS_URL: redis.url,
    ATELIER_CLUSTER__PREFIX: PREFIX,
    ATELIER_DATA_DIR: join(dataDir, `worker-${id}`),
    PACED_MS_PER_STEP: String(msPerStep),
  });
  processes.push(worker.child);
  return worker;
}

/**
 * BullMQ's queue as an outsider sees it: the jobs handed to it in order, the ones completed (by
 * which worker), and the most it ever held at once.
 */
async function watchBullMQ() {
  const connection = { host: '127.0.0.1', port: redis.port };
  const events = new QueueEvents(QUEUE_NAME, { connection, prefix: PREFIX });
  const queue = new Queue(QUEUE_NAME, { connection, prefix: PREFIX });
  cleanups.push(async () => {
    await events.close();
    await queue.close();
  });
  await events.waitUntilReady();
  const added: string[] = [];
  const completed: { jobId: string; worker: string }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  events.on('added', ({ jobId }) => {
    added.push(jobId);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
  });
  events.on('completed', ({ jobId, returnvalue }) => {
    inFlight--;
    completed.push({ jobId, worker: (returnvalue as unknown as { worker: string }).worker });
  });
  events.on('failed', () => inFlight--);
  return {
    queue,
    added,
    completed,
    maxInFlight: () => maxInFlight,
    /** Resolves once every one of `jobIds` has completed in BullMQ. */
    allCompleted(jobIds: string[]): Promise<void> {
      return new Promise((resolve) => {
        const check = () => {
          if (!jobIds.every((id) => completed.some((c) => c.jobId === id))) return;
          events.off('completed', check);
          resolve();
        };
        events.on('completed', check);
        check();
      });
    },
  };
}

/**
 * The workers' progress frames (step k/n of which job, on which worker) as an outsider subscribed
 * to the cluster's progress channel hears them, in order.
 */
async function watchProgress() {
  const subscriber = new Redis(redis.url, { maxRetriesPerRequest: null });
  cleanups.push(() => {
    subscriber.disconnect();
  });
  // Redis may be restarted under it: it reconnects and subscribes again by itself.
  subscriber.on('error', () => {});
  const frames: ProgressFrame[] = [];
  const listeners = new Set<(frame: ProgressFrame) => void>();
  subscriber.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
    const frame = decodeProgress(message);
    if (!frame) return;
    frames.push(frame);
    for (const listener of listeners) listener(frame);
  });
  await subscriber.subscribe(clusterKeys(PREFIX).channels.progress);
  return {
    frames,
    of: (jobId: string) => frames.filter((frame) => frame.jobId === jobId),
    /** Resolves with the first frame of `jobId` (at once if one was heard already). */
    first(jobId: string): Promise<ProgressFrame> {
      const heard = frames.find((frame) => frame.jobId === jobId);
      if (heard) return Promise.resolve(heard);
      return new Promise((resolve) => {
        const listener = (frame: ProgressFrame) => {
          if (frame.jobId !== jobId) return;
          listeners.delete(listener);
          resolve(frame);
        };
        listeners.add(listener);
      });
    },
  };
}

/** Resolves once worker `id`'s card is in Redis again (it heartbeats; the gateway hears it). */
async function workerCardBack(id: string): Promise<void> {
  const client = new Redis(redis.url, { maxRetriesPerRequest: null });
  const subscriber = new Redis(redis.url, { maxRetriesPerRequest: null });
  const keys = clusterKeys(PREFIX);
  try {
    const announced = new Promise<void>((resolve) =>
      subscriber.on('message', (_channel: string, message: string) => {
        if (message === `up ${id}`) resolve();
      }),
    );
    await subscriber.subscribe(keys.channels.workers);
    if ((await client.exists(keys.worker(id))) === 1) return;
    await announced;
  } finally {
    client.disconnect();
    subscriber.disconnect();
  }
}

/**
 * The order the embedded mode's scheduler starts the same jobs on two runners: `busy` ones start
 * first and hold both runners while `then` are asked for; with no `busy`, `then` are all asked for
 * before any runner is free (as at a gateway without workers).
 */
async function embeddedStartOrder(busy: [string, string][], then: [string, string][]): Promise<string[]> {
  const temp = tempDataDir();
  const store = openStore({ dataDir: temp.dir });
  const pipeline = new TestPipeline({ hold: true });
  const scheduler = new Scheduler(store, {
    runners: [new JobExecutor({ pipeline, store }), new JobExecutor({ pipeline, store })],
    positionUpdateIntervalMs: 0,
    ...NO_LIMITS,
  });
  const ask = async (jobs: [string, string][]) => {
    for (const [user, prompt] of jobs) await scheduler.enqueue(makeSpec(user, { prompt }));
  };
  try {
    if (busy.length === 0) await ask(then);
    await scheduler.start();
    if (busy.length > 0) {
      await ask(busy);
      await pipeline.nextCall(busy.length - 1);
      await ask(then);
    }
    pipeline.hold = false;
    for (const call of pipeline.calls) call.release();
    await scheduler.onIdle();
    return pipeline.calls.map((call) => call.request.prompt);
  } finally {
    await scheduler.stop();
    store.close();
    temp.cleanup();
  }
}

/** The first answer came inside Discord's 3 s; resolves with the message it made. */
async function answered(interaction: InteractionHandle): Promise<SimMessage> {
  const response = await interaction.waitForResponse();
  expect(response.latencyMs).toBeLessThan(3000);
  return interaction.original() ?? interaction.waitForFollowUp();
}

/** The private answer to `interaction` (the ephemeral response or an ephemeral follow-up). */
async function privateAnswer(interaction: InteractionHandle): Promise<string> {
  await interaction.waitForResponse();
  const original = interaction.original();
  if (original?.ephemeral && !original.deleted && original.content) return original.content;
  return (await interaction.waitForFollowUp((m) => m.ephemeral)).content;
}

/** A revision that shows a finished job: an image and the parameters line. */
const isResultRevision = (revision: { content: string; attachments: unknown[] }) =>
  revision.attachments.length === 1 && / · CFG /.test(revision.content);
const isResult = (message: SimMessage) => isResultRevision(message);

/** The job a message shows, from its Cancel button (`at1:c:<jobId>`). */
function jobIdOf(message: SimMessage): string {
  for (const button of message.buttons) {
    const ref = button.customId ? decodeButton(button.customId) : undefined;
    if (ref?.action === 'cancel') return ref.jobId;
  }
  throw new Error(`no Cancel button on "${message.content}"`);
}

interface Asked {
  prompt: string;
  interaction: InteractionHandle;
  jobId: string;
  /** The message as first answered. */
  first: string;
}

async function imagine(user: SimUser, prompt: string, steps: number, count = 1): Promise<Asked> {
  const interaction = d.slash('imagine', { prompt, steps, count }, { user });
  const message = await answered(interaction);
  expect(message.ephemeral).toBe(false);
  return { prompt, interaction, jobId: jobIdOf(message), first: message.content };
}

/** Each job's message carries its result exactly once, and is the only message about it. */
function expectPostedOnce(jobs: Asked[]): void {
  const general = d.messages(d.channels.general);
  for (const job of jobs) {
    const message = job.interaction.original()!;
    expect(message.channelId).toBe(d.channels.general.id);
    expect(message.history.filter(isResultRevision)).toHaveLength(1);
    expect(general.filter((m) => m.content.includes(`**${job.prompt}**`))).toEqual([message]);
  }
}

// Separate processes on a busy 2-core runner: every test gets minutes, not the global minute.
describe('cluster on Discord (gateway and two workers as processes, BullMQ on Redis)', {
  timeout: 180_000,
}, () => {
  it('jobs asked for with no worker online say they wait for one; two workers then run them in the embedded round-robin order, never more at once than workers, each result posted once', async () => {
    const bull = await watchBullMQ();
    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    const { alice, bob, carol } = d.users;
    const plan: [SimUser, string][] = [
      [alice, 'alice 0'],
      [alice, 'alice 1'],
      [alice, 'alice 2'],
      [bob, 'bob 0'],
      [bob, 'bob 1'],
      [carol, 'carol 0'],
    ];
    const jobs: Asked[] = [];
    for (const [user, prompt] of plan) jobs.push(await imagine(user, prompt, 20));
    for (const job of jobs) {
      expect(job.first).toContain(`**${job.prompt}**`);
      expect(job.first).toContain(`⏳ Queued: `);
      expect(job.first).toContain(WAITING_LINE);
    }
    expect(jobs[1]!.first).toContain('position 2 in the queue');
    const queue = await privateAnswer(d.slash('queue', {}, { user: bob }));
    expect(queue).toMatch(
      new RegExp(`⏳ #2 · ${WAITING_LINE.replace(/[()]/g, '\\$&')} · \`${jobs[3]!.jobId}\``),
    );
    expect(bull.added).toEqual([]);

    // The workers come while an admin holds the queue, so that both take jobs whichever is first up.
    await privateAnswer(d.slash('atelier pause', {}, { user: alice }));
    await Promise.all([startWorker('w1'), startWorker('w2')]);
    expect(await privateAnswer(d.slash('atelier resume', {}, { user: alice }))).toMatch(/resumed/i);
    await Promise.all(jobs.map((job) => job.interaction.waitForOriginal(isResult, WAIT)));

    const promptOf = (jobId: string) => jobs.find((job) => job.jobId === jobId)?.prompt ?? jobId;
    const reference = await embeddedStartOrder(
      [],
      plan.map(([user, prompt]) => [user.username, prompt]),
    );
    expect(reference).toEqual(['alice 0', 'bob 0', 'carol 0', 'alice 1', 'bob 1', 'alice 2']);
    expect(bull.added.map(promptOf)).toEqual(reference);
    // BullMQ never held more jobs than there were workers to take them.
    expect(bull.maxInFlight()).toBe(2);
    expect(new Set(bull.completed.map((c) => c.worker))).toEqual(new Set(['w1', 'w2']));
    expectPostedOnce(jobs);
    // Progress came through from the workers: the bar was shown on the way.
    expect(
      jobs.some((job) => job.interaction.original()!.history.some((r) => /step \d+\/20/.test(r.content))),
    ).toBe(true);
  });

  it('the scheduler alone orders work: with both workers busy a backlog waits in the gateway, not in BullMQ, and a newcomer’s job runs before it', async () => {
    const bull = await watchBullMQ();
    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    // 100 steps × 45 ms: both workers stay busy for 4.5 s while the rest is asked for.
    await Promise.all([startWorker('w1', 45), startWorker('w2', 45)]);
    const { alice, bob } = d.users;
    const long = [await imagine(alice, 'alice long 0', 100), await imagine(alice, 'alice long 1', 100)];
    for (const job of long)
      await job.interaction.waitForOriginal((m) => /step \d+\/100/.test(m.content), WAIT);
    const backlog = [
      await imagine(alice, 'alice 0', 3),
      await imagine(alice, 'alice 1', 3),
      await imagine(alice, 'alice 2', 3),
    ];
    expect(await bull.queue.getJobCounts('wait', 'active')).toEqual({ wait: 0, active: 2 });
    const newcomer = await imagine(bob, 'bob 0', 3);
    expect(newcomer.first).toContain('⏳ Queued: next in line · about');
    expect(await bull.queue.getJobCounts('wait', 'active')).toEqual({ wait: 0, active: 2 });
    expect(long.every((job) => !isResult(job.interaction.original()!))).toBe(true);

    const jobs = [...long, ...backlog, newcomer];
    await Promise.all(jobs.map((job) => job.interaction.waitForOriginal(isResult, WAIT)));
    const promptOf = (jobId: string) => jobs.find((job) => job.jobId === jobId)?.prompt ?? jobId;
    const reference = await embeddedStartOrder(
      [
        ['alice', 'alice long 0'],
        ['alice', 'alice long 1'],
      ],
      [
        ['alice', 'alice 0'],
        ['alice', 'alice 1'],
        ['alice', 'alice 2'],
        ['bob', 'bob 0'],
      ],
    );
    expect(reference.indexOf('bob 0')).toBe(2);
    expect(bull.added.map(promptOf)).toEqual(reference);
    expect(bull.maxInFlight()).toBe(2);
    expectPostedOnce(jobs);
  });

  it('per-user limits and queue caps refuse with exactly the embedded mode’s messages', async () => {
    const limits = {
      ATELIER_LIMITS__USER__IMAGES: '4',
      ATELIER_LIMITS__USER__PER_SECONDS: '600',
      ATELIER_LIMITS__USER__BURST: '4',
      ATELIER_QUEUE__MAX_QUEUED_PER_USER: '2',
      ATELIER_QUEUE__MAX_QUEUED: '4',
    };
    const dave = d.createUser('dave');
    /** The same requests in either mode; returns every private answer, in order. */
    const scenario = async (): Promise<string[]> => {
      const { alice, bob, carol } = d.users;
      const said = [await privateAnswer(d.slash('atelier pause', {}, { user: alice }))];
      const refusal = async (user: SimUser, prompt: string) => {
        const text = await privateAnswer(d.slash('imagine', { prompt, steps: 1 }, { user }));
        said.push(text);
        return text;
      };
      await imagine(carol, 'carol four', 1, 4);
      expect(d.messages(d.channels.general).at(-1)!.content).toContain('carol four');
      expect(await refusal(carol, 'carol one more')).toMatch(/4 images/);
      await imagine(bob, 'bob 1', 1);
      await imagine(bob, 'bob 2', 1);
      expect(await refusal(bob, 'bob 3')).toMatch(/You already have 2 jobs waiting or running/);
      await imagine(dave, 'dave 1', 1);
      expect(await refusal(dave, 'dave 2')).toMatch(/The queue is full \(4 jobs waiting\)/);
      return said;
    };

    // The embedded mode: one process (this one), the same adapters, commands and scheduler.
    const embeddedDir = join(dataDir, 'embedded');
    const config = loadConfig({
      env: { ...botEnv(limits), ATELIER_DATA_DIR: embeddedDir, ATELIER_LOG__LEVEL: 'silent' },
      cwd: dataDir,
    });
    let stop!: () => void;
    const until = new Promise<void>((resolve) => {
      stop = resolve;
    });
    let connected!: () => void;
    const ready = new Promise<void>((resolve) => {
      connected = resolve;
    });
    const embedded = runServe(
      config,
      { surfaces: (context) => serve(context, { until, print: () => connected() }) },
      { pipeline: createPipeline({ msPerStep: 15 }), logger: createLogger({ level: 'silent' }) },
    );
    cleanups.push(async () => {
      stop();
      await embedded.catch(() => {});
    });
    await Promise.race([ready, embedded]);
    const embeddedSaid = await scenario();
    stop();
    await embedded;

    // The gateway, in its own process, on its own data, with two workers online.
    await startGateway({ ...limits, ATELIER_LOG__LEVEL: 'silent' });
    await Promise.all([startWorker('w1'), startWorker('w2')]);
    const clusterSaid = await scenario();

    // Only the times may differ (the clock moved on, and ETAs depend on the runners).
    const times = (text: string) => text.replace(/\d+ (h|min|s)\b/g, '<time>');
    expect(clusterSaid.map(times)).toEqual(embeddedSaid.map(times));
    expect(clusterSaid).toHaveLength(4);
  });

  it('the gateway killed with SIGKILL and started again posts each result that finished meanwhile exactly once, and runs the job it had not handed out', async () => {
    const bull = await watchBullMQ();
    const first = await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    // 100 steps × 25 ms: running on both workers when the gateway dies, finished before it is back.
    await Promise.all([startWorker('w1', 25), startWorker('w2', 25)]);
    const { alice, bob, carol } = d.users;
    const running = [
      await imagine(carol, 'carol while away', 100),
      await imagine(bob, 'bob while away', 100),
    ];
    for (const job of running)
      await job.interaction.waitForOriginal((m) => /step \d+\/100/.test(m.content), WAIT);
    const waiting = await imagine(alice, 'alice not handed out', 3);
    // Just after answering, the gateway records which message shows the job (so that a restart
    // edits it), then edits it with the job's newest view: once that edit is seen, the record is
    // there. (A kill between the answer and the record is the next test's.)
    await waiting.interaction.waitForOriginal((m) => m.history.length > 1, WAIT);
    expect(bull.added).toEqual(running.map((job) => job.jobId));

    const finished = bull.allCompleted(running.map((job) => job.jobId));
    await stopProcess(first.child, 'SIGKILL');
    await finished;
    for (const job of [...running, waiting]) expect(isResult(job.interaction.original()!)).toBe(false);
    const messagesBefore = d.messages(d.channels.general).length;

    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    const jobs = [...running, waiting];
    await Promise.all(jobs.map((job) => job.interaction.waitForOriginal(isResult, WAIT)));
    expectPostedOnce(jobs);
    expect(d.messages(d.channels.general)).toHaveLength(messagesBefore);
    // The results came from the first run on the workers: no job ran twice.
    expect(bull.added.map((id) => jobs.find((job) => job.jobId === id)?.prompt)).toEqual([
      'carol while away',
      'bob while away',
      'alice not handed out',
    ]);
    for (const job of jobs) expect(bull.completed.filter((c) => c.jobId === job.jobId)).toHaveLength(1);
  });

  it('the gateway killed after answering and before recording the answer edits that answer with the result once started again; no second message', async () => {
    // The first gateway stops dead right after answering (fixtures/gateway-dies-after-answer.ts).
    const first = await startGateway(
      {},
      join(repoRoot, 'test', 'cluster', 'fixtures', 'gateway-dies-after-answer.ts'),
    );
    let out = '';
    const answeredJob = new Promise<string>((resolve, reject) => {
      first.child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const found = /\{"answered":"([^"]+)"\}/.exec(out);
        if (found) resolve(found[1]!);
      });
      first.child.once('exit', (code, signal) =>
        reject(
          new Error(
            `the first gateway exited (${code ?? signal}) before recording an answer:\n${first.stderr()}`,
          ),
        ),
      );
    });
    await startWorker('w1');
    const prompt = 'answered by the gateway, then killed';
    const interaction = d.slash('imagine', { prompt, steps: 3 }, { user: d.users.carol });
    const answer = await answered(interaction);
    expect(answer.content).toContain('⏳ Queued');
    // The answer is out; the fixture stops the gateway as it goes to record it (no hang if it
    // never does: the wait is bounded and says so).
    const jobId = await Promise.race([
      answeredJob,
      new Promise<never>((_, reject) =>
        setTimeout(
          () =>
            reject(new Error(`the gateway answered but never went to record the answer; stdout:\n${out}`)),
          WAIT.timeoutMs,
        ).unref(),
      ),
    ]);
    expect(jobIdOf(answer)).toBe(jobId);
    await stopProcess(first.child, 'SIGKILL');
    // Nothing of the answer was recorded: the job's reply target has no message id.
    const store = openStore({ dataDir: join(dataDir, 'gateway') });
    try {
      expect(store.jobs.get(jobId)?.spec.reply.messageId).toBeUndefined();
      expect(store.results.messagesOf(jobId)).toEqual([]);
    } finally {
      store.close();
    }

    await startGateway();
    const result = await interaction.waitForOriginal(isResult, WAIT);
    expect(result.id).toBe(answer.id);
    expectPostedOnce([{ prompt, interaction, jobId, first: answer.content }]);
  });

  it('a worker killed with SIGKILL mid-job: the other worker takes the job over and its message gets the result once, nothing else posted', async () => {
    const bull = await watchBullMQ();
    const progress = await watchProgress();
    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    const [w1, w2] = await Promise.all([startWorker('w1', 30), startWorker('w2', 30)]);
    const workers = new Map([
      ['w1', w1],
      ['w2', w2],
    ]);
    // 100 steps × 30 ms: well under way when its worker dies.
    const job = await imagine(d.users.alice, 'killed mid-job', 100);
    const { worker: victim } = await progress.first(job.jobId);
    const survivor = victim === 'w1' ? 'w2' : 'w1';
    await job.interaction.waitForOriginal((m) => /step \d+\/100/.test(m.content), WAIT);
    const messagesBefore = d.messages(d.channels.general).length;
    await stopProcess(workers.get(victim)!.child, 'SIGKILL');

    const result = await job.interaction.waitForOriginal(isResult, WAIT);
    expect(result.content).toContain('**killed mid-job**');
    expectPostedOnce([job]);
    expect(d.messages(d.channels.general)).toHaveLength(messagesBefore);
    // Taken over by BullMQ's stalled-job check: run again on the survivor, completed once, by it.
    const frames = progress.of(job.jobId);
    const takenOver = frames.findIndex((frame) => frame.worker === survivor);
    expect(takenOver).toBeGreaterThan(0);
    expect(frames.slice(takenOver).every((frame) => frame.worker === survivor)).toBe(true);
    expect(bull.completed.filter((c) => c.jobId === job.jobId)).toEqual([
      { jobId: job.jobId, worker: survivor },
    ]);

    // The next job runs on the survivor.
    const next = await imagine(d.users.bob, 'after the kill', 3);
    await next.interaction.waitForOriginal(isResult, WAIT);
    expect(bull.completed.find((c) => c.jobId === next.jobId)?.worker).toBe(survivor);
    expectPostedOnce([job, next]);
    expect(d.messages(d.channels.general)).toHaveLength(messagesBefore + 1);
  }, 120_000);

  it('a worker frozen (SIGSTOP) past its lock and resumed (SIGCONT): the job completes on the other worker and its result appears once in the channel', async () => {
    const bull = await watchBullMQ();
    const progress = await watchProgress();
    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    const [w1, w2] = await Promise.all([startWorker('w1'), startWorker('w2')]);
    const workers = new Map([
      ['w1', w1],
      ['w2', w2],
    ]);
    const job = await imagine(d.users.alice, 'frozen past its lock', 100);
    const { worker: frozen } = await progress.first(job.jobId);
    const other = frozen === 'w1' ? 'w2' : 'w1';
    workers.get(frozen)!.child.kill('SIGSTOP');

    // The lock (2 s) runs out; the other worker's stalled check takes the job and finishes it.
    await job.interaction.waitForOriginal(isResult, WAIT);
    expect(bull.completed.filter((c) => c.jobId === job.jobId)).toEqual([
      { jobId: job.jobId, worker: other },
    ]);
    const back = workerCardBack(frozen);
    workers.get(frozen)!.child.kill('SIGCONT');
    await back;

    // The woken worker finishes its stale copy before it can take another job (one at a time):
    // once it has run a new one, its late completion has been tried and dropped.
    const jobs = [job];
    for (let i = 0; i < 20 && !bull.completed.some((c) => c.worker === frozen); i++) {
      const next = await imagine(d.users.bob, `after the thaw ${i}`, 2);
      await next.interaction.waitForOriginal(isResult, WAIT);
      await bull.allCompleted([next.jobId]);
      jobs.push(next);
    }
    expect(bull.completed.some((c) => c.worker === frozen)).toBe(true);
    expect(bull.completed.filter((c) => c.jobId === job.jobId)).toHaveLength(1);
    expectPostedOnce(jobs);
    expect(d.messages(d.channels.general).filter(isResult)).toHaveLength(jobs.length);
    expect(d.messages(d.channels.general)).toHaveLength(jobs.length);
  }, 180_000);

  it('Redis restarted (AOF on) with jobs queued and one running: the gateway says new jobs wait for a worker meanwhile, and every job’s message gets its result once', async () => {
    await redis.dispose();
    redis = await startRedis({ aof: true });
    const progress = await watchProgress();
    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    await startWorker('w1');
    const { alice, bob, carol } = d.users;
    const running = await imagine(alice, 'running across the restart', 100);
    await progress.first(running.jobId);
    const queued = [
      await imagine(bob, 'queued before the restart', 3),
      await imagine(carol, 'queued too', 3),
    ];
    for (const job of queued) expect(job.first).toContain('⏳ Queued: ');

    await redis.stop();
    // No Redis: the gateway has no worker to hand jobs to, and says so on the jobs still waiting.
    await queued[1]!.interaction.waitForOriginal((m) => m.content.includes(WAITING_LINE), WAIT);
    const whileDown = await imagine(alice, 'asked while Redis is down', 3);
    expect(whileDown.first).toContain(WAITING_LINE);
    await redis.restart();

    const jobs = [running, ...queued, whileDown];
    await Promise.all(jobs.map((job) => job.interaction.waitForOriginal(isResult, WAIT)));
    expectPostedOnce(jobs);
    expect(d.messages(d.channels.general)).toHaveLength(jobs.length);
  }, 120_000);

  it('Cancel pressed on a job running on a worker: the worker stops it between steps, the message says cancelled, and the next job runs', async () => {
    const bull = await watchBullMQ();
    const progress = await watchProgress();
    await startGateway({ ATELIER_LIMITS__USER__ENABLED: 'false' });
    // 100 steps × 200 ms = 20 s: only a cancel that reaches the worker frees it sooner.
    await startWorker('w1', 200);
    const { alice, bob } = d.users;
    const long = await imagine(alice, 'cancelled while running', 100);
    const shown = await long.interaction.waitForOriginal((m) => /step \d+\/100/.test(m.content), WAIT);
    const next = await imagine(bob, 'next after the cancel', 3);
    expect(next.first).toContain('⏳ Queued: next in line');

    const cancelButton = shown.buttons.find(
      (b) => b.customId && decodeButton(b.customId)?.action === 'cancel',
    )!;
    const click = d.click(shown, cancelButton.customId!, { user: alice });
    expect((await click.waitForResponse()).latencyMs).toBeLessThan(3000);
    expect(await privateAnswer(click)).toBe('✖️ Cancelled.');
    const cancelled = await long.interaction.waitForOriginal((m) => /✖️ Cancelled\./.test(m.content), WAIT);
    expect(cancelled.content).toContain('**cancelled while running**');
    await next.interaction.waitForOriginal(isResult, WAIT);

    // The worker stopped the long job before it took the next one: no step of it came after.
    const frames = progress.frames.filter((f) => f.jobId === long.jobId || f.jobId === next.jobId);
    const firstOfNext = frames.findIndex((f) => f.jobId === next.jobId);
    expect(firstOfNext).toBeGreaterThan(0);
    expect(frames.slice(firstOfNext).some((f) => f.jobId === long.jobId)).toBe(false);
    expect(Math.max(...progress.of(long.jobId).map((f) => f.step))).toBeLessThan(100);
    expect(bull.completed.map((c) => c.jobId)).toEqual([next.jobId]);

    // On Discord: the long job's message never showed a result, and progress stopped at the cancel.
    const message = long.interaction.original()!;
    expect(message.history.some(isResultRevision)).toBe(false);
    const cancelledAt = message.history.findIndex((r) => /✖️ Cancelled\./.test(r.content));
    expect(message.history.slice(cancelledAt).every((r) => !/step \d+\/100/.test(r.content))).toBe(true);
    expect(message.content).toMatch(/✖️ Cancelled\./);
    expectPostedOnce([next]);
    // Public: the two jobs' messages; besides, only the one who pressed Cancel was told, privately.
    expect(d.messages(d.channels.general).filter((m) => !m.ephemeral)).toEqual([
      message,
      next.interaction.original(),
    ]);
  }, 120_000);
});
