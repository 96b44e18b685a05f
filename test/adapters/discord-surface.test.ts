/**
 * The Discord surface's transport and rendering, through the real discord.js against the
 * Discord simulator, with a test double of the Bot contract (commands/bot.ts) that records what
 * it was given and answers as each test scripts. The real Bot is exercised in discord-e2e.
 */
import { Writable } from 'node:stream';
import { GatewayIntentBits, InteractionResponseType, MessageFlags } from 'discord.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDiscordSurface, type DiscordBot, type DiscordSurface } from '../../adapters/discord/index.js';
import type {
  ChatAdapter,
  Choice,
  CommandArgs,
  CommandDef,
  Invocation,
  PostedMessage,
  ReactionEvent,
} from '../../commands/types.js';
import type { Requester } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { type DiscordSimulator, startDiscordSimulator } from '../simulators/discord/index.js';

const ASPECTS = ['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3', '21:9'];
const STYLES = Array.from({ length: 30 }, (_, i) => ({ name: `style ${i}`, value: `s${i}` }));

const COMMANDS: CommandDef[] = [
  {
    name: 'imagine',
    description: 'Make an image from a prompt',
    options: [
      { name: 'negative', description: 'What to avoid', type: 'string', maxLength: 2000 },
      { name: 'prompt', description: 'What to draw', type: 'string', required: true, maxLength: 2000 },
      {
        name: 'aspect',
        description: 'Aspect ratio',
        type: 'string',
        choices: ASPECTS.map((a) => ({ name: a, value: a })),
      },
      { name: 'count', description: 'Images, 1–4', type: 'integer', min: 1, max: 4 },
      { name: 'guidance', description: 'CFG scale', type: 'number', min: 0, max: 20 },
      { name: 'style', description: 'A style', type: 'string', choices: STYLES },
    ],
  },
  {
    name: 'atelier',
    description: 'Admin settings for this server',
    adminOnly: true,
    subcommands: [
      {
        name: 'showcase',
        description: 'Set the showcase channel',
        options: [
          { name: 'channel', description: 'Where shared images go', type: 'channel', required: true },
        ],
      },
      { name: 'pause', description: 'Pause the queue' },
    ],
  },
];

interface Call {
  kind: 'command' | 'action' | 'form';
  name: string;
  args?: CommandArgs;
  invocation: Invocation;
}

/** The Bot contract, scripted: `onCommand`/`onAction` decide what each test's bot does. */
class ScriptedBot implements DiscordBot {
  readonly commands = COMMANDS;
  adapter: ChatAdapter | undefined;
  readonly calls: Call[] = [];
  readonly reactions: ReactionEvent[] = [];
  readonly autocompletes: { command: string; option: string; partial: string; requester: Requester }[] = [];
  onCommand: (invocation: Invocation, name: string, args: CommandArgs) => Promise<void> = async (
    inv,
    name,
  ) => {
    await inv.reply({ text: `ok ${name}` });
  };
  onAction: (invocation: Invocation, customId: string) => Promise<void> = async (inv, id) => {
    await inv.reply({ text: `clicked ${id}` });
  };
  onForm: (
    invocation: Invocation,
    formId: string,
    values: Readonly<Record<string, string | undefined>>,
  ) => Promise<void> = async (inv, id, values) => {
    await inv.reply({ text: `submitted ${id}: ${JSON.stringify(values)}` });
  };
  #reactionWaiters: ((event: ReactionEvent) => void)[] = [];

  attach(adapter: ChatAdapter): void {
    this.adapter = adapter;
  }
  async command(invocation: Invocation, name: string, args: CommandArgs) {
    this.calls.push({ kind: 'command', name, args, invocation });
    await this.onCommand(invocation, name, args);
  }
  async action(invocation: Invocation, customId: string) {
    this.calls.push({ kind: 'action', name: customId, invocation });
    await this.onAction(invocation, customId);
  }
  async submitForm(
    invocation: Invocation,
    formId: string,
    values: Readonly<Record<string, string | undefined>>,
  ) {
    this.calls.push({ kind: 'form', name: formId, args: { ...values }, invocation });
    await this.onForm(invocation, formId, values);
  }
  async reaction(event: ReactionEvent) {
    this.reactions.push(event);
    for (const waiter of this.#reactionWaiters.splice(0)) waiter(event);
  }
  autocomplete(requester: Requester, command: string, option: string, partial: string): Choice[] {
    this.autocompletes.push({ requester, command, option, partial });
    return STYLES.filter((s) => s.name.includes(partial));
  }
  nextReaction(): Promise<ReactionEvent> {
    return new Promise((resolve) => this.#reactionWaiters.push(resolve));
  }
}

/** A promise with its resolver, to hold the scripted bot until the test lets it go. */
function gate<T = void>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Makes the bot answer its next command publicly with `text`; resolves with what it posted. */
function replyOnce(bot: ScriptedBot, text: string): Promise<PostedMessage> {
  const replied = gate<PostedMessage>();
  bot.onCommand = async (inv) => {
    replied.open(await inv.reply({ text }));
  };
  return replied.promise;
}

function logSink() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'debug', destination }) };
}

describe('Discord surface (discord.js against the simulator, scripted Bot)', () => {
  let d: DiscordSimulator;
  let surface: DiscordSurface;
  let bot: ScriptedBot;
  let log: ReturnType<typeof logSink>;

  async function start(
    options: { deferAfterMs?: number; maxUploadBytes?: number; guildIds?: string[] } = {},
  ) {
    log = logSink();
    surface = createDiscordSurface({ token: d.token, apiUrl: d.apiUrl, logger: log.logger, ...options });
    bot = new ScriptedBot();
    return surface.start(bot);
  }

  beforeEach(async () => {
    d = await startDiscordSimulator();
  });

  afterEach(async () => {
    await surface?.stop();
    await d.stop();
  });

  it('connects with unprivileged intents, says whom it is connected as, and attaches its adapter', async () => {
    const line = await start();
    expect(line).toBe('discord: connected as Atelier (1 server)');
    const session = await d.waitForReady();
    const privileged =
      GatewayIntentBits.GuildMembers | GatewayIntentBits.GuildPresences | GatewayIntentBits.MessageContent;
    expect(session.intents & privileged).toBe(0);
    expect(session.intents & GatewayIntentBits.GuildMessageReactions).not.toBe(0);
    expect(bot.adapter).toBe(surface.adapter);
    expect(surface.adapter.platform).toBe('discord');
  });

  it('refuses to start with a wrong token, and can be started again with the right one', async () => {
    log = logSink();
    surface = createDiscordSurface({ token: 'wrong', apiUrl: d.apiUrl, logger: log.logger });
    await expect(surface.start(new ScriptedBot())).rejects.toThrow(/token/i);
    await expect(start()).resolves.toMatch(/^discord: connected as /);
  });

  it('registers the commands globally: required options first, ranges, autocomplete beyond 25 choices, subcommands', async () => {
    await start();
    const [imagine, atelier] = await d.waitForCommands((c) => c.length === 2);
    const options = imagine!.options!.map((o) => ({ ...o })) as Record<string, unknown>[];
    expect(options.map((o) => o.name)).toEqual([
      'prompt',
      'negative',
      'aspect',
      'count',
      'guidance',
      'style',
    ]);
    expect(options[0]).toMatchObject({ type: 3, required: true, max_length: 2000 });
    expect(options[2]).toMatchObject({ choices: ASPECTS.map((a) => ({ name: a, value: a })) });
    expect(options[3]).toMatchObject({ type: 4, min_value: 1, max_value: 4 });
    expect(options[4]).toMatchObject({ type: 10, min_value: 0, max_value: 20 });
    expect(options[5]).toMatchObject({ autocomplete: true });
    expect(options[5]).not.toHaveProperty('choices');
    expect(imagine!.contexts).toEqual([0, 1]);
    expect(atelier!.contexts).toEqual([0]);
    expect(atelier!.options!.map((o) => [o.type, o.name])).toEqual([
      [1, 'showcase'],
      [1, 'pause'],
    ]);
  });

  it('registers per server when guildIds are configured', async () => {
    await start({ guildIds: [d.guild.id] });
    const commands = await d.waitForCommands((c) => c.length === 2, { guild: d.guild });
    expect(commands.map((c) => c.name)).toEqual(['imagine', 'atelier']);
    expect(d.commands()).toEqual([]);
  });

  it('forwards a slash command with its requester, place and arguments; a quick answer is the response itself', async () => {
    await start();
    const replied = gate<PostedMessage>();
    bot.onCommand = async (inv) => {
      replied.open(
        await inv.reply({
          text: '**Queued** — position 1',
          buttons: [[{ id: 'job:1:cancel', label: 'Cancel' }]],
        }),
      );
    };
    const interaction = d.slash(
      'imagine',
      { prompt: 'a red fox', count: 2, guidance: 4.5 },
      { user: d.users.carol },
    );
    const response = await interaction.waitForResponse();
    expect(response.type).toBe(InteractionResponseType.ChannelMessageWithSource);
    expect(response.latencyMs).toBeLessThan(1000);
    const message = interaction.original()!;
    expect(message.content).toBe('**Queued** — position 1');
    expect(message.buttons.map((b) => b.customId)).toEqual(['job:1:cancel']);
    expect(message.ephemeral).toBe(false);

    const call = bot.calls[0]!;
    expect(call.name).toBe('imagine');
    expect(call.args).toEqual({ prompt: 'a red fox', count: 2, guidance: 4.5 });
    expect(call.invocation.requester).toEqual({
      platform: 'discord',
      userId: d.users.carol.id,
      displayName: 'Carol',
      teamId: d.guild.id,
      roleIds: [],
    });
    expect(call.invocation.where).toMatchObject({
      platform: 'discord',
      channelId: d.channels.general.id,
      teamId: d.guild.id,
    });
    const posted = await replied.promise;
    expect(posted).toMatchObject({
      platform: 'discord',
      channelId: d.channels.general.id,
      messageId: message.id,
      teamId: d.guild.id,
    });
    expect(posted.extra?.interaction).toMatchObject({
      applicationId: d.applicationId,
      userId: d.users.carol.id,
    });
  });

  it('passes subcommands as "atelier showcase" with the channel id, and admins their role ids', async () => {
    await start();
    const interaction = d.slash(
      'atelier showcase',
      { channel: d.channels.showcase },
      { user: d.users.alice },
    );
    await interaction.waitForResponse();
    const call = bot.calls[0]!;
    expect(call.name).toBe('atelier showcase');
    expect(call.args).toEqual({ channel: d.channels.showcase.id });
    const adminRole = d.guild.roles.find((r) => r.name === 'Admin')!;
    expect(call.invocation.requester.roleIds).toEqual([adminRole.id]);
  });

  it('defers a slow answer before Discord’s window closes, then fills the deferred message', async () => {
    await start({ deferAfterMs: 200 });
    const release = gate();
    const done = gate<PostedMessage>();
    bot.onCommand = async (inv) => {
      await release.promise;
      done.open(await inv.reply({ text: 'finally' }));
    };
    const interaction = d.slash('imagine', { prompt: 'slow' });
    const response = await interaction.waitForResponse();
    expect(response.type).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
    expect(response.latencyMs).toBeGreaterThanOrEqual(190);
    expect(response.latencyMs).toBeLessThan(3000);
    release.open();
    const posted = await done.promise;
    const message = await interaction.waitForOriginal((m) => m.content === 'finally');
    expect(posted.messageId).toBe(message.id);
    expect(message.flags & MessageFlags.Loading).toBe(0);
    expect(interaction.callbacks).toHaveLength(1);
  });

  it('keeps a private answer private after a public defer: ephemeral follow-up, placeholder deleted', async () => {
    await start({ deferAfterMs: 100 });
    const release = gate();
    bot.onCommand = async (inv) => {
      await release.promise;
      await inv.replyPrivately({ text: 'You have reached your limit; try again in 5 minutes.' });
    };
    const interaction = d.slash('imagine', { prompt: 'too many' }, { user: d.users.carol });
    await interaction.waitForResponse();
    release.open();
    // The placeholder is deleted last, after the ephemeral follow-up. (The simulator's
    // waitForFollowUp can miss a follow-up created in one step, so wait on the deletion.)
    const placeholder = d.message(interaction.originalMessageId!)!;
    await d.waitForDeletion(placeholder);
    expect(placeholder.history.map((h) => h.content).join('|')).not.toContain('limit');
    const [note] = interaction.followUps();
    expect(note).toMatchObject({
      ephemeral: true,
      ephemeralTo: d.users.carol.id,
      content: 'You have reached your limit; try again in 5 minutes.',
    });
  });

  it('answers privately at once when the bot refuses quickly (ephemeral response)', async () => {
    await start();
    bot.onCommand = (inv) => inv.replyPrivately({ text: 'The prompt is empty.' });
    const interaction = d.slash('imagine', { prompt: '' }, { unchecked: true });
    const response = await interaction.waitForResponse();
    expect(response.type).toBe(InteractionResponseType.ChannelMessageWithSource);
    const message = interaction.original()!;
    expect(message.ephemeral).toBe(true);
    expect(message.content).toBe('The prompt is empty.');
  });

  it('apologises privately when the bot throws, and keeps serving', async () => {
    await start();
    bot.onCommand = async () => {
      throw new Error('bug in the bot');
    };
    const broken = d.slash('imagine', { prompt: 'x' });
    await broken.waitForResponse();
    expect(broken.original()).toMatchObject({
      ephemeral: true,
      content: 'Something went wrong. Please try again.',
    });
    expect(log.lines.some((l) => l.msg === 'discord: the bot failed on an interaction')).toBe(true);

    bot.onCommand = async (inv) => {
      await inv.reply({ text: 'fine again' });
    };
    const next = d.slash('imagine', { prompt: 'y' });
    expect((await next.waitForOriginal()).content).toBe('fine again');
  });

  it('closes interactions the bot leaves unanswered: a command gets a private ✓, a click a silent acknowledgement', async () => {
    await start();
    bot.onCommand = async () => {};
    const command = d.slash('imagine', { prompt: 'x' });
    await command.waitForResponse();
    expect(command.original()).toMatchObject({ ephemeral: true, content: '✓' });

    bot.onCommand = async (inv) => {
      await inv.reply({ text: 'result', buttons: [[{ id: 'job:2:delete', label: 'Delete' }]] });
    };
    const result = await d.slash('imagine', { prompt: 'y' }).waitForOriginal();
    bot.onAction = async () => {};
    const click = d.click(result, 'job:2:delete');
    expect((await click.waitForResponse()).type).toBe(InteractionResponseType.DeferredMessageUpdate);
  });

  it('forwards button clicks with the custom id; a reply is a new public message', async () => {
    await start();
    bot.onCommand = async (inv) => {
      await inv.reply({
        text: 'result',
        buttons: [
          [
            { id: 'job:7:u1', label: 'U1' },
            { id: 'job:7:reroll', label: 'Reroll', emoji: '🔄', style: 'primary' },
          ],
        ],
      });
    };
    const result = await d.slash('imagine', { prompt: 'fox' }).waitForOriginal();
    expect(result.buttons.map((b) => [b.customId, b.label, b.emoji, b.style])).toEqual([
      ['job:7:u1', 'U1', undefined, 2],
      ['job:7:reroll', 'Reroll', '🔄', 1],
    ]);
    const click = d.click(result, 'job:7:reroll', { user: d.users.alice });
    await click.waitForResponse();
    const reply = click.original()!;
    expect(reply.id).not.toBe(result.id);
    expect(reply.content).toBe('clicked job:7:reroll');
    expect(bot.calls.at(-1)).toMatchObject({ kind: 'action', name: 'job:7:reroll' });
    expect(bot.calls.at(-1)!.invocation.requester.userId).toBe(d.users.alice.id);
  });

  it('opens a form as a modal (callback 9, Label + Text Input) and hands the submitted text to the bot', async () => {
    await start();
    bot.onCommand = async (inv) => {
      await inv.reply({ text: 'result', buttons: [[{ id: 'at1:r:job7', label: 'Reroll' }]] });
    };
    const result = await d.slash('imagine', { prompt: 'fox' }).waitForOriginal();
    bot.onAction = async (inv) => {
      expect(inv.openForm).toBeDefined();
      await inv.openForm!({
        id: 'at1f:r:job7',
        title: 'Remix · Reroll — a title far longer than Discord’s 45 characters',
        submitLabel: 'Make it',
        fields: [
          { id: 'prompt', label: 'Prompt', value: 'a fox', multiline: true, required: true, maxLength: 9000 },
        ],
      });
    };
    const click = d.click(result, 'at1:r:job7', { user: d.users.carol });
    const modal = await click.waitForModal();
    expect(click.response!.latencyMs).toBeLessThan(3000);
    expect(modal.customId).toBe('at1f:r:job7');
    expect([...modal.title]).toHaveLength(45);
    expect(modal.inputs).toEqual([
      expect.objectContaining({
        customId: 'prompt',
        label: 'Prompt',
        style: 2,
        required: true,
        minLength: 1,
        maxLength: 4000,
        value: 'a fox',
      }),
    ]);
    // Nothing was posted for the click itself: the modal is its answer.
    expect(click.original()).toBeUndefined();

    const submit = d.submitModal(click, { prompt: 'a fox in the snow' });
    await submit.waitForResponse();
    const reply = await submit.waitForOriginal();
    expect(reply.content).toBe('submitted at1f:r:job7: {"prompt":"a fox in the snow"}');
    expect(reply.ephemeral).toBe(false);
    const call = bot.calls.at(-1)!;
    expect(call).toMatchObject({ kind: 'form', name: 'at1f:r:job7', args: { prompt: 'a fox in the snow' } });
    expect(call.invocation.requester.userId).toBe(d.users.carol.id);
    expect(call.invocation.where.channelId).toBe(d.channels.general.id);
    // A submitted modal cannot open another one.
    expect(call.invocation.openForm).toBeUndefined();
    expect(() => d.submitModal(click)).toThrow(/submitted already/);
  });

  it('a modal asked for after the click was deferred is refused politely (click again)', async () => {
    await start({ deferAfterMs: 100 });
    bot.onCommand = async (inv) => {
      await inv.reply({ text: 'result', buttons: [[{ id: 'job:7:reroll', label: 'Reroll' }]] });
    };
    const result = await d.slash('imagine', { prompt: 'fox' }).waitForOriginal();
    const release = gate();
    bot.onAction = async (inv) => {
      await release.promise;
      await inv.openForm!({ id: 'f', title: 'Late', submitLabel: 'Go', fields: [{ id: 'x', label: 'X' }] });
    };
    const click = d.click(result, 'job:7:reroll', { user: d.users.alice });
    expect((await click.waitForResponse()).type).toBe(InteractionResponseType.DeferredMessageUpdate);
    release.open();
    const apology = await click.waitForFollowUp((m) => m.ephemeral);
    expect(apology.content).toBe('That took me too long to open the form. Please click again.');
    expect(click.callbacks.filter((c) => c.type === InteractionResponseType.Modal)).toEqual([]);
  });

  it('forwards forged custom ids to the bot (it verifies them) and answers within the window', async () => {
    await start();
    const result = await d.slash('imagine', { prompt: 'fox' }).waitForOriginal();
    bot.onAction = (inv) => inv.replyPrivately({ text: 'That button is not valid any more.' });
    const forged = d.click(result, 'job:999:u1'.padEnd(100, 'x'), { forge: true });
    await forged.waitForResponse();
    expect(forged.original()).toMatchObject({
      ephemeral: true,
      content: 'That button is not valid any more.',
    });
  });

  it('edits an interaction message through its token, and through the channel once the token has expired', async () => {
    await start();
    const replied = replyOnce(bot, 'queued');
    d.slash('imagine', { prompt: 'fox' });
    const posted = await replied;
    await surface.adapter.edit(posted, { text: 'step 1/4' });
    expect(d.requests.at(-1)?.route).toBe('PATCH /webhooks/:applicationId/:token/messages/:messageId');

    const reference = posted.extra!.interaction as Record<string, unknown>;
    const stale = {
      ...posted,
      extra: { interaction: { ...reference, createdAt: Date.now() - 20 * 60_000 } },
    };
    await surface.adapter.edit(stale, { text: 'done' });
    expect(d.requests.at(-1)?.route).toBe('PATCH /channels/:channelId/messages/:messageId');
    expect(d.message(posted.messageId)!.history.map((h) => h.content)).toEqual([
      'queued',
      'step 1/4',
      'done',
    ]);
  });

  it('falls back to the channel route when Discord refuses the token', async () => {
    await start();
    const replied = replyOnce(bot, 'queued');
    d.slash('imagine', { prompt: 'fox' });
    const posted = await replied;
    const reference = posted.extra!.interaction as Record<string, unknown>;
    const forged = { ...posted, extra: { interaction: { ...reference, token: 'not-a-token' } } };
    await surface.adapter.edit(forged, { text: 'still edited' });
    expect(d.message(posted.messageId)!.content).toBe('still edited');
  });

  it('replaces the image on edits: a preview, then the result, then text alone', async () => {
    await start();
    const png = (byte: number) => ({
      data: new Uint8Array([0x89, 0x50, 0x4e, 0x47, byte]),
      filename: `img-${byte}.png`,
      mime: 'image/png',
      width: 1,
      height: 1,
    });
    const posted = await surface.adapter.post(
      { platform: 'discord', channelId: d.channels.general.id, teamId: d.guild.id },
      { text: 'step 2/4', preview: png(1) },
    );
    await surface.adapter.edit(posted, { text: 'done', image: png(2) });
    expect(d.message(posted.messageId)!.attachments.map((a) => a.filename)).toEqual(['img-2.png']);
    await surface.adapter.edit(posted, { text: 'deleted image' });
    expect(d.message(posted.messageId)!.attachments).toEqual([]);
  });

  it('fits messages to Discord: long text cut, rows of 5 buttons, no mass mentions', async () => {
    await start();
    const buttons = [Array.from({ length: 7 }, (_, i) => ({ id: `b${i}`, label: `B${i}` }))];
    const text = `<@${d.users.bob.id}> @everyone ${'x'.repeat(3000)}`;
    const posted = await surface.adapter.post(
      { platform: 'discord', channelId: d.channels.general.id },
      { text, buttons },
    );
    const message = d.message(posted.messageId)!;
    expect(Array.from(message.content)).toHaveLength(2000);
    expect(message.content.endsWith('…')).toBe(true);
    expect(message.components.map((row) => ('components' in row ? row.components.length : 0))).toEqual([
      5, 2,
    ]);
    const body = d.requests.at(-1)!.body as { allowed_mentions: unknown };
    expect(body.allowed_mentions).toEqual({ parse: [], users: [d.users.bob.id] });
    expect(log.lines.some((l) => l.msg === 'discord: message trimmed to fit Discord limits')).toBe(true);
  });

  it('works in threads (channel + thread) and DMs (no server)', async () => {
    await start();
    const inThread = d.slash('imagine', { prompt: 'thread' }, { channel: d.channels.thread });
    const threadAnswer = await inThread.waitForOriginal();
    expect(threadAnswer.channelId).toBe(d.channels.thread.id);
    expect(bot.calls[0]!.invocation.where).toMatchObject({
      channelId: d.channels.general.id,
      threadId: d.channels.thread.id,
    });
    const posted = await surface.adapter.post(bot.calls[0]!.invocation.where, { text: 'into the thread' });
    expect(d.message(posted.messageId)!.channelId).toBe(d.channels.thread.id);

    const dm = d.dm(d.users.carol);
    const inDm = d.slash('imagine', { prompt: 'dm' }, { channel: dm, user: d.users.carol });
    expect((await inDm.waitForOriginal()).channelId).toBe(dm.id);
    const where = bot.calls[1]!.invocation.where;
    expect(where.channelId).toBe(dm.id);
    expect(where.teamId).toBeUndefined();
    expect(bot.calls[1]!.invocation.requester.teamId).toBeUndefined();
  });

  it('tells privately: an ephemeral follow-up on a live interaction, else a DM', async () => {
    await start();
    const interaction = d.slash('imagine', { prompt: 'x' }, { user: d.users.carol });
    await interaction.waitForResponse();
    const where = bot.calls[0]!.invocation.where;
    await surface.adapter.tellPrivately(where, d.users.carol.id, { text: 'your job failed' });
    const followUp = await interaction.waitForFollowUp();
    expect(followUp).toMatchObject({
      ephemeral: true,
      ephemeralTo: d.users.carol.id,
      content: 'your job failed',
    });

    const plain = { platform: 'discord', channelId: d.channels.general.id, teamId: d.guild.id };
    await surface.adapter.tellPrivately(plain, d.users.bob.id, { text: 'your reroll failed' });
    expect(d.messages(d.dm(d.users.bob)).map((m) => m.content)).toEqual(['your reroll failed']);
  });

  it('forwards reactions on uncached messages with their unicode emoji, ignoring its own', async () => {
    await start();
    const posted = await surface.adapter.post(
      { platform: 'discord', channelId: d.channels.general.id, teamId: d.guild.id },
      { text: 'result' },
    );
    const message = d.message(posted.messageId)!;
    const first = bot.nextReaction();
    d.react(message, '🔄', d.users.bob);
    const event = await first;
    expect(event).toMatchObject({
      emoji: '🔄',
      message: {
        platform: 'discord',
        channelId: d.channels.general.id,
        messageId: message.id,
        teamId: d.guild.id,
      },
      requester: { userId: d.users.bob.id, displayName: 'Bob', teamId: d.guild.id },
      where: { channelId: d.channels.general.id, teamId: d.guild.id },
    });

    const second = bot.nextReaction();
    d.react(message, '✖️', d.bot);
    d.react(message, '❌', d.users.alice);
    expect(await second).toMatchObject({ emoji: '❌', requester: { userId: d.users.alice.id } });
    expect(bot.reactions.map((r) => r.requester.userId)).not.toContain(d.bot.id);
  });

  it('suggests autocomplete choices from the bot, at most 25', async () => {
    await start();
    const typing = d.autocomplete('imagine', { prompt: 'x', style: 'style' }, { focused: 'style' });
    const response = await typing.waitForResponse();
    expect(response.type).toBe(InteractionResponseType.ApplicationCommandAutocompleteResult);
    expect(response.data?.choices).toHaveLength(25);
    expect(bot.autocompletes[0]).toMatchObject({ command: 'imagine', option: 'style', partial: 'style' });
  });

  it('reports the upload cap: the server’s (from interactions) under the operator’s cap', async () => {
    const boosted = d.createGuild({ name: 'Boosted', uploadLimitBytes: 50 * 1024 * 1024 });
    await start({ maxUploadBytes: 25 * 1024 * 1024 });
    const target = { platform: 'discord', channelId: d.channelsOf(boosted)[0]!.id, teamId: boosted.id };
    expect(surface.adapter.uploadLimit(target)).toBe(10 * 1024 * 1024);
    await d.slash('imagine', { prompt: 'x' }, { channel: d.channelsOf(boosted)[0]! }).waitForResponse();
    expect(surface.adapter.uploadLimit(target)).toBe(25 * 1024 * 1024);

    const small = d.createGuild({ name: 'Small', uploadLimitBytes: 8 * 1024 * 1024 });
    await d.slash('imagine', { prompt: 'x' }, { channel: d.channelsOf(small)[0]! }).waitForResponse();
    expect(surface.adapter.uploadLimit({ ...target, teamId: small.id })).toBe(8 * 1024 * 1024);
  });

  it('lets discord.js wait out a 429 on an upload instead of failing or spinning', async () => {
    await start();
    const failure = d.failNext('POST /channels/:channelId/messages', { retryAfter: 0.3 });
    const posted = await surface.adapter.post(
      { platform: 'discord', channelId: d.channels.general.id },
      {
        text: 'result',
        image: { data: new Uint8Array(64), filename: 'r.png', mime: 'image/png', width: 1, height: 1 },
      },
    );
    const [served, retried] = [await failure.served, await failure.retried];
    expect(served.status).toBe(429);
    expect(retried.at - served.at).toBeGreaterThanOrEqual(300);
    expect(d.requests.filter((r) => r.route === 'POST /channels/:channelId/messages')).toHaveLength(2);
    expect(d.message(posted.messageId)!.attachments).toHaveLength(1);
  });

  it('deletes messages (a message already gone is not an error) and refuses to send once stopped', async () => {
    await start();
    const replied = replyOnce(bot, 'result');
    d.slash('imagine', { prompt: 'x' });
    const posted = await replied;
    await surface.adapter.delete(posted);
    expect(d.message(posted.messageId)!.deleted).toBe(true);
    await surface.adapter.delete(posted);
    await surface.stop();
    await expect(surface.adapter.edit(posted, { text: 'late' })).rejects.toThrow(/not running/);
  });
});
