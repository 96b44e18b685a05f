import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { DATABASE_FILE, migrations, openStore, type Store, schemaVersion } from '../../src/store/index.js';
import { makeSpec, tempDataDir } from '../scheduler/helpers.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function fresh(): { store: Store; dir: string } {
  const temp = tempDataDir();
  const store = openStore({ dataDir: temp.dir });
  cleanups.push(() => {
    store.close();
    temp.cleanup();
  });
  return { store, dir: temp.dir };
}

describe('openStore', () => {
  it('creates <dataDir>/atelier.db in WAL mode at the newest schema version', () => {
    const { store, dir } = fresh();
    expect(existsSync(join(dir, DATABASE_FILE))).toBe(true);
    expect(store.health()).toEqual({
      schemaVersion: migrations.at(-1)!.version,
      integrity: 'ok',
      journalMode: 'wal',
    });
  });

  it('re-opens an existing database without migrating it again, keeping its rows', () => {
    const { store, dir } = fresh();
    store.jobs.insert('job1', makeSpec('alice'), 1000);
    store.close();
    const again = openStore({ dataDir: dir });
    try {
      expect(again.jobs.get('job1')?.state).toBe('queued');
      expect(schemaVersion(again.db)).toBe(migrations.length);
    } finally {
      again.close();
    }
  });

  it('refuses a database written by a newer Atelier, naming the versions', () => {
    const temp = tempDataDir();
    cleanups.push(temp.cleanup);
    const db = new Database(join(temp.dir, DATABASE_FILE));
    db.pragma('user_version = 99');
    db.close();
    expect(() => openStore({ dataDir: temp.dir })).toThrow(ConfigError);
    expect(() => openStore({ dataDir: temp.dir })).toThrow(
      /schema version 99, newer than this Atelier knows/,
    );
  });
});

describe('JobsRepository', () => {
  it('stores a job with its spec and walks it through running to done', () => {
    const { store } = fresh();
    const spec = makeSpec('alice', { teamId: 'guild-1' });
    const seq = store.jobs.insert('job1', spec, 1000);
    expect(seq).toBeGreaterThan(0);
    expect(store.jobs.get('job1')).toMatchObject({
      id: 'job1',
      spec,
      state: 'queued',
      createdAt: 1000,
      attempts: 0,
    });
    expect(store.jobs.markRunning('job1', 2000)).toBe(1);
    expect(store.jobs.finish('job1', 'done', 3000)).toBe(true);
    expect(store.jobs.get('job1')).toMatchObject({
      state: 'done',
      startedAt: 2000,
      finishedAt: 3000,
      attempts: 1,
    });
    // A finished job cannot be finished or started again.
    expect(store.jobs.finish('job1', 'failed', 4000)).toBe(false);
    expect(store.jobs.markRunning('job1', 4000)).toBe(0);
  });

  it('lists unfinished jobs running first, then queued, each in queue order', () => {
    const { store } = fresh();
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.jobs.insert(id, makeSpec('alice'), 1000);
    store.jobs.markRunning('c', 1100);
    store.jobs.markRunning('e', 1200);
    store.jobs.finish('b', 'cancelled', 1300, { cancelledBy: 'discord:alice' });
    expect(store.jobs.unfinished().map((job) => job.id)).toEqual(['c', 'e', 'a', 'd']);
  });

  it('lists one user’s jobs newest first, filtered by state', () => {
    const { store } = fresh();
    store.jobs.insert('a1', makeSpec('alice'), 1);
    store.jobs.insert('b1', makeSpec('bob'), 2);
    store.jobs.insert('a2', makeSpec('alice'), 3);
    store.jobs.finish('a1', 'failed', 4, { error: 'boom' });
    expect(store.jobs.list({ owner: { platform: 'discord', userId: 'alice' } }).map((job) => job.id)).toEqual(
      ['a2', 'a1'],
    );
    expect(store.jobs.list({ states: ['failed'] })).toMatchObject([{ id: 'a1', error: 'boom' }]);
  });

  it('updates the reply target without losing the rest of the spec', () => {
    const { store } = fresh();
    const spec = makeSpec('alice');
    store.jobs.insert('job1', spec, 1);
    store.jobs.updateReply('job1', { messageId: 'm-1' });
    expect(store.jobs.get('job1')?.spec).toEqual({ ...spec, reply: { ...spec.reply, messageId: 'm-1' } });
    expect(store.jobs.updateReply('missing', { messageId: 'x' })).toBeUndefined();
  });

  it('finds done jobs whose result no adapter confirmed posting', () => {
    const { store } = fresh();
    for (const id of ['old', 'posted', 'pending']) {
      store.jobs.insert(id, makeSpec('alice'), 1);
      store.jobs.markRunning(id, 2);
    }
    store.jobs.finish('old', 'done', 10);
    store.jobs.finish('posted', 'done', 100);
    store.jobs.finish('pending', 'done', 100);
    store.jobs.markDelivered('posted', 101);
    expect(store.jobs.undelivered(50).map((job) => job.id)).toEqual(['pending']);
  });
});

describe('ResultsRepository', () => {
  it('keeps image paths relative to the data dir, so a moved data dir still finds its images', () => {
    const { store, dir } = fresh();
    store.jobs.insert('job1', makeSpec('alice', { count: 2 }), 1);
    store.transaction(() => {
      store.jobs.finish('job1', 'done', 5);
      store.results.save(
        'job1',
        {
          images: [
            { path: join(store.imageDir('job1'), '0-7.png'), width: 64, height: 64, seed: 7 },
            { path: join(store.imageDir('job1'), '1-8.png'), width: 64, height: 64, seed: 8 },
          ],
          gridPath: join(store.imageDir('job1'), 'grid.png'),
          model: 'sd3.5_large',
          promptTruncated: true,
        },
        5,
      );
    });
    const stored = store.db.prepare('SELECT path FROM result_images ORDER BY idx').pluck().all();
    expect(stored).toEqual([join('images', 'job1', '0-7.png'), join('images', 'job1', '1-8.png')]);
    store.close();

    const moved = `${dir}-moved`;
    renameSync(dir, moved);
    cleanups.push(() => renameSync(moved, dir));
    const reopened = openStore({ dataDir: moved });
    try {
      expect(reopened.getJob('job1')?.result).toEqual({
        images: [
          { path: join(moved, 'images', 'job1', '0-7.png'), width: 64, height: 64, seed: 7 },
          { path: join(moved, 'images', 'job1', '1-8.png'), width: 64, height: 64, seed: 8 },
        ],
        gridPath: join(moved, 'images', 'job1', 'grid.png'),
        model: 'sd3.5_large',
        promptTruncated: true,
      });
      expect(reopened.results.image('job1', 1)?.seed).toBe(8);
      expect(reopened.results.image('job1', 2)).toBeUndefined();
    } finally {
      reopened.close();
    }
  });

  it('resolves a chat message back to its job', () => {
    const { store } = fresh();
    store.jobs.insert('job1', makeSpec('alice'), 1);
    store.results.recordMessage('job1', { platform: 'slack', channelId: 'C1', messageId: '1712.0001' }, 2);
    store.results.recordMessage('job1', { platform: 'slack', channelId: 'C1', messageId: '1712.0002' }, 3);
    expect(
      store.results.findJobByMessage({ platform: 'slack', channelId: 'C1', messageId: '1712.0002' }),
    ).toBe('job1');
    expect(
      store.results.findJobByMessage({ platform: 'slack', channelId: 'C2', messageId: '1712.0002' }),
    ).toBeUndefined();
    expect(store.results.messagesOf('job1').map((m) => m.messageId)).toEqual(['1712.0001', '1712.0002']);
  });

  it('keeps what an adapter needs to edit a message later (thread, tokens)', () => {
    const { store } = fresh();
    store.jobs.insert('job1', makeSpec('alice'), 1);
    const extra = { threadTs: '1712.0000', token: 'abc' };
    store.results.recordMessage(
      'job1',
      { platform: 'slack', channelId: 'C1', messageId: '1712.0003', extra },
      2,
    );
    expect(store.results.messagesOf('job1')).toEqual([
      { platform: 'slack', channelId: 'C1', messageId: '1712.0003', extra },
    ]);
  });

  it('marks a result deleted once, remembering who deleted it', () => {
    const { store } = fresh();
    store.jobs.insert('job1', makeSpec('alice'), 1);
    store.results.save('job1', { images: [], model: 'm' }, 2);
    expect(store.results.isDeleted('job1')).toBe(false);
    expect(store.results.markDeleted('job1', 'discord:alice', 3)).toBe(true);
    expect(store.results.markDeleted('job1', 'discord:bob', 4)).toBe(false);
    expect(store.results.isDeleted('job1')).toBe(true);
  });

  it('lists a channel’s jobs for its gallery, newest first', () => {
    const { store } = fresh();
    const inChannel = (user: string, channelId: string) => {
      const spec = makeSpec(user);
      return { ...spec, reply: { ...spec.reply, channelId } };
    };
    store.jobs.insert('a', inChannel('alice', 'C1'), 1);
    store.jobs.insert('b', inChannel('bob', 'C2'), 2);
    store.jobs.insert('c', inChannel('carol', 'C1'), 3);
    const platform = makeSpec('x').requester.platform;
    expect(store.jobs.list({ channel: { platform, channelId: 'C1' } }).map((j) => j.id)).toEqual(['c', 'a']);
  });

  it('rolls back a transaction that throws: no half-finished job', () => {
    const { store } = fresh();
    store.jobs.insert('job1', makeSpec('alice'), 1);
    expect(() =>
      store.transaction(() => {
        store.jobs.finish('job1', 'done', 2);
        throw new Error('disk full');
      }),
    ).toThrow('disk full');
    expect(store.jobs.get('job1')?.state).toBe('queued');
  });
});

describe('buckets, settings and flags', () => {
  it('keep their values across a re-open', () => {
    const { store, dir } = fresh();
    store.buckets.put('user:discord:alice', { tokens: 1.5, updatedAt: 42 });
    store.userSettings.patch('discord', 'alice', { aspect: '16:9', steps: 30 }, 1);
    store.userSettings.patch('discord', 'alice', { steps: undefined, negativePrompt: 'blurry' }, 2);
    store.teamSettings.patch('discord', 'guild-1', { paused: true, limits: { maxQueuedPerUser: 1 } }, 1);
    store.flags.set('queue.paused', true);
    store.close();
    const again = openStore({ dataDir: dir });
    try {
      expect(again.buckets.get('user:discord:alice')).toEqual({ tokens: 1.5, updatedAt: 42 });
      expect(again.userSettings.get('discord', 'alice')).toEqual({
        aspect: '16:9',
        negativePrompt: 'blurry',
      });
      expect(again.userSettings.get('slack', 'alice')).toEqual({});
      expect(again.teamSettings.get('discord', 'guild-1')).toEqual({
        paused: true,
        limits: { maxQueuedPerUser: 1 },
      });
      expect(again.flags.get('queue.paused')).toBe(true);
      again.buckets.delete('user:discord:alice');
      again.userSettings.clear('discord', 'alice');
      expect(again.buckets.get('user:discord:alice')).toBeUndefined();
      expect(again.userSettings.get('discord', 'alice')).toEqual({});
    } finally {
      again.close();
    }
  });
});
