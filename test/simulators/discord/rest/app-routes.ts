/** Identity, gateway discovery, guild lookups and application command registration. */
import type { APIApplicationCommand } from 'discord-api-types/v10';
import { ApplicationCommandType, ChannelType } from 'discord-api-types/v10';
import { channelJson, guildCreateJson, memberJson, userJson } from '../serialize.js';
import { snowflake } from '../snowflake.js';
import { validateCommand, validateCommandList } from './command-validation.js';
import { DiscordErrors, FormErrors } from './errors.js';
import { noContent, ok, type RestDeps, type RouteDefinition } from './routes.js';

export function appRoutes(deps: RestDeps): RouteDefinition[] {
  const { state } = deps;
  const gatewayInfo = () => ({ url: deps.gateway.url });
  const checkApp = (applicationId: string | undefined) => {
    if (applicationId !== state.applicationId) throw DiscordErrors.unknownApplication();
  };
  const guildOrThrow = (guildId: string | undefined) => {
    const guild = guildId ? state.guilds.get(guildId) : undefined;
    if (!guild) throw DiscordErrors.unknownGuild();
    return guild;
  };

  /** Stores a command as Discord returns it; a re-registered name keeps its id (Discord upserts by name). */
  const store = (
    guildId: string | null,
    body: Record<string, unknown>,
    previous: APIApplicationCommand[],
  ) => {
    const type = (body.type as ApplicationCommandType | undefined) ?? ApplicationCommandType.ChatInput;
    const existing = previous.find((c) => c.name === body.name && (c.type ?? 1) === type);
    return {
      default_member_permissions: null,
      nsfw: false,
      integration_types: [0],
      contexts: null,
      ...body,
      id: existing?.id ?? snowflake(),
      application_id: state.applicationId,
      version: snowflake(),
      type,
      description: (body.description as string | undefined) ?? '',
      ...(guildId ? { guild_id: guildId } : {}),
    } as APIApplicationCommand;
  };

  const register = (guildId: string | null, commands: APIApplicationCommand[]) => {
    state.commands.set(guildId ?? '', commands);
    const registration = { guildId, commands, at: Date.now() };
    state.registrations.push(registration);
    state.events.emit('commandsRegistered', registration);
  };

  const overwrite = (guildId: string | null, body: unknown) => {
    validateCommandList(body).throwIfAny();
    const previous = state.commands.get(guildId ?? '') ?? [];
    const commands = (body as Record<string, unknown>[]).map((c) => store(guildId, c, previous));
    register(guildId, commands);
    return ok(commands);
  };

  const create = (guildId: string | null, body: unknown) => {
    const errors = new FormErrors();
    validateCommand((body ?? {}) as Record<string, unknown>, [], errors);
    errors.throwIfAny();
    const previous = state.commands.get(guildId ?? '') ?? [];
    const command = store(guildId, body as Record<string, unknown>, previous);
    const isNew = !previous.some((c) => c.id === command.id);
    register(guildId, [...previous.filter((c) => c.id !== command.id), command]);
    return { status: isNew ? 201 : 200, body: command };
  };

  const remove = (guildId: string | null, commandId: string | undefined) => {
    const previous = state.commands.get(guildId ?? '') ?? [];
    if (!previous.some((c) => c.id === commandId)) throw DiscordErrors.unknownCommand();
    register(
      guildId,
      previous.filter((c) => c.id !== commandId),
    );
    return noContent();
  };

  return [
    { key: 'GET /gateway', auth: false, handle: () => ok(gatewayInfo()) },
    {
      key: 'GET /gateway/bot',
      handle: () =>
        ok({
          ...gatewayInfo(),
          shards: 1,
          session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
        }),
    },
    {
      key: 'GET /users/@me',
      handle: () => ok({ ...userJson(state.bot), verified: true, mfa_enabled: false, flags: 0 }),
    },
    {
      key: 'GET /users/:userId',
      handle: ({ params }) => {
        const user = state.users.get(params.userId!);
        if (!user) throw DiscordErrors.unknownUser();
        return ok(userJson(user));
      },
    },
    {
      key: 'POST /users/@me/channels',
      handle: ({ body }) => {
        const user = state.users.get(String((body as { recipient_id?: unknown })?.recipient_id));
        if (!user || user.bot) throw DiscordErrors.unknownUser();
        return ok(channelJson(state, state.dmChannel(user)));
      },
    },
    {
      key: 'GET /applications/@me',
      handle: () =>
        ok({
          id: state.applicationId,
          name: state.bot.username,
          icon: null,
          description: 'Simulated application',
          bot_public: true,
          bot_require_code_grant: false,
          bot: userJson(state.bot),
          verify_key: '0'.repeat(64),
          flags: 0,
          team: null,
          owner: userJson(state.bot),
          install_params: { scopes: ['bot', 'applications.commands'], permissions: '0' },
          integration_types_config: { '0': {} },
        }),
    },
    {
      key: 'GET /applications/:applicationId/commands',
      handle: ({ params }) => {
        checkApp(params.applicationId);
        return ok(state.commands.get('') ?? []);
      },
    },
    {
      key: 'PUT /applications/:applicationId/commands',
      handle: ({ params, body }) => {
        checkApp(params.applicationId);
        return overwrite(null, body);
      },
    },
    {
      key: 'POST /applications/:applicationId/commands',
      handle: ({ params, body }) => {
        checkApp(params.applicationId);
        return create(null, body);
      },
    },
    {
      key: 'DELETE /applications/:applicationId/commands/:commandId',
      handle: ({ params }) => {
        checkApp(params.applicationId);
        return remove(null, params.commandId);
      },
    },
    {
      key: 'GET /applications/:applicationId/guilds/:guildId/commands',
      handle: ({ params }) => {
        checkApp(params.applicationId);
        return ok(state.commands.get(guildOrThrow(params.guildId).id) ?? []);
      },
    },
    {
      key: 'PUT /applications/:applicationId/guilds/:guildId/commands',
      handle: ({ params, body }) => {
        checkApp(params.applicationId);
        return overwrite(guildOrThrow(params.guildId).id, body);
      },
    },
    {
      key: 'POST /applications/:applicationId/guilds/:guildId/commands',
      handle: ({ params, body }) => {
        checkApp(params.applicationId);
        return create(guildOrThrow(params.guildId).id, body);
      },
    },
    {
      key: 'DELETE /applications/:applicationId/guilds/:guildId/commands/:commandId',
      handle: ({ params }) => {
        checkApp(params.applicationId);
        return remove(guildOrThrow(params.guildId).id, params.commandId);
      },
    },
    {
      key: 'GET /guilds/:guildId',
      handle: ({ params }) => {
        const {
          members: _m,
          channels: _c,
          threads: _t,
          presences: _p,
          voice_states: _v,
          ...guild
        } = guildCreateJson(state, guildOrThrow(params.guildId));
        return ok(guild);
      },
    },
    {
      key: 'GET /guilds/:guildId/channels',
      handle: ({ params }) => {
        const guild = guildOrThrow(params.guildId);
        const channels = [...state.channels.values()].filter(
          (c) => c.guildId === guild.id && c.type === ChannelType.GuildText,
        );
        return ok(channels.map((c) => channelJson(state, c)));
      },
    },
    {
      key: 'GET /guilds/:guildId/members/:userId',
      handle: ({ params }) => {
        const guild = guildOrThrow(params.guildId);
        const user = state.users.get(params.userId!);
        if (!user || !guild.memberIds.includes(user.id)) throw DiscordErrors.unknownMember();
        return ok(memberJson(guild, user));
      },
    },
  ];
}
