/**
 * The record of deliveries already acted on (SQLite table `seen_deliveries`): the first claim of
 * a key wins until it expires, survives reopening the database, and expired entries are pruned.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { seenDeliveries } from '../../adapters/slack/seen.js';
import { createLogger } from '../../src/log.js';
import { SeenDeliveriesRepository } from '../../src/store/events-repository.js';
import { openStore, type Store } from '../../src/store/index.js';

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(() => {
  for (const store of stores.splice(0)) store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function open(dir = mkdtempSync(join(tmpdir(), 'atelier-seen-'))): { store: Store; dir: string } {
  if (!dirs.includes(dir)) dirs.push(dir);
  const store = openStore({ dataDir: dir });
  stores.push(store);
  return { store, dir };
}

describe('seen deliveries', () => {
  it('the first claim wins until it expires, across a reopened database; expired rows are pruned', () => {
    const { store, dir } = open();
    const seen = new SeenDeliveriesRepository(store.db);
    const now = 1_000_000;
    expect(seen.claim('slack:event:T1:Ev1', now + 1000, now)).toBe(true);
    expect(seen.claim('slack:event:T1:Ev1', now + 1000, now + 10)).toBe(false);
    expect(seen.claim('slack:event:T1:Ev2', now + 50, now)).toBe(true);
    store.close();

    const again = open(dir).store;
    const reopened = new SeenDeliveriesRepository(again.db);
    expect(reopened.claim('slack:event:T1:Ev1', now + 2000, now + 500)).toBe(false);
    // An expired entry can be claimed afresh.
    expect(reopened.claim('slack:event:T1:Ev2', now + 2000, now + 100)).toBe(true);
    expect(reopened.size()).toBe(2);
    expect(reopened.prune(now + 1500)).toBe(1);
    expect(reopened.size()).toBe(1);
  });

  it('works in memory without a database', () => {
    const seen = seenDeliveries(undefined, createLogger({ level: 'silent' }));
    expect(seen.claim('k', Date.now() + 60_000)).toBe(true);
    expect(seen.claim('k', Date.now() + 60_000)).toBe(false);
    expect(seen.claim('gone', Date.now() - 1)).toBe(true);
    expect(seen.claim('gone', Date.now() + 60_000)).toBe(true);
  });
});
