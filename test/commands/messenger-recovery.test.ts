/**
 * A job of an earlier run whose answer was sent but never recorded (the process died between the
 * two): before posting its result anew, the messenger asks the adapter for that answer
 * (`ChatAdapter.findAnswer`, from the reply target stored with the job) and edits it; it asks
 * again while the platform cannot be asked, and posts anew only when there is nothing to find.
 * Jobs of this run are never looked up: their answer is on its way. The Discord side, through the
 * simulator and a real SIGKILL, is in test/adapters/discord-e2e.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { JobMessenger } from '../../commands/messenger.js';
import type { PostedMessage } from '../../commands/types.js';
import { newJobId } from '../../src/jobs/ids.js';
import type { JobSpec, ReplyTarget } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { JobExecutor } from '../../src/scheduler/executor.js';
import { Scheduler } from '../../src/scheduler/index.js';
import { openStore, type Store } from '../../src/store/index.js';
import { FakeAdapter, type FakeMessage } from '../helpers/fake-adapter.js';
import { makeSpec, NO_LIMITS, TestPipeline, tempDataDir } from '../scheduler/helpers.js';

/** A Discord-like adapter that can be asked for an interaction's answer; `answer` decides. */
class LookingAdapter extends FakeAdapter {
  readonly lookups: { target: ReplyTarget; jobId: string }[] = [];
  constructor(private readonly answer: (attempt: number) => Promise<PostedMessage | undefined>) {
    super('discord');
  }
  findAnswer(target: ReplyTarget, jobId: string): Promise<PostedMessage | undefined> {
    this.lookups.push({ target, jobId });
    return this.answer(this.lookups.length);
  }
}

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A store with one job an earlier run enqueued (and answered) without recording the answer. */
function earlierRun(): { store: Store; jobId: string; spec: JobSpec } {
  const temp = tempDataDir();
  cleanups.push(temp.cleanup);
  const store = openStore({ dataDir: temp.dir });
  cleanups.push(() => store.close());
  const spec = makeSpec('alice', { prompt: 'answered before the crash' });
  spec.reply = { ...spec.reply, extra: { interaction: { token: 'stored before the answer went out' } } };
  const createdAt = Date.now() - 1000;
  const jobId = newJobId(createdAt);
  store.jobs.insert(jobId, spec, createdAt);
  return { store, jobId, spec };
}

/** This run: the scheduler recovers the job, the messenger shows it through `adapter`. */
async function restart(store: Store, adapter: FakeAdapter) {
  const scheduler = new Scheduler(store, {
    runners: [new JobExecutor({ pipeline: new TestPipeline(), store })],
    positionUpdateIntervalMs: 0,
    ...NO_LIMITS,
  });
  const messenger = new JobMessenger(scheduler, store, createLogger({ level: 'silent' }), {
    minEditIntervalMs: 0,
    orphanAfterMs: 0,
  });
  messenger.addAdapter(adapter);
  messenger.start();
  cleanups.push(async () => {
    await messenger.stop();
    await scheduler.stop();
  });
  await scheduler.start();
  return { scheduler, messenger };
}

const showsResult = (m: FakeMessage) => m.current.image !== undefined;

describe('a result whose answer an earlier run sent but did not record', () => {
  it('edits that answer, asking again while the platform cannot be asked; nothing is posted anew', async () => {
    const { store, jobId, spec } = earlierRun();
    let answer: PostedMessage | undefined;
    const answered = new LookingAdapter(async (attempt): Promise<PostedMessage | undefined> => {
      if (attempt === 1) throw new Error('the surface is not connected yet');
      return answer;
    });
    // What the platform shows: the answer the killed process sent.
    answer = await answered.post(spec.reply, { text: '⏳ Queued: next in line' });

    const { messenger } = await restart(store, answered);
    const result = await answered.waitFor(showsResult);
    await messenger.stop(); // the edit under way is confirmed
    expect(result.posted.messageId).toBe(answer.messageId);
    expect(answered.messages).toHaveLength(1);
    expect(answered.lookups.map((l) => l.jobId)).toEqual([jobId, jobId]);
    expect(answered.lookups[0]!.target.extra).toEqual(spec.reply.extra);
    expect(store.results.messagesOf(jobId).map((m) => m.messageId)).toEqual([answer.messageId]);
    expect(store.jobs.get(jobId)!.spec.reply.messageId).toBe(answer.messageId);
    expect(store.jobs.undelivered(0).map((job) => job.id)).not.toContain(jobId);
  });

  it('posts the result anew when the platform has no such answer (the process died before answering)', async () => {
    const { store, jobId } = earlierRun();
    const unanswered = new LookingAdapter(async () => undefined);
    const { messenger } = await restart(store, unanswered);
    const result = await unanswered.waitFor(showsResult);
    await messenger.stop(); // the post under way is recorded
    expect(unanswered.messages).toHaveLength(1);
    expect(unanswered.lookups).toHaveLength(1);
    expect(store.results.messagesOf(jobId).map((m) => m.messageId)).toEqual([result.posted.messageId]);
  });

  it('never looks up a job of this run: its answer is on its way', async () => {
    const { store } = earlierRun();
    const adapter = new LookingAdapter(async () => undefined);
    const { scheduler, messenger } = await restart(store, adapter);
    await adapter.waitFor(showsResult);
    const spec = makeSpec('bob', { prompt: 'of this run' });
    const receipt = await scheduler.enqueue(spec);
    messenger.attach(receipt.job.id, await adapter.post(spec.reply, { text: '⏳ Queued' }));
    await adapter.waitFor((m) => showsResult(m) && m.current.text.includes('of this run'));
    expect(adapter.lookups.map((l) => l.jobId)).not.toContain(receipt.job.id);
    expect(adapter.messages).toHaveLength(2);
  });
});
