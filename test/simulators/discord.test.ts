/**
 * The Discord simulator proven against the real discord.js 14 client: a minimal bot defined here
 * logs in through the simulated gateway, registers commands over REST, answers slash commands
 * (defer → edit with a PNG), buttons and reactions, and survives an injected 429.
 */
import { EventEmitter, once } from 'node:events';
import {
  ActionRowBuilder,
  ApplicationCommandOptionType,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  type ChatInputApplicationCommandData,
  Client,
  type ClientOptions,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  InteractionContextType,
  MessageFlags,
  Partials,
} from 'discord.js';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DiscordSimulator, InteractionExpiredError, startDiscordSimulator } from './discord/index.js';

const IMAGINE: ChatInputApplicationCommandData = {
  name: 'imagine',
  description: 'Make an image from a prompt',
  contexts: [InteractionContextType.Guild, InteractionContextType.BotDM],
  options: [
    {
      name: 'prompt',
      description: 'What to draw',
      type: ApplicationCommandOptionType.String,
      required: true,
    },
    {
      name: 'aspect',
      description: 'Aspect ratio',
      type: ApplicationCommandOptionType.String,
      choices: [
        { name: 'square', value: '1:1' },
        { name: 'wide', value: '16:9' },
      ],
    },
    {
      name: 'count',
      description: 'How many',
      type: ApplicationCommandOptionType.Integer,
      min_value: 1,
      max_value: 4,
    },
    { name: 'style', description: 'A style', type: ApplicationCommandOptionType.String, autocomplete: true },
  ],
};

interface Bot {
  client: Client;
  /** Errors the bot's handlers hit (e.g. a late answer refused by Discord). */
  errors: unknown[];
  /** Resolves with the next error a handler hits. */
  nextError(): Promise<unknown>;
}

/**
 * The minimal bot: /imagine defers, then edits the reply with a PNG and two buttons; "reroll"
 * updates the message; "delete" defers the update and deletes; 🔄 posts a reply in the channel.
 */
async function startBot(
  d: DiscordSimulator,
  png: Buffer,
  hooks: { beforeAnswer?: () => Promise<void>; ws?: ClientOptions['ws'] } = {},
): Promise<Bot> {
  const client = new Client({
    intents: [
      GatewayIntentBits.Guilds,
      GatewayIntentBits.GuildMessageReactions,
      GatewayIntentBits.DirectMessageReactions,
    ],
    partials: [Partials.Message, Partials.Reaction, Partials.User, Partials.Channel],
    rest: { api: d.apiUrl },
    ...(hooks.ws ? { ws: hooks.ws } : {}),
  });
  const errors: unknown[] = [];
  const failures = new EventEmitter();
  const fail = (error: unknown) => {
    errors.push(error);
    failures.emit('error', error);
  };
  client.on(Events.InteractionCreate, async (interaction) => {
    try {
      if (interaction.isAutocomplete()) {
        const typed = interaction.options.getFocused();
        await interaction.respond(
          ['watercolor', 'woodcut'].filter((s) => s.startsWith(typed)).map((s) => ({ name: s, value: s })),
        );
      } else if (interaction.isChatInputCommand()) {
        await hooks.beforeAnswer?.();
        await interaction.deferReply();
        const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
          new ButtonBuilder().setCustomId('job:1:reroll').setLabel('Reroll').setStyle(ButtonStyle.Primary),
          new ButtonBuilder().setCustomId('job:1:delete').setLabel('Delete').setStyle(ButtonStyle.Danger),
        );
        await interaction.editReply({
          content: `**${interaction.options.getString('prompt')}** (${interaction.options.getString('aspect') ?? '1:1'})`,
          files: [new AttachmentBuilder(png, { name: 'grid.png' })],
          components: [row],
        });
      } else if (interaction.isButton() && interaction.customId === 'job:1:reroll') {
        await interaction.update({ content: `rerolled by ${interaction.user.username}`, components: [] });
      } else if (interaction.isButton() && interaction.customId === 'job:1:delete') {
        await interaction.deferUpdate();
        await interaction.deleteReply();
      }
    } catch (error) {
      fail(error);
    }
  });
  client.on(Events.MessageReactionAdd, async (reaction, user) => {
    if (user.id === client.user?.id || reaction.emoji.name !== '🔄') return;
    try {
      const channel = await client.channels.fetch(reaction.message.channelId);
      if (channel?.isSendable()) await channel.send(`🔄 reroll requested by <@${user.id}>`);
    } catch (error) {
      fail(error);
    }
  });
  const ready = once(client, Events.ClientReady);
  await client.login(d.token);
  await ready;
  await client.application!.commands.set([IMAGINE]);
  return { client, errors, nextError: async () => (await once(failures, 'error'))[0] };
}

describe('Discord simulator with discord.js', () => {
  let d: DiscordSimulator;
  let bot: Bot | undefined;
  let png: Buffer;

  beforeEach(async () => {
    d = await startDiscordSimulator({ heartbeatIntervalMs: 100 });
    png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#c05020' } })
      .png()
      .toBuffer();
  });

  afterEach(async () => {
    await bot?.client.destroy();
    bot = undefined;
    await d.stop();
  });

  it('logs the bot in: READY, one GUILD_CREATE with channels and thread, heartbeats acknowledged', async () => {
    bot = await startBot(d, png);
    const guild = bot.client.guilds.cache.get(d.guild.id);
    expect(guild?.name).toBe('Atelier Lab');
    expect(guild?.channels.cache.get(d.channels.general.id)?.name).toBe('general');
    expect(bot.client.channels.cache.get(d.channels.thread.id)?.isThread()).toBe(true);
    expect(bot.client.user?.id).toBe(d.bot.id);
    const session = await d.waitForReady();
    expect(session.intents & GatewayIntentBits.GuildMessageReactions).not.toBe(0);
    await new Promise<void>((resolve) => d.on('heartbeat', (s) => s.heartbeats >= 2 && resolve()));
    expect(bot.client.ws.ping).toBeGreaterThanOrEqual(0);
  });

  it('stores the registered commands with their options, choices and limits', async () => {
    bot = await startBot(d, png);
    const [imagine] = await d.waitForCommands();
    expect(imagine?.name).toBe('imagine');
    expect(imagine?.options?.map((o) => o.name)).toEqual(['prompt', 'aspect', 'count', 'style']);
    const aspect = imagine?.options?.find((o) => o.name === 'aspect');
    expect(aspect && 'choices' in aspect ? aspect.choices : []).toHaveLength(2);
  });

  it('answers /imagine within the window: defer, then an edit carrying the PNG and buttons', async () => {
    bot = await startBot(d, png);
    const interaction = d.slash('imagine', { prompt: 'a red fox', aspect: '16:9' });
    const response = await interaction.waitForResponse();
    expect(response.type).toBe(5);
    expect(response.latencyMs).toBeLessThan(3000);

    const result = await interaction.waitForOriginal((m) => m.attachments.length === 1);
    expect(result.content).toBe('**a red fox** (16:9)');
    expect(result.attachments[0]?.data.equals(png)).toBe(true);
    expect([result.attachments[0]?.width, result.attachments[0]?.height]).toEqual([64, 48]);
    expect(result.buttons.map((b) => b.customId)).toEqual(['job:1:reroll', 'job:1:delete']);
    expect(result.flags & MessageFlags.Loading).toBe(0);
    expect(result.history).toHaveLength(2);
    expect(bot.errors).toEqual([]);

    const downloaded = Buffer.from(await (await fetch(result.attachments[0]!.url)).arrayBuffer());
    expect(downloaded.equals(png)).toBe(true);
  });

  it('works in threads and DMs', async () => {
    bot = await startBot(d, png);
    const inThread = d.slash('imagine', { prompt: 'in a thread' }, { channel: d.channels.thread });
    expect((await inThread.waitForOriginal((m) => m.attachments.length > 0)).channelId).toBe(
      d.channels.thread.id,
    );
    const inDm = d.slash(
      'imagine',
      { prompt: 'in a DM' },
      { channel: d.dm(d.users.carol), user: d.users.carol },
    );
    const original = await inDm.waitForOriginal((m) => m.attachments.length > 0);
    expect(original.channelId).toBe(d.dm(d.users.carol).id);
    expect(original.guildId).toBeNull();
  });

  it('delivers button clicks: update in place, and deferred update + delete', async () => {
    bot = await startBot(d, png);
    const result = await d.slash('imagine', { prompt: 'fox' }).waitForOriginal((m) => m.buttons.length > 0);

    const reroll = d.click(result, 'job:1:reroll', { user: d.users.carol });
    expect((await reroll.waitForResponse()).type).toBe(7);
    const updated = d.message(result.id)!;
    expect(updated.content).toBe('rerolled by carol');
    expect(updated.buttons).toEqual([]);

    const second = await d.slash('imagine', { prompt: 'owl' }).waitForOriginal((m) => m.buttons.length > 0);
    d.click(second, 'job:1:delete');
    await d.waitForDeletion(second);
    expect(d.messages(d.channels.general).map((m) => m.id)).not.toContain(second.id);
  });

  it('delivers reactions to a bot that asked for them; its own reactions come back too', async () => {
    bot = await startBot(d, png);
    const result = await d
      .slash('imagine', { prompt: 'fox' })
      .waitForOriginal((m) => m.attachments.length > 0);
    d.react(result, '🔄', d.users.carol);
    const reply = await d.waitForMessage((m) => m.content.startsWith('🔄 reroll'));
    expect(reply.content).toBe(`🔄 reroll requested by <@${d.users.carol.id}>`);
    expect(reply.author.id).toBe(d.bot.id);
    expect(d.message(result.id)?.reactions).toEqual([{ emoji: '🔄', userIds: [d.users.carol.id] }]);

    const removed = once(bot.client, Events.MessageReactionRemove);
    d.unreact(result, '🔄', d.users.carol);
    const [reaction, user] = (await removed) as [{ emoji: { name: string } }, { id: string }];
    expect([reaction.emoji.name, user.id]).toEqual(['🔄', d.users.carol.id]);
    expect(d.message(result.id)?.reactions).toEqual([]);
  });

  it('delivers reactions on messages the bot did not write too (the bot must filter them)', async () => {
    bot = await startBot(d, png);
    const chatter = d.say(d.channels.general, 'just chatting', d.users.alice);
    const added = once(bot.client, Events.MessageReactionAdd);
    d.react(chatter, '⭐', d.users.bob);
    const [reaction] = (await added) as [{ message: { id: string; partial: boolean } }];
    expect(reaction.message.id).toBe(chatter.id);
  });

  it('survives an injected 429 on the reply edit: discord.js waits retry_after, then retries', async () => {
    bot = await startBot(d, png);
    const failure = d.failNext('PATCH /webhooks/:applicationId/:token/messages/:messageId', {
      retryAfter: 0.3,
    });
    const interaction = d.slash('imagine', { prompt: 'patience' });
    const served = await failure.served;
    const retried = await failure.retried;
    expect(served.status).toBe(429);
    expect(retried.status).toBe(200);
    expect(retried.at - served.at).toBeGreaterThanOrEqual(300);
    expect((await interaction.waitForOriginal((m) => m.attachments.length > 0)).content).toContain(
      'patience',
    );
    expect(bot.errors).toEqual([]);
  });

  it('autocomplete: the bot answers with choices (type 8)', async () => {
    bot = await startBot(d, png);
    const typing = d.autocomplete('imagine', { prompt: 'x', style: 'wa' }, { focused: 'style' });
    const response = await typing.waitForResponse();
    expect(response.type).toBe(8);
    expect(response.data?.choices).toEqual([{ name: 'watercolor', value: 'watercolor' }]);
  });

  it('expires an interaction left unanswered past the window; the late answer gets 10062', async () => {
    await d.stop();
    d = await startDiscordSimulator({ interactionTimeoutMs: 150 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    bot = await startBot(d, png, { beforeAnswer: () => held });
    const interaction = d.slash('imagine', { prompt: 'too slow' });
    await expect(interaction.waitForResponse()).rejects.toBeInstanceOf(InteractionExpiredError);
    const lateError = bot.nextError();
    release();
    const late = (await lateError) as DiscordAPIError;
    expect(late).toBeInstanceOf(DiscordAPIError);
    expect(late.code).toBe(10062);
    expect(interaction.callbacks.map((c) => [c.status, c.errorCode])).toEqual([[404, 10062]]);
    expect(interaction.original()).toBeUndefined();
  });

  it('resumes after a dropped gateway connection and replays what the bot missed', async () => {
    bot = await startBot(d, png);
    const result = await d
      .slash('imagine', { prompt: 'fox' })
      .waitForOriginal((m) => m.attachments.length > 0);
    const closed = new Promise((resolve) => d.on('gatewayClosed', resolve));
    d.gateway.disconnect(4000);
    await closed;
    // Reacting while the bot is away: the event waits in the session and is replayed on RESUME.
    d.react(result, '🔄', d.users.alice);
    await new Promise((resolve) => d.on('gatewayResumed', resolve));
    const reply = await d.waitForMessage((m) => m.content.startsWith('🔄 reroll'));
    expect(reply.content).toContain(d.users.alice.id);
    expect(d.gateway.sessions[0]?.resumes).toBe(1);
  });

  it('follows op 7 RECONNECT with a RESUME, and op 9 INVALID_SESSION with a fresh IDENTIFY', async () => {
    // discord.js spaces IDENTIFYs 5 s apart (max_concurrency 1); this test lifts that client-side wait.
    bot = await startBot(d, png, {
      ws: { buildIdentifyThrottler: () => ({ waitForIdentify: async () => {} }) },
    });
    const first = await d.waitForReady();
    const resumed = once(bot.client, Events.ShardResume);
    d.gateway.requestReconnect();
    await resumed;
    expect(d.gateway.sessions.map((s) => [s.sessionId, s.resumes])).toEqual([[first.sessionId, 1]]);

    const identified = new Promise<{ sessionId: string }>((resolve) => d.on('gatewayReady', resolve));
    d.gateway.invalidateSessions();
    const second = await identified;
    expect(second.sessionId).not.toBe(first.sessionId);
    // The bot still works on the new session.
    const result = await d
      .slash('imagine', { prompt: 'again' })
      .waitForOriginal((m) => m.attachments.length > 0);
    expect(result.content).toContain('again');
  });

  it('announces a server the bot joins, with its channels, in one GUILD_CREATE', async () => {
    bot = await startBot(d, png);
    const joined = once(bot.client, Events.GuildCreate);
    const guild = d.createGuild({ name: 'Second Server' });
    await joined;
    const [channel] = d.channelsOf(guild);
    expect(bot.client.guilds.cache.get(guild.id)?.channels.cache.get(channel!.id)?.name).toBe('general');
  });

  it('refuses a wrong token (REST 401 → TokenInvalid) and privileged intents (close 4014)', async () => {
    const wrong = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: d.apiUrl } });
    await expect(wrong.login('not-the-token')).rejects.toThrow(/invalid token/i);
    await wrong.destroy();
    expect(d.requests.at(-1)).toMatchObject({ route: 'GET /gateway/bot', status: 401, authorized: false });

    const greedy = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.MessageContent],
      rest: { api: d.apiUrl },
    });
    const closed = new Promise<{ code: number }>((resolve) => d.on('gatewayClosed', resolve));
    greedy.login(d.token).catch(() => {});
    expect((await closed).code).toBe(4014);
    await greedy.destroy();
  });
});
