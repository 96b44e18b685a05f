/**
 * Slack workspace admins are team admins, as Discord members with Manage Server are: users.info's
 * `is_admin`, `is_owner` and `is_primary_owner` (remembered briefly) let them change their
 * workspace's Atelier settings (/atelier showcase, /atelier limits); members are refused; the
 * queue itself (/atelier pause) stays the Atelier admins'. End to end through the Slack simulator,
 * real Bolt, the real Bot and core; and SlackPeople on the real WebClient.
 */
import { webApi } from '@slack/bolt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlackPeople } from '../../adapters/slack/people.js';
import {
  type SlackDelivery,
  type SlackSimulator,
  type SlackUser,
  startSlackSimulator,
} from '../simulators/slack/index.js';
import { type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** The private answer `user` got for `delivery` (in the ack, or through response_url). */
async function privateAnswer(w: SlackWorld, delivery: SlackDelivery, user: SlackUser): Promise<string> {
  const answer = await w.s.waitForEphemeral((e) => e.user === user.id && e.at >= delivery.sentAt);
  return answer.text;
}

describe('Slack workspace admins are team admins (real Bolt, real Bot)', () => {
  it('/atelier showcase and limits work for workspace admins and owners, are refused for members; pause stays Atelier admins’', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { alice, bob } = s.users; // alice: primary owner; bob: member
    const dana = s.createUser('dana', { admin: true });
    const erin = s.createUser('erin', { owner: true });
    const art = s.createChannel('art');
    const settings = () => w.app.store.teamSettings.get('slack', s.teamId);

    const refused = s.slash('/atelier', `showcase <#${art.id}|art>`, { user: bob });
    expect(await privateAnswer(w, refused, bob)).toMatch(
      /Only Atelier admins or the admins of this workspace/,
    );
    expect(settings().showcaseChannelId).toBeUndefined();

    const byAdmin = s.slash('/atelier', `showcase <#${art.id}|art>`, { user: dana });
    expect(await privateAnswer(w, byAdmin, dana)).toContain(`Shared images now go to <#${art.id}>`);
    expect(settings().showcaseChannelId).toBe(art.id);

    const byOwner = s.slash('/atelier', 'limits --images 5 --minutes 10', { user: erin });
    expect(await privateAnswer(w, byOwner, erin)).toMatch(/^Limits here: 5 images per 10 min per user/);
    const byPrimaryOwner = s.slash('/atelier', 'limits --burst 4', { user: alice });
    expect(await privateAnswer(w, byPrimaryOwner, alice)).toMatch(
      /^Limits here: 5 images per 10 min per user, 4 at once/,
    );

    // A workspace admin is not an Atelier admin: the queue is not theirs to pause.
    const pause = s.slash('/atelier', 'pause', { user: dana });
    expect(await privateAnswer(w, pause, dana)).toMatch(/Only Atelier admins can use \/atelier/);
    expect(w.app.scheduler.isPaused).toBe(false);

    // users.info once per person: dana's second command used the remembered answer.
    const lookups = (user: SlackUser) =>
      s.calls.filter((c) => c.method === 'users.info' && c.args.user === user.id);
    expect(lookups(dana)).toHaveLength(1);
    expect(lookups(bob)).toHaveLength(1);
    expect(s.rateLimitedCalls).toEqual([]);
  });
});

describe('Slack asks users.info about admins only when an admin check runs', () => {
  it('commands, clicks and a remix form make no users.info call; /atelier showcase makes one', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { carol } = s.users;
    const dana = s.createUser('dana', { admin: true });
    const usersInfo = () => s.calls.filter((c) => c.method === 'users.info');
    const isResult = (m: { blocks: readonly { type: string }[]; buttons: readonly unknown[] }) =>
      m.blocks.some((b) => b.type === 'image') && m.buttons.length > 0;

    s.slash('/imagine', 'a fox --steps 2', { user: carol });
    const notice = await s.waitForMessage((m) => m.text.includes(`<@${carol.id}>`));
    const result = await s.waitForMessage((m) => m.ts === notice.ts && isResult(m));
    const settings = s.slash('/settings', '--remix', { user: carol });
    expect(await privateAnswer(w, settings, carol)).toMatch(/^Saved\./);
    // A remix click opens its modal at once, on the click's trigger_id: nothing waits on users.info.
    const strong = result.buttons.find((b) => b.text?.endsWith('Vary (Strong)'))!;
    const click = s.clickButton(result, strong.actionId, { user: carol });
    expect((await click.waitForAck()).status).toBe(200);
    const view = await s.waitForView((v) => v.user === carol.id);
    s.submitView(view, { prompt: 'a red fox' });
    await s.waitForMessage((m) => m.text.includes('strong variation') && isResult(m));
    expect(usersInfo()).toEqual([]);

    // An admin-only command asks, for the one who used it.
    const art = s.createChannel('art');
    const byAdmin = s.slash('/atelier', `showcase <#${art.id}|art>`, { user: dana });
    expect(await privateAnswer(w, byAdmin, dana)).toContain(`Shared images now go to <#${art.id}>`);
    expect(usersInfo().map((c) => c.args.user)).toEqual([dana.id]);
  });
});

describe('SlackPeople', () => {
  let s: SlackSimulator;
  let people: SlackPeople;
  beforeEach(async () => {
    s = await startSlackSimulator();
    people = new SlackPeople(
      new webApi.WebClient(s.botToken, { slackApiUrl: s.apiUrl, retryConfig: { retries: 0 } }),
    );
  });
  afterEach(async () => {
    await s.stop();
  });

  it('reads is_admin, is_owner and is_primary_owner from users.info; members, other workspaces and unknown people are not admins', async () => {
    const dana = s.createUser('dana', { admin: true });
    const erin = s.createUser('erin', { owner: true });
    const home = s.teamId;
    expect(await people.isWorkspaceAdmin(s.users.alice.id, home, home)).toBe(true);
    expect(await people.isWorkspaceAdmin(dana.id, home, home)).toBe(true);
    expect(await people.isWorkspaceAdmin(erin.id, home, home)).toBe(true);
    expect(await people.isWorkspaceAdmin(s.users.bob.id, home, home)).toBe(false);
    expect(await people.isWorkspaceAdmin(s.bot.id, home, home)).toBe(false);
    expect(await people.isWorkspaceAdmin('U0NOBODY000', home, home)).toBe(false);
    // An interaction from another workspace (Slack Connect), or none: not this workspace's admin.
    expect(await people.isWorkspaceAdmin(dana.id, 'T0ELSEWHERE', home)).toBe(false);
    expect(await people.isWorkspaceAdmin(dana.id, undefined, home)).toBe(false);
    // The answers are remembered: one users.info per person, shared with display names.
    expect(await people.displayName(dana.id)).toBe('dana');
    expect(s.calls.filter((c) => c.method === 'users.info' && c.args.user === dana.id)).toHaveLength(1);
  });

  it('remembers an answer for cacheMs only: a demoted admin is a member after it', async () => {
    people = new SlackPeople(new webApi.WebClient(s.botToken, { slackApiUrl: s.apiUrl }), { cacheMs: 0 });
    const dana = s.createUser('dana', { admin: true });
    expect(await people.isWorkspaceAdmin(dana.id, s.teamId, s.teamId)).toBe(true);
    dana.isAdmin = false;
    expect(await people.isWorkspaceAdmin(dana.id, s.teamId, s.teamId)).toBe(false);
  });

  it('is no admin, and names by id, when users.info fails (e.g. no users:read scope)', async () => {
    s.failNext('users.info', { status: 500 });
    const dana = s.createUser('dana', { admin: true });
    expect(await people.isWorkspaceAdmin(dana.id, s.teamId, s.teamId)).toBe(false);
    expect(await people.displayName(dana.id)).toBe(dana.id);
  });
});
