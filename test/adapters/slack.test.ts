/**
 * The Slack surface end to end over HTTP: the Slack simulator drives the real Bolt app (signed
 * requests to /slack/events), the real Bot and the real core with the bundled tiny model. Where a
 * test needs Slack to show a step while the job runs, the job runs on a pipeline double whose steps
 * advance only when the test says (test/helpers/stepped-pipeline.ts): a tiny-model job may end
 * before the workspace's edit budget (one progress edit per 1.5 s) lets a step through.
 */
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { SteppedPipeline } from '../helpers/stepped-pipeline.js';
import type { SlackDelivery, SlackEphemeral, SlackMessage, SlackUser } from '../simulators/slack/index.js';
import { button, imageFileId, isResult, type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

async function imagine(w: SlackWorld, text: string, user: SlackUser): Promise<SlackMessage> {
  const { s } = w;
  const before = new Set(s.messages(s.channels.general).map((m) => m.ts));
  expect((await s.slash('/imagine', text, { user }).waitForAck()).status).toBe(200);
  const notice = await s.waitForMessage((m) => !before.has(m.ts) && m.text.includes(`<@${user.id}>`));
  return s.waitForMessage((m) => m.ts === notice.ts && isResult(m));
}

/** Private answers already matched to a delivery (each answers one). */
const answered = new Set<SlackEphemeral>();

/** The private answer `user` got for `delivery` (ack body or response_url), and how long it took. */
async function privateAnswer(w: SlackWorld, delivery: SlackDelivery, user: SlackUser) {
  const answer = await w.s.waitForEphemeral(
    (e) => e.user === user.id && e.at >= delivery.sentAt && !answered.has(e),
  );
  answered.add(answer);
  return { text: answer.text, ms: answer.at - delivery.sentAt, answer };
}

describe('Slack surface over HTTP', () => {
  it('/imagine: acks at once, posts the queue notice, edits progress, then shows the image with buttons', async () => {
    const pipeline = new SteppedPipeline();
    world = await startSlackWorld({ pipeline });
    const { s } = world;
    expect(world.line).toMatch(/^slack: HTTP on :\d+\/slack\/events as @atelier \(team T\w+\)$/);
    const delivery = s.slash('/imagine', 'a lighthouse at dusk --seed 42', { user: s.users.carol });
    const ack = await delivery.waitForAck();
    expect(ack).toMatchObject({ status: 200, timedOut: false });
    expect(ack.ackMs).toBeLessThan(3000);

    const notice = await s.waitForMessage((m) => m.text.includes('lighthouse'));
    const run = await pipeline.running();
    run.advance(2);
    await s.waitForMessage((m) => m.ts === notice.ts && m.text.includes('step 2/4'));
    run.finish();
    const result = await s.waitForMessage((m) => m.ts === notice.ts && isResult(m));
    const texts = result.history.map((h) => h.text);
    expect(texts[0]).toMatch(/^\*a lighthouse at dusk\* — <@U\w+>\n⏳ Queued/);
    expect(texts.some((t) => /step \d\/4/.test(t))).toBe(true);
    expect(result.text).toMatch(/seed 42 · 4 steps/);

    const fileId = imageFileId(result)!;
    const file = s.files().find((f) => f.id === fileId)!;
    expect(await sharp(file.data!).metadata()).toMatchObject({ width: 256, height: 256, format: 'png' });
    // The file itself sits in the job message's thread; the message shows it inline.
    expect(s.replies(result).map((m) => m.files.map((f) => f.id))).toEqual([[fileId]]);
    expect(file.shares).toEqual([{ channel: s.channels.general.id, ts: s.replies(result)[0]!.ts }]);

    expect(result.buttons.map((b) => b.text)).toEqual([
      '🎲 Vary (Subtle)',
      '🎲 Vary (Strong)',
      '🔄 Reroll',
      '⬆️ Upscale 2×',
      '⭐ Share',
      '✖️ Delete',
    ]);
    expect(result.buttons.every((b) => b.value === b.actionId)).toBe(true);
    expect(result.blocks.filter((b) => b.type === 'actions')).toHaveLength(2);
    expect(s.ephemerals()).toEqual([]);
    expect(s.unhandledCalls).toEqual([]);
  });

  it('a grid: U shows one image, V makes a variation, Reroll and Share credit the clicker, Delete is the owner’s', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { alice, bob, carol } = s.users;
    const grid = await imagine(w, 'a red fox --count 4 --seed 7', carol);
    const gridFile = s.files().find((f) => f.id === imageFileId(grid))!;
    expect(await sharp(gridFile.data!).metadata()).toMatchObject({ width: 512, height: 512 });
    expect(grid.buttons.map((b) => b.text)).toEqual([
      'U1',
      'U2',
      'U3',
      'U4',
      'V1',
      'V2',
      'V3',
      'V4',
      '🔄 Reroll',
      '⭐ Share',
      '✖️ Delete',
    ]);

    expect((await s.clickButton(grid, button(grid, 'U2'), { user: bob }).waitForAck()).status).toBe(200);
    const single = await s.waitForMessage(
      (m) => m.text.includes('image 2 of 4') && imageFileId(m) !== undefined,
    );
    const singleFile = s.files().find((f) => f.id === imageFileId(single))!;
    expect(await sharp(singleFile.data!).metadata()).toMatchObject({ width: 256, height: 256 });

    s.clickButton(grid, button(grid, 'V3'), { user: bob });
    const variation = await s.waitForMessage((m) => m.text.includes('variation of image 3') && isResult(m));
    expect(variation.text).toContain(`by <@${bob.id}>`);

    s.clickButton(grid, button(grid, 'Reroll'), { user: alice });
    const reroll = await s.waitForMessage((m) => m.text.includes(`reroll by <@${alice.id}>`) && isResult(m));
    expect(reroll.channel).toBe(s.channels.general.id);

    const share = s.clickButton(grid, button(grid, 'Share'), { user: bob });
    const shared = await s.waitForMessage((m) => m.channel === s.channels.showcase.id && isResult(m));
    expect(shared.text).toContain(`by <@${carol.id}> · shared by <@${bob.id}>`);
    expect((await privateAnswer(w, share, bob)).text).toMatch(/Shared/);

    const notOwner = s.clickButton(grid, button(grid, 'Delete'), { user: bob });
    expect((await privateAnswer(w, notOwner, bob)).text).toMatch(/Only the person who made this image/);
    const deleteClick = s.clickButton(grid, button(grid, 'Delete'), { user: carol });
    await s.waitForDeletion(grid);
    await s.waitForDeletion(single);
    await s.waitForDeletion(shared);
    expect((await privateAnswer(w, deleteClick, carol)).text).toMatch(/Deleted/);
    // The uploaded images go too.
    const deletedFiles = s.calls.filter((c) => c.method === 'files.delete').map((c) => c.args.file);
    expect(deletedFiles.sort()).toEqual([imageFileId(grid), imageFileId(single), imageFileId(shared)].sort());
    for (const id of deletedFiles) expect(s.files().some((f) => f.id === id)).toBe(false);

    // The deleted job's buttons no longer act, wherever someone finds one.
    const stale = s.clickButton(reroll, button(grid, 'Reroll'), { user: alice, forge: true });
    const refusal = await privateAnswer(w, stale, alice);
    expect(refusal.text).toMatch(/deleted/i);
    expect(refusal.ms).toBeLessThan(3000);
  });

  it('a single image: Upscale 2× makes it twice the size, Vary (Strong) makes a variation, Cancel stops a running job', async () => {
    // Edits unthrottled by the workspace budget (40 a minute, spread evenly: one per 1.5 s), so the
    // Cancel button is seen while a job of a second or two still runs; pacing has its own tests.
    world = await startSlackWorld({ surface: { updatesPerMinute: 6000 }, simulator: { rateLimits: false } });
    const w = world;
    const { s } = w;
    const { bob, carol } = s.users;
    const result = await imagine(w, 'a tin robot', bob);
    s.clickButton(result, button(result, 'Upscale 2×'), { user: carol });
    const upscaled = await s.waitForMessage(
      (m) => m.text.includes(`upscaled 2× by <@${carol.id}>`) && isResult(m),
    );
    const file = s.files().find((f) => f.id === imageFileId(upscaled))!;
    expect(await sharp(file.data!).metadata()).toMatchObject({ width: 512, height: 512 });
    expect(upscaled.buttons.map((b) => b.text)).not.toContain('⬆️ Upscale 2×');

    s.clickButton(result, button(result, 'Vary (Strong)'), { user: bob });
    await s.waitForMessage(
      (m) => m.text.includes(`strong variation of image 1 by <@${bob.id}>`) && isResult(m),
    );

    s.slash('/imagine', 'a long night --steps 100', { user: bob });
    const running = await s.waitForMessage((m) => m.text.includes('long night') && m.buttons.length === 1);
    const cancel = s.clickButton(running, button(running, 'Cancel'), { user: bob });
    expect((await privateAnswer(w, cancel, bob)).text).toMatch(/Cancelled/);
    await s.waitForMessage(
      (m) => m.ts === running.ts && m.text.includes('✖️ Cancelled') && m.buttons.length === 0,
    );
  });

  it('🔄 on a result rerolls it for whoever reacted; ⭐ shares; ✖ by the owner deletes; other reactions are ignored', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { alice, bob } = s.users;
    const result = await imagine(w, 'a paper boat', bob);
    const person = s.say(s.channels.general, 'look at this', alice);
    const ignored = [
      s.react(person, 'arrows_counterclockwise', bob),
      s.react(result, 'thumbsup', alice),
      s.react(result, 'arrows_counterclockwise', s.bot),
    ];
    for (const delivery of ignored) expect((await delivery.waitForAck()).status).toBe(200);

    s.react(result, 'arrows_counterclockwise', alice);
    const reroll = await s.waitForMessage((m) => m.text.includes(`reroll by <@${alice.id}>`) && isResult(m));
    expect(reroll.channel).toBe(result.channel);
    // One reroll: the ignored reactions started nothing.
    expect(s.messages(s.channels.general).filter((m) => m.text.includes('reroll by'))).toHaveLength(1);

    s.react(result, 'star', alice);
    const shared = await s.waitForMessage((m) => m.channel === s.channels.showcase.id && isResult(m));
    expect(shared.text).toContain(`shared by <@${alice.id}>`);

    s.react(result, 'heavy_multiplication_x', bob);
    await s.waitForDeletion(result);
  });

  it('refuses over the limit privately, naming the wait, and still serves others', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { bob, carol } = s.users;
    await imagine(w, 'four moons --count 4', bob);
    const over = s.slash('/imagine', 'one more moon', { user: bob });
    const refusal = await privateAnswer(w, over, bob);
    // One image comes back a minute after the burst was spent: under a minute left, shown in
    // seconds, or the whole minute when the refusal comes at once.
    expect(refusal.text).toMatch(/You can make the next image in (\d+ s|1 min)\./);
    // Private either way: in the slash command's ack, or through its response_url.
    expect(['ack', 'response_url']).toContain(refusal.answer.source);
    expect(refusal.ms).toBeLessThan(3000);
    expect(s.messages(s.channels.general).some((m) => m.text.includes('one more moon'))).toBe(false);
    await imagine(w, 'a moon for carol', carol);
  });

  it('answers bad input privately within 3 s and keeps serving', async () => {
    world = await startSlackWorld();
    const w = world;
    const { s } = w;
    const { bob } = s.users;
    const cases: [string, RegExp][] = [
      ['', /needs|prompt/i],
      ['x'.repeat(10_000), /limit is 2,000/],
      ['a cat --steps 999', /steps/i],
      ['a cat --count 9', /count|images/i],
      ['a cat --bogus 1', /Unknown option --bogus/],
    ];
    for (const [text, expected] of cases) {
      const delivery = s.slash('/imagine', text, { user: bob });
      const answer = await privateAnswer(w, delivery, bob);
      expect(answer.text).toMatch(expected);
      expect(answer.ms).toBeLessThan(3000);
      expect((await delivery.waitForAck()).status).toBe(200);
    }
    const result = await imagine(w, 'a well-formed cat', bob);
    const forged = s.clickButton(result, 'at1:r:NOSUCHJOB', { user: bob, forge: true });
    const answer = await privateAnswer(w, forged, bob);
    expect(answer.text).toMatch(/doesn't belong to an image I know/);
    expect(answer.ms).toBeLessThan(3000);
    const garbage = s.clickButton(result, 'not-ours', { user: bob, forge: true });
    expect((await privateAnswer(w, garbage, bob)).text).toMatch(/doesn't belong/);
    expect(
      s.messages(s.channels.general).filter((m) => m.user === s.bot.id && m.threadTs === null),
    ).toHaveLength(1);
  });

  it('tells the user privately to invite the bot when it cannot post in the channel', async () => {
    world = await startSlackWorld();
    const { s } = world;
    const { bob } = s.users;
    const elsewhere = s.state.addChannel('no-bot', { members: [bob.id] });
    const delivery = s.slash('/imagine', 'a quiet room', { user: bob, channel: elsewhere });
    const answer = await privateAnswer(world, delivery, bob);
    expect(answer.text).toMatch(/Invite me with `\/invite @atelier`/);
    expect(answer.answer.channel).toBe(elsewhere.id);
    expect(answer.ms).toBeLessThan(3000);
    expect(s.messages(elsewhere)).toEqual([]);
  });

  it('survives 429s on the upload: waits Retry-After and finishes the result', async () => {
    world = await startSlackWorld();
    const { s } = world;
    const upload = s.failNext('upload_url', { retryAfter: 1 });
    const complete = s.failNext('files.completeUploadExternal', { retryAfter: 1 });
    const result = await imagine(world, 'patience', s.users.bob);
    for (const failure of [upload, complete]) {
      const served = await failure.served;
      const retried = await failure.retried;
      expect(served).toMatchObject({ status: 429, injected: true });
      expect(retried.at - served.at).toBeGreaterThanOrEqual(1000);
    }
    expect(s.files().filter((f) => f.completed)).toHaveLength(1);
    expect(imageFileId(result)).toBe(s.files()[0]!.id);
  });

  it('answers requests with a bad, stale or missing signature with 401 and does nothing', async () => {
    world = await startSlackWorld();
    const { s } = world;
    const deliveries = [
      s.slash('/imagine', 'forged', { signature: 'bad' }),
      s.slash('/imagine', 'replayed', { signature: 'stale' }),
      s.slash('/imagine', 'unsigned', { signature: 'missing' }),
    ];
    for (const delivery of deliveries) expect((await delivery.waitForAck()).status).toBe(401);
    const valid = await imagine(world, 'signed', s.users.bob);
    expect(valid.text).toContain('signed');
    expect(world.app.store.jobs.list({ limit: 10 }).map((j) => j.spec.params.prompt)).toEqual(['signed']);
    expect(s.ephemerals()).toEqual([]);
  });

  it('finishes a job interrupted by a restart in the original message', async () => {
    const pipeline = new SteppedPipeline();
    world = await startSlackWorld({ pipeline });
    const { s } = world;
    s.slash('/imagine', 'a slow sunrise --steps 40', { user: s.users.carol });
    (await pipeline.running()).advance(10);
    const running = await s.waitForMessage(
      (m) => m.text.includes('slow sunrise') && /step 10\/40/.test(m.text),
    );
    const resumed = pipeline.nextRun();
    await world.restart();
    (await resumed).finish();
    const result = await s.waitForMessage((m) => m.ts === running.ts && isResult(m));
    expect(result.channel).toBe(s.channels.general.id);
    expect(result.text).toMatch(/40 steps/);
    expect(s.messages(s.channels.general).filter((m) => m.text.includes('slow sunrise'))).toHaveLength(1);
  });
});
