/**
 * One unreadable job row (a spec that is not JSON, `{}`, or lacking what a job has) in a real
 * SQLite file must not stop the start: the real start path (createApp → start) fails that job,
 * logs one line, tells its user where the row still names the conversation, and runs the rest.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { JobMessenger } from '../../commands/messenger.js';
import { type AtelierApp, createApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { JobEvent } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { openStore } from '../../src/store/index.js';
import { FakeAdapter } from '../helpers/fake-adapter.js';
import { makeSpec, TestPipeline, tempDataDir } from './helpers.js';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const USER_MESSAGE =
  'This job could not be read back after the bot restarted, so it was dropped. Please ask for it again.';

/** A data dir whose atelier.db holds good jobs and bad rows, written as a damaged file would have them. */
function writeDatabase(dir: string): void {
  const store = openStore({ dataDir: dir });
  store.jobs.insert('good-1', makeSpec('alice', { prompt: 'first good job' }), 1);
  store.jobs.insert('not-json', makeSpec('bob', { prompt: 'garbled' }), 2);
  store.jobs.insert('empty', makeSpec('carol', { prompt: 'emptied' }), 3);
  store.jobs.insert('no-params', makeSpec('dave', { prompt: 'half' }), 4);
  store.jobs.insert('nowhere', makeSpec('erin', { prompt: 'lost' }), 5);
  store.jobs.insert('good-2', makeSpec('alice', { prompt: 'second good job' }), 6);
  store.jobs.markRunning('empty', 7);
  const set = store.db.prepare<[string, string]>('UPDATE jobs SET spec = ? WHERE id = ?');
  set.run('{"kind":"txt2img","requester":{"platf', 'not-json');
  set.run('{}', 'empty');
  const half = makeSpec('dave') as unknown as Record<string, unknown>;
  delete half.params;
  set.run(JSON.stringify(half), 'no-params');
  set.run('\u0000garbage', 'nowhere');
  store.db.prepare("UPDATE jobs SET channel_id = NULL WHERE id = 'nowhere'").run();
  store.close();
}

interface Started {
  app: AtelierApp;
  pipeline: TestPipeline;
  events: JobEvent[];
  logs: Record<string, unknown>[];
}

/** The real start path, as `atelier serve` takes it, with a test pipeline and a captured log. */
async function start(dir: string, subscribe?: (app: AtelierApp) => void): Promise<Started> {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  const config = loadConfig({ env: { ATELIER_DATA_DIR: dir }, cwd: dir });
  const pipeline = new TestPipeline();
  const app = await createApp(config, { pipeline, logger: createLogger({ level: 'info', destination }) });
  cleanups.push(() => app.close());
  const events: JobEvent[] = [];
  app.scheduler.on('job', (event) => events.push(event));
  subscribe?.(app);
  await app.load();
  return { app, pipeline, events, logs };
}

describe('an unreadable job row at start-up', () => {
  it('is failed with its reason, logged in one line, told to its user, and the other jobs run', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    writeDatabase(temp.dir);

    const { app, pipeline, events, logs } = await start(temp.dir);
    const report = await app.resume();
    await app.scheduler.onIdle();

    // Running rows first, then queued ones, as recovery reads them.
    expect(report.failed).toEqual(['empty', 'not-json', 'no-params', 'nowhere']);
    expect(report.requeued).toEqual(['good-1', 'good-2']);
    expect(pipeline.calls.map((c) => c.request.prompt)).toEqual(['first good job', 'second good job']);

    // The same `failed` event as any failed job, where the row still names the conversation.
    const failed = events.filter((e) => e.type === 'failed');
    expect(failed.map((e) => e.jobId)).toEqual(['empty', 'not-json', 'no-params']);
    expect(failed[1]).toEqual({
      type: 'failed',
      jobId: 'not-json',
      reason:
        'the stored job row is unreadable (spec is not valid JSON (at character 37)); it was failed instead of run',
      userMessage: USER_MESSAGE,
    });
    expect(failed[0]).toMatchObject({
      reason: expect.stringContaining('(spec lacks kind, requester, params, reply)'),
    });
    expect(failed[2]).toMatchObject({ reason: expect.stringContaining('(spec lacks params)') });

    const store = app.store;
    for (const id of ['not-json', 'empty', 'no-params', 'nowhere']) {
      expect(store.jobs.get(id)).toMatchObject({
        state: 'failed',
        error: expect.stringMatching(/^the stored job row is unreadable/),
      });
    }
    // Who asked and where still read from the row's own columns.
    expect(store.jobs.get('empty')!.spec).toMatchObject({
      requester: { platform: 'discord', userId: 'carol' },
      reply: { platform: 'discord', channelId: 'channel-1' },
    });
    expect(store.jobs.get('good-2')).toMatchObject({ state: 'done' });

    const lines = logs.filter((l) => String(l.msg).includes('stored row is unreadable'));
    expect(lines.map((l) => [l.level, l.jobId])).toEqual([
      ['warn', 'empty'],
      ['warn', 'not-json'],
      ['warn', 'no-params'],
      ['warn', 'nowhere'],
    ]);
    expect(lines[0]!.msg).toBe(
      'job empty failed at start-up: its stored row is unreadable (spec lacks kind, requester, params, reply); it will not run',
    );
    expect(lines.map((l) => l.told)).toEqual([true, true, true, false]);
  });

  it('never again: the next start finds nothing to quarantine and lists the failed job', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    writeDatabase(temp.dir);
    const first = await start(temp.dir);
    await first.app.resume();
    await first.app.scheduler.onIdle();
    await first.app.close();

    const second = await start(temp.dir);
    const report = await second.app.resume();
    expect(report).toMatchObject({ requeued: [], failed: [] });
    expect(second.events.filter((e) => e.type === 'failed')).toEqual([]);
    const bobs = second.app.store.jobs.list({ owner: { platform: 'discord', userId: 'bob' } });
    expect(bobs.map((j) => [j.id, j.state])).toEqual([['not-json', 'failed']]);
  });

  it('tells the user in the conversation the row names, through the messenger', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    writeDatabase(temp.dir);
    const discord = new FakeAdapter('discord');
    let messenger!: JobMessenger;
    const { app } = await start(temp.dir, (a) => {
      messenger = new JobMessenger(a.scheduler, a.store, a.logger, { orphanAfterMs: 0 });
      messenger.addAdapter(discord);
      messenger.start();
    });
    cleanups.push(() => messenger.stop());
    await app.resume();
    await app.scheduler.onIdle();
    await expect
      .poll(() => discord.messages.filter((m) => m.current.text?.includes(USER_MESSAGE)).length)
      .toBe(3);
    const told = discord.messages.find((m) => m.current.text?.includes('<@carol>'))!;
    expect(told.posted.channelId).toBe('channel-1');
    expect(told.current.text).toBe(`**(unreadable job)** — <@carol>\n⚠️ ${USER_MESSAGE}`);
  });
});

describe('other stored values that cannot be read', () => {
  it('read as unset: a garbled pause flag, team settings and message details do not stop a start', async () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const store = openStore({ dataDir: temp.dir });
    store.jobs.insert('job', makeSpec('alice', { teamId: 'guild-1' }), 1);
    store.db.prepare("INSERT INTO flags (key, value) VALUES ('queue.paused', 'tru')").run();
    store.db
      .prepare(
        "INSERT INTO team_settings (platform, team_id, settings, updated_at) VALUES ('discord', 'guild-1', '{', 1)",
      )
      .run();
    store.results.recordMessage('job', { platform: 'discord', channelId: 'c', messageId: 'm' }, 1);
    store.db.prepare("UPDATE job_messages SET extra = 'nope' WHERE job_id = 'job'").run();
    store.close();

    const { app, pipeline } = await start(temp.dir);
    expect((await app.resume()).requeued).toEqual(['job']);
    await app.scheduler.onIdle();
    expect(pipeline.calls).toHaveLength(1);
    expect(app.store.results.messagesOf('job')).toEqual([
      { platform: 'discord', channelId: 'c', messageId: 'm', extra: {} },
    ]);
    expect(app.store.teamSettings.get('discord', 'guild-1')).toEqual({});
  });
});
