/**
 * The Slack surface end to end in Socket Mode: the same Bot and core, with Bolt's
 * SocketModeReceiver connected to the simulator (apps.connections.open with the app token);
 * commands, clicks and reactions arrive as envelopes and are acked by envelope id.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SlackMessage } from '../simulators/slack/index.js';
import { type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

const isResult = (m: SlackMessage) => m.blocks.some((b) => b.type === 'image') && m.buttons.length > 0;

describe('Slack surface in Socket Mode', () => {
  it('connects with the app token; /imagine, a click and a reaction arrive over the socket', async () => {
    world = await startSlackWorld({ socket: true });
    const { s } = world;
    const { alice, bob } = s.users;
    expect(world.line).toMatch(/^slack: Socket Mode as @atelier \(team T\w+\)$/);
    expect(s.calls.find((c) => c.method === 'apps.connections.open')).toMatchObject({
      token: 'app',
      ok: true,
    });

    const delivery = s.slash('/imagine', 'a harbour at night', { user: bob });
    const ack = await delivery.waitForAck();
    expect(delivery.transport).toBe('socket');
    expect(ack).toMatchObject({ status: 200, timedOut: false });
    expect(ack.ackMs).toBeLessThan(3000);
    const result = await s.waitForMessage((m) => m.text.includes('harbour') && isResult(m));

    const click = s.clickButton(result, result.buttons.find((b) => b.text === '🔄 Reroll')!.actionId, {
      user: alice,
    });
    expect((await click.waitForAck()).status).toBe(200);
    expect(click.transport).toBe('socket');
    await s.waitForMessage((m) => m.text.includes(`reroll by <@${alice.id}>`) && isResult(m));

    s.react(result, 'arrows_counterclockwise', bob);
    await s.waitForMessage((m) => m.text.includes(`reroll by <@${bob.id}>`) && isResult(m));
  });

  it('works in a direct message with the bot', async () => {
    world = await startSlackWorld({ socket: true });
    const { s } = world;
    const dm = s.im(s.users.carol);
    s.slash('/imagine', 'a note to self', { user: s.users.carol, channel: dm });
    const result = await s.waitForMessage((m) => m.channel === dm.id && isResult(m));
    expect(s.replies(result)[0]!.files).toHaveLength(1);
  });

  it('answers a usage error in the ack payload itself', async () => {
    world = await startSlackWorld({ socket: true });
    const { s } = world;
    const delivery = s.slash('/imagine', '', { user: s.users.carol });
    const ack = await delivery.waitForAck();
    expect(ack.ackMs).toBeLessThan(3000);
    expect(ack.body).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/needs/) });
    const answer = await s.waitForEphemeral((e) => e.user === s.users.carol.id);
    expect(answer).toMatchObject({ source: 'ack', text: expect.stringMatching(/needs/) });
    expect(s.messages(s.channels.general)).toEqual([]);
  });
});
