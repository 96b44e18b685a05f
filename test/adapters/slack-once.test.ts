/**
 * Nothing acts twice, nothing crosses workspaces — through the Slack simulator and the real Bolt
 * app: Events API retries (same event_id, `X-Slack-Retry-Num` / Socket Mode `retry_attempt`) act
 * once, even after a restart; a replayed signed slash command and one dated in the future are
 * refused; a signed `null` body is answered 400 and the process keeps serving; a click from
 * another workspace does not act on this one's jobs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SlackDelivery, SlackMessage, SlackUser } from '../simulators/slack/index.js';
import { type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

const isResult = (m: SlackMessage) => m.blocks.some((b) => b.type === 'image') && m.buttons.length > 0;
const actionId = (m: SlackMessage, label: string) => {
  const found = m.buttons.find((b) => b.text?.endsWith(label));
  if (!found) throw new Error(`no button "${label}" on ${m.buttons.map((b) => b.text).join(', ')}`);
  return found.actionId;
};

async function imagine(w: SlackWorld, text: string, user: SlackUser): Promise<SlackMessage> {
  const { s } = w;
  expect((await s.slash('/imagine', text, { user }).waitForAck()).status).toBe(200);
  return s.waitForMessage((m) => m.text.includes(text.split(' --')[0]!) && isResult(m));
}

const jobsOfKind = (w: SlackWorld, kind: string) =>
  w.app.store.jobs.list({ limit: 100 }).filter((j) => j.spec.kind === kind);

const rerollsBy = (w: SlackWorld, user: SlackUser) =>
  w.s.messages(w.s.channels.general).filter((m) => m.text.includes(`reroll by <@${user.id}>`));

/** 🔄 once, then Slack's three retries of it; one reroll comes of it. */
async function reactWithRetries(w: SlackWorld, result: SlackMessage, user: SlackUser) {
  const { s } = w;
  const first = s.react(result, 'arrows_counterclockwise', user);
  const retries: SlackDelivery[] = [];
  for (const attempt of [1, 2]) retries.push(s.retry(first, attempt, 'http_timeout'));
  for (const delivery of [first, ...retries]) expect((await delivery.waitForAck()).status).toBe(200);
  await s.waitForMessage((m) => m.text.includes(`reroll by <@${user.id}>`) && isResult(m));
  // Anything a duplicate started would be queued by now; let it show if it exists.
  await w.app.scheduler.onIdle();
  return { first, retries };
}

describe.each([
  ['HTTP', false],
  ['Socket Mode', true],
])('Slack over %s: retries act once', (_name, socket) => {
  it('a 🔄 delivered three times (the same event_id) makes one reroll', async () => {
    world = await startSlackWorld({ socket });
    const w = world;
    const { s } = w;
    const { alice, bob } = s.users;
    const result = await imagine(w, 'a paper kite', bob);
    const { first, retries } = await reactWithRetries(w, result, alice);
    expect(first.transport).toBe(socket ? 'socket' : 'http');
    expect(retries.map((r) => r.retry?.attempt)).toEqual([1, 2]);
    if (!socket) expect(retries[0]!.request?.headers['x-slack-retry-num']).toBe('1');
    expect(rerollsBy(w, alice)).toHaveLength(1);
    expect(jobsOfKind(w, 'reroll')).toHaveLength(1);

    // A different event (a new event_id) still acts.
    s.react(result, 'arrows_counterclockwise', bob);
    await s.waitForMessage((m) => m.text.includes(`reroll by <@${bob.id}>`) && isResult(m));
    await w.app.scheduler.onIdle();
    expect(jobsOfKind(w, 'reroll')).toHaveLength(2);
  });

  it('a retry arriving after a restart is still recognised', async () => {
    world = await startSlackWorld({ socket });
    const w = world;
    const { s } = w;
    const { alice, bob } = s.users;
    const result = await imagine(w, 'a brass compass', bob);
    const first = s.react(result, 'arrows_counterclockwise', alice);
    await s.waitForMessage((m) => m.text.includes(`reroll by <@${alice.id}>`) && isResult(m));
    await w.app.scheduler.onIdle();
    expect(first.ack?.status).toBe(200);

    await w.restart();
    expect((await s.retry(first, 3, 'http_error').waitForAck()).status).toBe(200);
    // Something after it that acts, so the retry has surely been handled when we count.
    s.react(result, 'star', bob);
    await s.waitForMessage((m) => m.channel === s.channels.showcase.id && isResult(m));
    await w.app.scheduler.onIdle();
    expect(rerollsBy(w, alice)).toHaveLength(1);
    expect(jobsOfKind(w, 'reroll')).toHaveLength(1);
    const kept = w.app.store.db
      .prepare<[], { key: string }>("SELECT key FROM seen_deliveries WHERE key LIKE 'slack:event:%'")
      .all()
      .map((row) => row.key);
    expect(kept).toContain(`slack:event:${s.teamId}:${String(first.payload.event_id)}`);
  });

  it('a click from another workspace does not act on this workspace’s job', async () => {
    world = await startSlackWorld({ socket });
    const w = world;
    const { s } = w;
    const { alice, bob } = s.users;
    const result = await imagine(w, 'a glass harbour', bob);
    const before = w.app.store.jobs.list({ limit: 100 }).length;
    const foreign = s.clickButton(result, actionId(result, 'Reroll'), { user: alice, team: 'TOTHERTEAM' });
    expect((await foreign.waitForAck()).status).toBe(200);
    const refusal = await s.waitForEphemeral((e) => e.user === alice.id, { timeoutMs: 10_000 });
    expect(refusal.text).toMatch(/doesn't belong to an image I know/);
    const deleteFromAfar = s.clickButton(result, actionId(result, 'Delete'), {
      user: bob,
      team: 'TOTHERTEAM',
    });
    await s.waitForEphemeral((e) => e.user === bob.id && e.at >= deleteFromAfar.sentAt);
    expect(s.state.message(result.channel, result.ts)?.deleted).toBe(false);
    expect(w.app.store.jobs.list({ limit: 100 })).toHaveLength(before);

    // The same click from this workspace acts.
    s.clickButton(result, actionId(result, 'Reroll'), { user: alice });
    await s.waitForMessage((m) => m.text.includes(`reroll by <@${alice.id}>`) && isResult(m));
    expect(jobsOfKind(w, 'reroll')).toHaveLength(1);
  });
});

describe('Slack over HTTP: signed requests', () => {
  it('refuses a replayed slash command (same body, timestamp, signature) and one dated in the future', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { bob } = s.users;
    const original = s.slash('/imagine', 'a single lantern', { user: bob });
    expect((await original.waitForAck()).status).toBe(200);
    await s.waitForMessage((m) => m.text.includes('single lantern') && isResult(m));

    const replay = s.replay(original);
    expect(replay.request).toEqual(original.request);
    expect((await replay.waitForAck()).status).toBe(401);
    // A replay claiming to be a Slack retry is acked, and still does nothing.
    const disguised = s.replay(original, {
      'x-slack-retry-num': '1',
      'x-slack-retry-reason': 'http_timeout',
    });
    expect((await disguised.waitForAck()).status).toBe(200);

    const future = s.slash('/imagine', 'a lantern from tomorrow', { user: bob, signature: 'future' });
    expect((await future.waitForAck()).status).toBe(401);

    // Something after them that acts, so they have surely been handled when we count.
    await imagine(w, 'a second lantern', bob);
    await w.app.scheduler.onIdle();
    expect(w.app.store.jobs.list({ limit: 100 }).map((j) => j.spec.params.prompt)).toEqual([
      'a second lantern',
      'a single lantern',
    ]);
    expect(s.messages(s.channels.general).filter((m) => m.text.includes('single lantern'))).toHaveLength(1);
  });

  it('answers a signed JSON null or payload=null with 400 and keeps serving', async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    process.on('uncaughtException', record);
    try {
      world = await startSlackWorld();
      const w = world;
      const { s } = w;
      const bodies: [string, string][] = [
        ['null', 'application/json'],
        ['payload=null', 'application/x-www-form-urlencoded'],
        ['42', 'application/json'],
        ['payload=%5B%5D', 'application/x-www-form-urlencoded'],
      ];
      for (const [body, contentType] of bodies) {
        const delivery = s.sendSigned(body, contentType);
        const ack = await delivery.waitForAck();
        expect(ack, body).toMatchObject({ status: 400, timedOut: false });
      }
      // Unsigned garbage is still Bolt's 401.
      expect((await s.sendSigned('null', 'application/json', { signature: 'bad' }).waitForAck()).status).toBe(
        401,
      );
      const result = await imagine(w, 'a lamp still lit', s.users.carol);
      expect(result.text).toContain('a lamp still lit');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
      process.off('uncaughtException', record);
    }
  });
});
