/**
 * The Discord simulator's protocol fidelity, checked through discord.js's own REST client and a
 * connected discord.js Client: Discord's limits and error bodies, interaction callback rules,
 * rate-limit headers and buckets, intents.
 */
import { once } from 'node:events';
import {
  ApplicationCommandOptionType,
  Client,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  InteractionResponseType,
  MessageFlags,
  REST,
  RESTEvents,
  Routes,
} from 'discord.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DiscordSimulator, SimulatorUsageError, startDiscordSimulator } from './discord/index.js';

function restFor(d: DiscordSimulator): REST {
  return new REST({ api: d.apiUrl }).setToken(d.token);
}

async function rejection(promise: Promise<unknown>): Promise<DiscordAPIError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DiscordAPIError) return error;
    throw error;
  }
  throw new Error('expected Discord to refuse the request');
}

const choices = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `choice ${i}`, value: `c${i}` }));

describe('Discord simulator: REST limits and errors', () => {
  let d: DiscordSimulator;
  let rest: REST;

  beforeEach(async () => {
    d = await startDiscordSimulator({ uploadLimitBytes: 1000 });
    rest = restFor(d);
  });
  afterEach(() => d.stop());

  it('refuses command registrations Discord would refuse, with its 50035 field paths', async () => {
    const route = Routes.applicationCommands(d.applicationId);
    const tooMany = await rejection(
      rest.put(route, {
        body: [
          {
            name: 'imagine',
            description: 'Make an image',
            options: [
              {
                name: 'aspect',
                description: 'Ratio',
                type: ApplicationCommandOptionType.String,
                choices: choices(26),
              },
            ],
          },
        ],
      }),
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.code).toBe(50035);
    expect(tooMany.message).toContain(
      '0.options[0].choices[BASE_TYPE_MAX_LENGTH]: Must be 25 or fewer in length.',
    );

    const badNames = await rejection(
      rest.put(route, {
        body: [
          { name: 'Imagine', description: 'Upper case is not allowed' },
          { name: 'ok', description: 'x'.repeat(101) },
          {
            name: 'order',
            description: 'Required after optional',
            options: [
              { name: 'a', description: 'optional', type: ApplicationCommandOptionType.String },
              {
                name: 'b',
                description: 'required',
                type: ApplicationCommandOptionType.String,
                required: true,
              },
            ],
          },
        ],
      }),
    );
    expect(badNames.message).toContain('0.name[APPLICATION_COMMAND_INVALID_NAME]');
    expect(badNames.message).toContain(
      '1.description[BASE_TYPE_BAD_LENGTH]: Must be between 1 and 100 in length.',
    );
    expect(badNames.message).toContain('2.options[1].required[APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID]');
    expect(d.commands()).toEqual([]);
  });

  it('stores guild commands apart from global ones and keeps ids when a name is re-registered', async () => {
    const route = Routes.applicationGuildCommands(d.applicationId, d.guild.id);
    const body = [
      {
        name: 'imagine',
        description: 'Make an image',
        options: [{ name: 'aspect', description: 'Ratio', type: 3, choices: choices(25) }],
      },
    ];
    const [first] = (await rest.put(route, { body })) as { id: string; guild_id: string }[];
    const [again] = (await rest.put(route, { body })) as { id: string }[];
    expect(first?.guild_id).toBe(d.guild.id);
    expect(again?.id).toBe(first?.id);
    expect(d.commands(d.guild)).toHaveLength(1);
    expect(d.commands()).toEqual([]);
  });

  it("enforces the server's upload cap (413 / 40005) and at most 10 attachments", async () => {
    const route = Routes.channelMessages(d.channels.general.id);
    const tooBig = await rejection(
      rest.post(route, { body: {}, files: [{ name: 'big.png', data: Buffer.alloc(1001) }] }),
    );
    expect([tooBig.status, tooBig.code]).toEqual([413, 40005]);

    const eleven = Array.from({ length: 11 }, (_, i) => ({ name: `${i}.png`, data: Buffer.alloc(10) }));
    const tooMany = await rejection(rest.post(route, { body: {}, files: eleven }));
    expect(tooMany.message).toContain('attachments[BASE_TYPE_MAX_LENGTH]: Must be 10 or fewer in length.');

    const ok = (await rest.post(route, {
      body: { content: 'fits', attachments: [{ id: 0, description: 'a grid' }] },
      files: [{ name: 'small.png', data: Buffer.alloc(1000) }],
    })) as { attachments: { filename: string; size: number; description: string }[] };
    expect(ok.attachments).toMatchObject([{ filename: 'small.png', size: 1000, description: 'a grid' }]);
    expect(d.attachments(d.channels.general)[0]?.data).toHaveLength(1000);

    const boosted = d.createGuild({ name: 'Boosted', uploadLimitBytes: 50 * 1024 * 1024 });
    const [channel] = d.channelsOf(boosted);
    await rest.post(Routes.channelMessages(channel!.id), {
      body: {},
      files: [{ name: 'big.png', data: Buffer.alloc(5000) }],
    });
    expect(d.attachments(channel!)[0]?.size).toBe(5000);
  });

  it('checks message limits: empty, 2000 characters, duplicate custom_ids, 5 action rows', async () => {
    const route = Routes.channelMessages(d.channels.general.id);
    expect((await rejection(rest.post(route, { body: {} }))).code).toBe(50006);
    expect((await rejection(rest.post(route, { body: { content: 'x'.repeat(2001) } }))).message).toContain(
      'content[BASE_TYPE_MAX_LENGTH]: Must be 2000 or fewer in length.',
    );
    const button = (id: string) => ({ type: 2, style: 1, label: id, custom_id: id });
    const duplicate = await rejection(
      rest.post(route, {
        body: { content: 'x', components: [{ type: 1, components: [button('a'), button('a')] }] },
      }),
    );
    expect(duplicate.message).toContain(
      'components[0].components[1].custom_id[COMPONENT_CUSTOM_ID_DUPLICATED]',
    );
    const rows = Array.from({ length: 6 }, (_, i) => ({ type: 1, components: [button(`b${i}`)] }));
    expect(
      (await rejection(rest.post(route, { body: { content: 'x', components: rows } }))).message,
    ).toContain('components[BASE_TYPE_MAX_LENGTH]: Must be 5 or fewer in length.');
  });

  it('answers 401 without the bot token, 404 Unknown Channel/Message, 10014 for a non-emoji reaction', async () => {
    const anonymous = await fetch(`${d.apiUrl}/v10/users/@me`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual({ message: '401: Unauthorized', code: 0 });
    expect((await rejection(rest.get(Routes.channel('123456789012345678')))).code).toBe(10003);
    expect(
      (await rejection(rest.get(Routes.channelMessage(d.channels.general.id, '123456789012345678')))).code,
    ).toBe(10008);

    const message = (await rest.post(Routes.channelMessages(d.channels.general.id), {
      body: { content: 'hi' },
    })) as {
      id: string;
    };
    const notEmoji = await rejection(
      rest.put(Routes.channelMessageOwnReaction(d.channels.general.id, message.id, 'repeat')),
    );
    expect(notEmoji.code).toBe(10014);
    await rest.put(Routes.channelMessageOwnReaction(d.channels.general.id, message.id, '⭐'));
    expect(d.message(message.id)?.reactions).toEqual([{ emoji: '⭐', userIds: [d.bot.id] }]);

    await fetch(`${d.apiUrl}/v10/not/a/route`, { headers: { authorization: `Bot ${d.token}` } });
    expect(d.unhandledRequests.map((r) => r.path)).toEqual(['/api/v10/not/a/route']);
  });

  it('sends rate-limit headers and enforces buckets: discord.js waits for the reset', async () => {
    await d.stop();
    d = await startDiscordSimulator({ rateLimit: { limit: 2, windowMs: 300 } });
    rest = restFor(d);
    const limited: unknown[] = [];
    rest.on(RESTEvents.RateLimited, (info) => limited.push(info));
    const response = await fetch(`${d.apiUrl}/v10/channels/${d.channels.general.id}/messages`, {
      method: 'POST',
      headers: { authorization: `Bot ${d.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ content: 'raw' }),
    });
    expect(response.headers.get('x-ratelimit-limit')).toBe('2');
    expect(response.headers.get('x-ratelimit-remaining')).toBe('1');
    expect(Number(response.headers.get('x-ratelimit-reset-after'))).toBeGreaterThan(0);
    expect(response.headers.get('x-ratelimit-bucket')).toMatch(/^[0-9a-f]{32}$/);

    const route = Routes.channelMessages(d.channels.general.id);
    const started = Date.now();
    await Promise.all([1, 2, 3].map((n) => rest.post(route, { body: { content: `n${n}` } })));
    expect(d.messages(d.channels.general)).toHaveLength(4);
    // The bucket allowed 2 per 300 ms: the client had to wait out a reset at least once.
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(d.requests.filter((r) => r.status === 429 && !r.injected).length + limited.length).toBeGreaterThan(
      0,
    );
  });
});

describe('Discord simulator: interaction callbacks', () => {
  let d: DiscordSimulator;
  let client: Client;

  beforeEach(async () => {
    d = await startDiscordSimulator();
    // A connected client that never answers on its own: the tests answer through its REST.
    client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: d.apiUrl } });
    const ready = once(client, Events.ClientReady);
    await client.login(d.token);
    await ready;
    await client.rest.put(Routes.applicationCommands(d.applicationId), {
      body: [
        {
          name: 'imagine',
          description: 'Make an image',
          options: [
            { name: 'prompt', description: 'What', type: 3, required: true },
            { name: 'count', description: 'How many', type: 4, min_value: 1, max_value: 4 },
            { name: 'style', description: 'Style', type: 3, autocomplete: true },
          ],
        },
      ],
    });
  });

  afterEach(async () => {
    await client.destroy();
    await d.stop();
  });

  const callback = (id: string, token: string, body: unknown, query?: URLSearchParams) =>
    client.rest.post(Routes.interactionCallback(id, token), {
      body,
      auth: false,
      ...(query ? { query } : {}),
    });

  it('checks options like the Discord client, unless told to forge them', () => {
    expect(() => d.slash('imagine', {})).toThrow(SimulatorUsageError);
    expect(() => d.slash('imagine', { prompt: 'x', count: 9 })).toThrow(/out of range/);
    expect(() => d.slash('imagine', { prompt: 'x', colour: 'red' })).toThrow(/no option "colour"/);
    expect(() => d.slash('paint', { prompt: 'x' })).toThrow(/not registered/);
    const forged = d.slash('imagine', { prompt: 'x', count: 9 }, { unchecked: true });
    expect(forged.payload.data).toMatchObject({ options: [{ name: 'prompt' }, { name: 'count', value: 9 }] });
  });

  it('builds subcommand payloads with resolved channels, users and attachments', async () => {
    await client.rest.put(Routes.applicationGuildCommands(d.applicationId, d.guild.id), {
      body: [
        {
          name: 'atelier',
          description: 'Admin settings',
          options: [
            {
              name: 'showcase',
              description: 'Set the showcase channel',
              type: ApplicationCommandOptionType.Subcommand,
              options: [
                {
                  name: 'channel',
                  description: 'Where',
                  type: ApplicationCommandOptionType.Channel,
                  required: true,
                },
              ],
            },
            {
              name: 'vary',
              description: 'Vary an image',
              type: ApplicationCommandOptionType.Subcommand,
              options: [
                {
                  name: 'image',
                  description: 'Image',
                  type: ApplicationCommandOptionType.Attachment,
                  required: true,
                },
                { name: 'for', description: 'Who', type: ApplicationCommandOptionType.User },
              ],
            },
          ],
        },
      ],
    });
    await d.waitForCommands(undefined, { guild: d.guild });
    const set = d.slash('atelier showcase', { channel: d.channels.showcase }, { user: d.users.alice });
    expect(set.payload).toMatchObject({
      data: {
        name: 'atelier',
        options: [
          {
            name: 'showcase',
            type: 1,
            options: [{ name: 'channel', type: 7, value: d.channels.showcase.id }],
          },
        ],
        resolved: { channels: { [d.channels.showcase.id]: { name: 'showcase' } } },
      },
      member: { user: { id: d.users.alice.id } },
    });
    const vary = d.slash('atelier vary', {
      image: { filename: 'in.png', data: Buffer.from('bytes') },
      for: d.users.carol,
    });
    const data = (
      vary.payload as unknown as {
        data: {
          options: { options: { value: string }[] }[];
          resolved: Record<string, Record<string, { url?: string }>>;
        };
      }
    ).data;
    const attachmentId = data.options[0]!.options[0]!.value;
    const url = data.resolved.attachments![attachmentId]!.url!;
    expect(Buffer.from(await (await fetch(url)).arrayBuffer()).toString()).toBe('bytes');
    expect(data.resolved.users![d.users.carol.id]).toMatchObject({ username: 'carol' });
    // Guild commands do not exist in DMs.
    expect(() =>
      d.slash('atelier showcase', { channel: d.channels.general }, { channel: d.dm(d.users.bob) }),
    ).toThrow(/not registered/);
  });

  it('accepts one acknowledgement (40060 for the second) and answers with_response', async () => {
    const interaction = d.slash('imagine', { prompt: 'fox' });
    const query = new URLSearchParams({ with_response: 'true' });
    const first = (await callback(
      interaction.id,
      interaction.token,
      { type: 5, data: { flags: 64 } },
      query,
    )) as {
      interaction: { id: string; response_message_loading: boolean; response_message_ephemeral: boolean };
      resource: { type: number; message: { flags: number } };
    };
    expect(first.interaction).toMatchObject({
      id: interaction.id,
      response_message_loading: true,
      response_message_ephemeral: true,
    });
    expect(first.resource.message.flags).toBe(MessageFlags.Loading | MessageFlags.Ephemeral);
    const second = await rejection(
      callback(interaction.id, interaction.token, { type: 4, data: { content: 'again' } }),
    );
    expect([second.status, second.code]).toEqual([400, 40060]);
    expect(interaction.callbacks.map((c) => c.status)).toEqual([200, 400]);
    expect(interaction.original()?.ephemeralTo).toBe(d.users.bob.id);
  });

  it('fills a deferred reply with the first follow-up; later follow-ups are new messages', async () => {
    const interaction = d.slash('imagine', { prompt: 'fox' });
    await callback(interaction.id, interaction.token, {
      type: InteractionResponseType.DeferredChannelMessageWithSource,
    });
    const webhook = Routes.webhook(d.applicationId, interaction.token);
    const filled = (await client.rest.post(webhook, {
      body: { content: 'done' },
      auth: false,
      query: new URLSearchParams({ wait: 'true' }),
    })) as {
      id: string;
    };
    expect(filled.id).toBe(interaction.originalMessageId);
    await client.rest.post(webhook, { body: { content: 'only you', flags: 64 }, auth: false });
    expect(interaction.followUps()).toHaveLength(1);
    const [secret] = interaction.followUps();
    expect(secret?.ephemeral).toBe(true);
    // Ephemeral messages are invisible to the channel routes.
    expect(
      (await rejection(client.rest.get(Routes.channelMessage(d.channels.general.id, secret!.id)))).code,
    ).toBe(10008);
  });

  it('takes a type 4 reply with files and the ephemeral flag; follow-ups can be fetched, edited, deleted', async () => {
    const interaction = d.slash('imagine', { prompt: 'fox' }, { user: d.users.carol });
    await client.rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
      body: {
        type: 4,
        data: { content: 'only for you', flags: MessageFlags.Ephemeral, attachments: [{ id: 0 }] },
      },
      files: [{ name: 'preview.png', data: Buffer.from('not really a png') }],
      auth: false,
    });
    const original = interaction.original()!;
    expect(original).toMatchObject({
      content: 'only for you',
      ephemeral: true,
      ephemeralTo: d.users.carol.id,
    });
    expect(original.attachments.map((a) => a.filename)).toEqual(['preview.png']);
    const fetched = (await client.rest.get(
      Routes.webhookMessage(d.applicationId, interaction.token, '@original'),
      {
        auth: false,
      },
    )) as { id: string; flags: number };
    expect(fetched).toMatchObject({ id: original.id, flags: MessageFlags.Ephemeral });

    const followUp = (await client.rest.post(Routes.webhook(d.applicationId, interaction.token), {
      body: { content: 'step 1/4' },
      auth: false,
      query: new URLSearchParams({ wait: 'true' }),
    })) as { id: string };
    const route = Routes.webhookMessage(d.applicationId, interaction.token, followUp.id);
    await client.rest.patch(route, { body: { content: 'step 2/4' }, auth: false });
    expect(d.message(followUp.id)?.history.map((h) => h.content)).toEqual(['step 1/4', 'step 2/4']);
    await client.rest.delete(route, { auth: false });
    expect((await rejection(client.rest.get(route, { auth: false }))).code).toBe(10008);
    expect(interaction.followUps()).toEqual([]);
  });

  it('refuses the webhook before any acknowledgement (10015) and wrong callback types (50035)', async () => {
    const interaction = d.slash('imagine', { prompt: 'fox' });
    const early = await rejection(
      client.rest.patch(Routes.webhookMessage(d.applicationId, interaction.token, '@original'), {
        body: { content: 'x' },
        auth: false,
      }),
    );
    expect(early.code).toBe(10015);
    const wrongType = await rejection(callback(interaction.id, interaction.token, { type: 6 }));
    expect(wrongType.code).toBe(50035);
    const typing = d.autocomplete('imagine', { prompt: 'x', style: 'w' }, { focused: 'style' });
    const tooMany = await rejection(
      callback(typing.id, typing.token, { type: 8, data: { choices: choices(26) } }),
    );
    expect(tooMany.message).toContain('data.choices[BASE_TYPE_MAX_LENGTH]');
  });

  it('checks modals (type 9) as Discord does and sends what the person submits as MODAL_SUBMIT', async () => {
    const interaction = d.slash('imagine', { prompt: 'fox' }, { user: d.users.carol });
    const label = (over: Record<string, unknown> = {}) => ({
      type: 18,
      label: 'Prompt',
      component: { type: 4, custom_id: 'prompt', style: 2, max_length: 10, value: 'a fox', ...over },
    });
    const bad = await rejection(
      callback(interaction.id, interaction.token, {
        type: 9,
        data: {
          custom_id: 'remix',
          title: 'x'.repeat(46),
          components: [label({ label: 'Old style label', value: 'far too long a value' })],
        },
      }),
    );
    expect(bad.code).toBe(50035);
    expect(bad.message).toContain('data.title[BASE_TYPE_BAD_LENGTH]');
    expect(bad.message).toContain('data.components[0].component.label[COMPONENT_INVALID_FIELD]');
    expect(bad.message).toContain('data.components[0].component.value[BASE_TYPE_MAX_LENGTH]');
    expect(interaction.acknowledged).toBe(false);

    await callback(interaction.id, interaction.token, {
      type: 9,
      data: { custom_id: 'remix', title: 'Remix', components: [label({ required: true, min_length: 1 })] },
    });
    const modal = await interaction.waitForModal();
    expect(modal.inputs.map((i) => [i.customId, i.label, i.value])).toEqual([['prompt', 'Prompt', 'a fox']]);
    expect(interaction.original()).toBeUndefined();
    // Discord's client does not submit what breaks the input's rules.
    expect(() => d.submitModal(interaction, { prompt: '' })).toThrow(/"Prompt" is required/);
    expect(() => d.submitModal(interaction, { prompt: 'x'.repeat(11) })).toThrow(/1–10 characters/);
    expect(() => d.submitModal(interaction, { other: 'x' })).toThrow(/has no input "other"/);

    const submitted = once(client, Events.InteractionCreate);
    const submit = d.submitModal(interaction, { prompt: 'a cat' });
    const [received] = (await submitted) as [import('discord.js').Interaction];
    expect(received.isModalSubmit()).toBe(true);
    if (!received.isModalSubmit()) return;
    expect(received.customId).toBe('remix');
    expect(received.fields.getTextInputValue('prompt')).toBe('a cat');
    expect(received.user.id).toBe(d.users.carol.id);
    // A modal submit is answered like a message, never with another modal, nor by updating a
    // message when it did not come from one.
    const again = await rejection(
      callback(submit.id, submit.token, {
        type: 9,
        data: { custom_id: 'x', title: 'x', components: [label()] },
      }),
    );
    expect(again.code).toBe(50035);
    expect((await rejection(callback(submit.id, submit.token, { type: 6 }))).code).toBe(50035);
    await callback(submit.id, submit.token, { type: 4, data: { content: 'queued a cat' } });
    expect(submit.original()?.content).toBe('queued a cat');
  });

  it('dispatches by intent: a bot without reaction intents never sees reactions', async () => {
    const raw: string[] = [];
    client.on(Events.Raw, (packet: { t: string | null }) => packet.t && raw.push(packet.t));
    const message = (await client.rest.post(Routes.channelMessages(d.channels.general.id), {
      body: { content: 'hi' },
    })) as {
      id: string;
    };
    d.react(d.message(message.id)!, '🔄', d.users.carol);
    // Dispatches are ordered on the socket: once the interaction arrives, a reaction event would have too.
    const arrived = once(client, Events.InteractionCreate);
    d.slash('imagine', { prompt: 'marker' });
    await arrived;
    expect(raw).toContain('INTERACTION_CREATE');
    expect(raw).not.toContain('MESSAGE_REACTION_ADD');
    expect(raw).not.toContain('MESSAGE_CREATE');
  });
});
