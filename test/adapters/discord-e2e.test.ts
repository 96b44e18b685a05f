/**
 * Atelier on Discord end to end: the real discord.js client in the Discord surface, the real Bot,
 * the real core (createApp with the bundled tiny model, SQLite in a temp dir), against the
 * Discord simulator. Each test asserts what people in the server would see.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { createDiscordSurface, type DiscordSurface } from '../../adapters/discord/index.js';
import { Bot } from '../../commands/bot.js';
import { encodeButton } from '../../commands/custom-id.js';
import { createLogger } from '../../src/log.js';
import { openStore } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import {
  type DiscordSimulator,
  type InteractionHandle,
  type SimMessage,
  startDiscordSimulator,
} from '../simulators/discord/index.js';

/** Waits for whole jobs on the tiny model (a few seconds each on two cores). */
const JOB_WAIT = { timeoutMs: 45_000 };

interface World {
  d: DiscordSimulator;
  app: TestApp;
  bot: Bot;
  surface: DiscordSurface;
  startLine: string;
}

const worlds: World[] = [];
const simulators: DiscordSimulator[] = [];
const cleanups: (() => void | Promise<void>)[] = [];

afterEach(async () => {
  for (const world of worlds.splice(0)) await stopWorld(world);
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const d of simulators.splice(0)) await d.stop();
});

async function simulator(): Promise<DiscordSimulator> {
  const d = await startDiscordSimulator({ waitTimeoutMs: JOB_WAIT.timeoutMs });
  simulators.push(d);
  return d;
}

/**
 * The core, the Bot and the Discord surface, wired as `npm start` does. The server's Admin role
 * is configured as Atelier admin (alice has it); `env` overrides settings.
 */
async function startWorld(
  d: DiscordSimulator,
  env: Record<string, string> = {},
  dataDir?: string,
): Promise<World> {
  const adminRole = d.guild.roles.find((role) => role.name === 'Admin')!;
  const app = await startTestApp(
    { ATELIER_LIMITS__ADMINS__DISCORD__ROLE_IDS: adminRole.id, ...env },
    dataDir,
  );
  const bot = new Bot(app);
  const surface = createDiscordSurface({
    token: d.token,
    apiUrl: d.apiUrl,
    maxUploadBytes: app.config.images.maxUploadBytes.discord,
    logger: createLogger({ level: 'silent' }),
  });
  const startLine = await surface.start(bot);
  bot.start();
  const world = { d, app, bot, surface, startLine };
  worlds.push(world);
  return world;
}

async function stopWorld(world: World, options: { keep?: boolean } = {}): Promise<void> {
  await world.surface.stop();
  await world.bot.stop();
  await world.app.dispose(options);
  const index = worlds.indexOf(world);
  if (index >= 0) worlds.splice(index, 1);
}

const labels = (m: SimMessage) => m.buttons.map((b) => b.label);
/** A result (not a progress message, which has a preview and only Cancel): image plus result buttons. */
const isResult = (m: SimMessage) =>
  m.attachments.length === 1 && labels(m).some((label) => label === 'Reroll' || label === 'Delete');

function button(m: SimMessage, label: string): string {
  const found = m.buttons.find((b) => b.label === label);
  if (!found?.customId) throw new Error(`no button ${label} on "${m.content}" (${labels(m).join(', ')})`);
  return found.customId;
}

async function imageSize(m: SimMessage) {
  const { width, height, format } = await sharp(m.attachments[0]!.data).metadata();
  return { width, height, format };
}

/** The first answer came inside Discord's window; resolves with it. */
async function answeredInTime(interaction: InteractionHandle) {
  const response = await interaction.waitForResponse();
  expect(response.latencyMs).toBeLessThan(3000);
  return response;
}

/** The private answer to `interaction`: the ephemeral response itself, or an ephemeral follow-up. */
async function privateAnswer(interaction: InteractionHandle): Promise<SimMessage> {
  await answeredInTime(interaction);
  const original = interaction.original();
  if (original?.ephemeral && !original.deleted && original.content) return original;
  return interaction.waitForFollowUp((m) => m.ephemeral);
}

/**
 * The same core, Bot and Discord surface as `startWorld`, in a process of its own
 * (fixtures/killed-after-answer.ts) that stops dead right after sending the answer that shows a
 * job, before recording which message it is. `answered` resolves with that job's id; kill it then.
 */
async function startBotThatDiesAfterAnswering(
  d: DiscordSimulator,
  dataDir: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; answered: Promise<string> }> {
  const here = dirname(fileURLToPath(import.meta.url));
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(here, 'fixtures', 'killed-after-answer.ts'),
      dataDir,
      d.apiUrl,
      d.token,
      JSON.stringify(env),
    ],
    { cwd: join(here, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<{ signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (_code, signal) => resolve({ signal })),
  );
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const said = new Map<string, (value: string) => void>();
  const line = (key: string) => new Promise<string>((resolve) => said.set(key, resolve));
  const ready = line('ready');
  const answered = line('answered');
  createInterface({ input: child.stdout! }).on('line', (text) => {
    for (const [key, value] of Object.entries(JSON.parse(text) as Record<string, unknown>))
      said.get(key)?.(String(value));
  });
  const early = exited.then(() => {
    throw new Error(`the bot process exited early:\n${stderr}`);
  });
  await Promise.race([ready, early]);
  return { child, answered: Promise.race([answered, early]) };
}

/** A new public message in `channelId` whose text matches, once it shows a result. */
function resultIn(d: DiscordSimulator, channelId: string, text: RegExp): Promise<SimMessage> {
  return d.waitForMessage((m) => m.channelId === channelId && text.test(m.content) && isResult(m), JOB_WAIT);
}

describe('Discord end to end (discord.js + Bot + tiny model, simulator)', () => {
  it('/imagine: answered at once with the queue position, throttled progress edits, then the PNG with buttons', async () => {
    const d = await simulator();
    const { startLine } = await startWorld(d, { ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '400' });
    expect(startLine).toBe('discord: connected as Atelier (1 server)');
    expect((await d.waitForCommands()).map((c) => c.name)).toEqual([
      'imagine',
      'queue',
      'cancel',
      'settings',
      'help',
      'atelier',
    ]);

    const interaction = d.slash(
      'imagine',
      // 40 steps of the tiny model take well over a second even on a fast CPU: long enough that
      // progress edits must appear between the 400 ms throttle windows.
      { prompt: 'a lighthouse at dusk', seed: 42, steps: 40 },
      { user: d.users.carol },
    );
    const response = await answeredInTime(interaction);
    expect(response.type).toBe(4);
    const first = interaction.original()!;
    expect(first.ephemeral).toBe(false);
    expect(first.history[0]!.content).toMatch(
      new RegExp(`a lighthouse at dusk\\*\\* — <@${d.users.carol.id}>\\n⏳ Queued: next in line · about`),
    );

    const result = await interaction.waitForOriginal(isResult, JOB_WAIT);
    expect(result.content).toMatch(/seed 42 · 40 steps/);
    expect(await imageSize(result)).toEqual({ width: 256, height: 256, format: 'png' });
    expect(labels(result)).toEqual([
      'Vary (Subtle)',
      'Vary (Strong)',
      'Reroll',
      'Upscale 2×',
      'Share',
      'Delete',
    ]);

    // Progress is shown, and not edited faster than the configured interval. Times are taken
    // where Discord receives the edits, so they carry the request's jitter on a busy CPU: allow
    // 100 ms of it, and bound the count of edits by the interval too.
    const progress = result.history.slice(1, -1);
    expect(progress.some((revision) => /step \d+\/40/.test(revision.content))).toBe(true);
    const times = result.history.slice(0, -1).map((revision) => revision.at);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(300);
    const runMs = result.history.at(-1)!.at - result.history[0]!.at;
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(runMs / 400) + 1);
  });

  it('grid buttons: U1 shows one image, Upscale 2× doubles it, V1 and Reroll start jobs for whoever clicked', async () => {
    const d = await simulator();
    // Bob makes 1 + 4 images here: more than one burst of the default per-user limit.
    await startWorld(d, { ATELIER_LIMITS__USER__ENABLED: 'false' });
    const general = d.channels.general.id;
    const imagine = d.slash(
      'imagine',
      { prompt: 'four foxes', count: 4, steps: 1, seed: 7 },
      { user: d.users.carol },
    );
    const grid = await imagine.waitForOriginal(isResult, JOB_WAIT);
    expect(await imageSize(grid)).toEqual({ width: 512, height: 512, format: 'png' });
    expect(grid.content).toMatch(/seeds 7–10/);
    expect(labels(grid)).toEqual([
      'U1',
      'U2',
      'U3',
      'U4',
      'V1',
      'V2',
      'V3',
      'V4',
      'Reroll',
      'Share',
      'Delete',
    ]);

    const u1 = d.click(grid, button(grid, 'U1'), { user: d.users.bob });
    await answeredInTime(u1);
    const single = await u1.waitForOriginal(isResult);
    expect(single.id).not.toBe(grid.id);
    expect(single.content).toMatch(/image 1 of 4 · seed 7/);
    expect(await imageSize(single)).toMatchObject({ width: 256, height: 256 });
    expect(labels(single)).toEqual(['Vary (Subtle)', 'Vary (Strong)', 'Upscale 2×', 'Share', 'Delete']);

    const upscale = d.click(single, button(single, 'Upscale 2×'), { user: d.users.bob });
    await answeredInTime(upscale);
    const upscaled = await resultIn(d, general, new RegExp(`upscaled 2× by <@${d.users.bob.id}>`));
    expect(await imageSize(upscaled)).toMatchObject({ width: 512, height: 512 });
    expect(labels(upscaled)).not.toContain('Upscale 2×');

    await answeredInTime(d.click(grid, button(grid, 'V1'), { user: d.users.bob }));
    const variation = await resultIn(d, general, new RegExp(`variation of image 1 by <@${d.users.bob.id}>`));
    expect(await imageSize(variation)).toMatchObject({ width: 512, height: 512 });

    // Reroll on a single image (the grid's own Reroll runs the same code with four images).
    await answeredInTime(d.click(upscaled, button(upscaled, 'Reroll'), { user: d.users.alice }));
    const reroll = await resultIn(d, general, new RegExp(`reroll by <@${d.users.alice.id}>`));
    expect(reroll.id).not.toBe(upscaled.id);
    expect(labels(reroll)).toContain('Reroll');
  });

  it('Share posts to the showcase channel an admin set; 🔄 by another member rerolls there crediting them; Delete is the owner’s', async () => {
    const d = await simulator();
    await startWorld(d);
    const general = d.channels.general.id;

    const notAdmin = await privateAnswer(d.slash('atelier showcase', { channel: d.channels.showcase }));
    expect(notAdmin.content).toMatch(/Only Atelier admins/);
    const set = await privateAnswer(
      d.slash('atelier showcase', { channel: d.channels.showcase }, { user: d.users.alice }),
    );
    expect(set.content).toBe(`⭐ Shared images now go to <#${d.channels.showcase.id}>.`);

    const imagine = d.slash('imagine', { prompt: 'a paper boat', steps: 1 }, { user: d.users.carol });
    const result = await imagine.waitForOriginal(isResult, JOB_WAIT);

    const shared = await privateAnswer(d.click(result, button(result, 'Share'), { user: d.users.bob }));
    expect(shared.content).toBe('⭐ Shared to the showcase channel.');
    const post = await d.waitForMessage((m) => m.channelId === d.channels.showcase.id && isResult(m));
    expect(post.content).toContain(`by <@${d.users.carol.id}> · shared by <@${d.users.bob.id}>`);
    expect(await imageSize(post)).toMatchObject({ width: 256, height: 256 });

    // 🔄 on the result by someone else: a reroll in the same channel, crediting who reacted.
    d.react(result, '🔄', d.users.alice);
    const reroll = await resultIn(d, general, new RegExp(`reroll by <@${d.users.alice.id}>`));
    expect(reroll.id).not.toBe(result.id);

    const refused = await privateAnswer(d.click(result, button(result, 'Delete'), { user: d.users.bob }));
    expect(refused.content).toMatch(/Only the person who made this image, or an admin/);
    const deleted = await privateAnswer(d.click(result, button(result, 'Delete'), { user: d.users.carol }));
    expect(deleted.content).toBe('✖️ Deleted.');
    await d.waitForDeletion(result);
    await d.waitForDeletion(post);
  });

  it('a rate-limit refusal is private and names the wait, while other people (here in a thread) are served', async () => {
    const d = await simulator();
    await startWorld(d, {
      ATELIER_LIMITS__USER__IMAGES: '4',
      ATELIER_LIMITS__USER__PER_SECONDS: '600',
      ATELIER_LIMITS__USER__BURST: '4',
    });
    const first = d.slash('imagine', { prompt: 'first batch', count: 4, steps: 1 }, { user: d.users.carol });
    await answeredInTime(first);
    const refusal = await privateAnswer(
      d.slash('imagine', { prompt: 'one more', steps: 1 }, { user: d.users.carol }),
    );
    expect(refusal.ephemeralTo).toBe(d.users.carol.id);
    expect(refusal.content).toMatch(/images per 10 minutes.*in (about )?\d+ (s|min)/s);

    const other = d.slash(
      'imagine',
      { prompt: 'someone else', steps: 1 },
      { user: d.users.bob, channel: d.channels.thread },
    );
    const served = await other.waitForOriginal(isResult, JOB_WAIT);
    expect(served.channelId).toBe(d.channels.thread.id);
    expect(served.ephemeral).toBe(false);
    await first.waitForOriginal(isResult, JOB_WAIT);
  });

  it('fits the result under a server’s small upload cap instead of failing', async () => {
    const d = await simulator();
    const small = d.createGuild({ name: 'Tiny uploads', uploadLimitBytes: 12_000 });
    await startWorld(d);
    const channel = d.channelsOf(small)[0]!;
    const interaction = d.slash('imagine', { prompt: 'a detailed city', steps: 1 }, { channel });
    const result = await interaction.waitForOriginal(isResult, JOB_WAIT);
    const [attachment] = result.attachments;
    expect(attachment!.size).toBeLessThanOrEqual(12_000);
    expect(await imageSize(result)).toMatchObject({ format: expect.stringMatching(/jpeg|webp/) });
    expect(d.requests.filter((r) => r.status === 413)).toEqual([]);
  });

  it('answers bad input privately within 3 s and keeps serving', async () => {
    const d = await simulator();
    const { app } = await startWorld(d);
    const general = d.channels.general;
    const empty = await privateAnswer(d.slash('imagine', { prompt: '' }, { unchecked: true }));
    expect(empty.content).toMatch(/prompt/i);
    const long = await privateAnswer(d.slash('imagine', { prompt: 'x'.repeat(10_000) }, { unchecked: true }));
    expect(long.content).toMatch(/2,?000/);
    const outOfRange = await privateAnswer(
      d.slash('imagine', { prompt: 'ok', count: 9, steps: 5000 }, { unchecked: true }),
    );
    expect(outOfRange.content).toMatch(/count|steps/i);

    const imagine = d.slash('imagine', { prompt: 'a kite', steps: 1 }, { user: d.users.carol });
    const result = await imagine.waitForOriginal(isResult, JOB_WAIT);
    const forged = await privateAnswer(d.click(result, 'at1:u:nosuchjob:0', { forge: true }));
    expect(forged.content).toMatch(/doesn't belong to an image I know/);
    const garbage = await privateAnswer(d.click(result, `${randomUUID()}`, { forge: true }));
    expect(garbage.content).toMatch(/doesn't belong to an image I know/);

    const jobId = app.store.results.findJobByMessage({
      platform: 'discord',
      channelId: general.id,
      messageId: result.id,
    })!;
    await privateAnswer(d.click(result, button(result, 'Delete'), { user: d.users.carol }));
    await d.waitForDeletion(result);
    const other = d.say(general, 'an old message with a stale button', d.users.bob);
    const stale = await privateAnswer(
      d.click(other, encodeButton({ action: 'reroll', jobId }), { forge: true, user: d.users.bob }),
    );
    expect(stale.content).toMatch(/That image was deleted/);

    const next = d.slash('imagine', { prompt: 'still here', steps: 1 });
    expect((await next.waitForOriginal(isResult, JOB_WAIT)).content).toContain('still here');
  });

  it('survives a 429 on the result upload: discord.js waits it out and the result arrives', async () => {
    const d = await simulator();
    // Progress edits wait a minute, so the first edit after the answer is the result upload.
    await startWorld(d, { ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '60000' });
    const interaction = d.slash('imagine', { prompt: 'patience', steps: 1 });
    await answeredInTime(interaction);
    const failure = d.failNext('PATCH /webhooks/:applicationId/:token/messages/:messageId', {
      retryAfter: 0.5,
    });
    const served = await failure.served;
    expect(served.status).toBe(429);
    expect(served.files).toHaveLength(1);
    const retried = await failure.retried;
    expect(retried.at - served.at).toBeGreaterThanOrEqual(500);
    const result = await interaction.waitForOriginal(isResult, JOB_WAIT);
    expect(await imageSize(result)).toMatchObject({ width: 256, height: 256 });
  });

  it('restart mid-job: the result still arrives in the original conversation', async () => {
    const d = await simulator();
    const env = { ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200' };
    const before = await startWorld(d, env);
    const dataDir = before.app.dataDir;
    const interaction = d.slash(
      'imagine',
      { prompt: 'survives restarts', steps: 12, seed: 5 },
      { user: d.users.carol, channel: d.channels.thread },
    );
    await interaction.waitForOriginal((m) => /step \d+\/12/.test(m.content), JOB_WAIT);
    await stopWorld(before, { keep: true });
    expect(isResult(interaction.original()!)).toBe(false);

    const after = await startWorld(d, env, dataDir);
    const result = await interaction.waitForOriginal(isResult, JOB_WAIT);
    expect(result.channelId).toBe(d.channels.thread.id);
    expect(result.content).toMatch(/survives restarts.*\n.*seed 5 · 12 steps/);
    expect(await imageSize(result)).toMatchObject({ width: 256, height: 256 });
    // No second message: the original was edited.
    expect(d.messages(d.channels.thread).filter((m) => m.content.includes('survives restarts'))).toHaveLength(
      1,
    );
    await stopWorld(after);
  });

  it('killed after answering /imagine and before recording the answer: after the restart the result edits that answer, and no second message appears', async () => {
    const d = await simulator();
    const env = { ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200' };
    const dataDir = mkdtempSync(join(tmpdir(), 'atelier-app-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const dying = await startBotThatDiesAfterAnswering(d, dataDir, env);
    const prompt = 'answered, then killed';
    const interaction = d.slash(
      'imagine',
      { prompt, steps: 6, seed: 11 },
      { user: d.users.carol, channel: d.channels.general },
    );
    const jobId = await dying.answered;
    await answeredInTime(interaction);
    const answer = interaction.original()!;
    expect(answer.content).toContain('⏳ Queued');
    const killed = new Promise((resolve) => dying.child.once('exit', (_code, signal) => resolve(signal)));
    dying.child.kill('SIGKILL');
    expect(await killed).toBe('SIGKILL');

    // The killed process had recorded the job, not the message that answered it.
    const store = openStore({ dataDir });
    expect(['queued', 'running']).toContain(store.jobs.get(jobId)!.state);
    expect(store.jobs.get(jobId)!.spec.reply.messageId).toBeUndefined();
    expect(store.results.messagesOf(jobId)).toEqual([]);
    store.close();

    const after = await startWorld(d, env, dataDir);
    const result = await interaction.waitForOriginal(isResult, JOB_WAIT);
    expect(result.id).toBe(answer.id);
    expect(result.content).toMatch(/answered, then killed.*\n.*seed 11 · 6 steps/);
    // The answer is the job's one message from now on (its buttons find the job), and the result
    // is confirmed, so no later start posts it again.
    expect(after.app.store.results.messagesOf(jobId).map((m) => m.messageId)).toEqual([answer.id]);
    expect(
      after.app.scheduler.findJobByMessage({
        platform: 'discord',
        channelId: answer.channelId,
        messageId: answer.id,
      })?.id,
    ).toBe(jobId);
    await after.app.scheduler.onIdle();
    await after.bot.stop();
    expect(after.app.store.jobs.undelivered(0).map((job) => job.id)).not.toContain(jobId);
    expect(d.messages(d.channels.general).filter((m) => m.content.includes(prompt))).toHaveLength(1);
  });
});
