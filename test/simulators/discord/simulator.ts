import type { IncomingMessage, ServerResponse } from 'node:http';
import { ChannelType, GatewayDispatchEvents, InteractionType } from 'discord-api-types/v10';
import { SimulatorUsageError } from '../shared/errors.js';
import type { FailureHandle, InjectedFailure } from '../shared/failures.js';
import { type LocalServer, sendJson, startLocalServer } from '../shared/http.js';
import { type WaitOptions, waitForState } from '../shared/waiting.js';
import { GatewayServer, type GatewaySessionInfo } from './gateway.js';
import {
  baseInteraction,
  buildOptions,
  commandData,
  componentData,
  findCommand,
  type OptionValue,
} from './interaction-payloads.js';
import { InteractionHandle } from './interactions.js';
import {
  type DiscordSimulatorOptions,
  type ResolvedDiscordOptions,
  resolveDiscordOptions,
} from './options.js';
import { ADMIN_PERMISSIONS, BOT_PERMISSIONS, EVERYONE_PERMISSIONS } from './permissions.js';
import { appRoutes } from './rest/app-routes.js';
import { channelRoutes } from './rest/channel-routes.js';
import { interactionRoutes } from './rest/interaction-routes.js';
import { modalSubmitData } from './rest/modal.js';
import { DiscordRouter } from './rest/router.js';
import type { DiscordRoute, RestDeps } from './rest/routes.js';
import { messageJson } from './serialize.js';
import { snowflake } from './snowflake.js';
import { type DiscordEventMap, DiscordState } from './state.js';
import type { RestRequestRecord, SimAttachment, SimChannel, SimGuild, SimMessage, SimUser } from './types.js';

/** The people of the default world: alice owns the server (admin), bob and carol are members. */
export interface DiscordUsers {
  alice: SimUser;
  bob: SimUser;
  carol: SimUser;
}

/** The default server's channels: two text channels and a public thread in #general. */
export interface DiscordChannels {
  general: SimChannel;
  showcase: SimChannel;
  thread: SimChannel;
}

export interface InteractionOptions {
  /** Who runs it. @default users.bob (a plain member) */
  user?: SimUser;
  /** Where. @default channels.general */
  channel?: SimChannel;
  /** Skip the checks Discord's client makes (required options, choices, ranges, types) — to simulate forged input. @default false */
  unchecked?: boolean;
}

export interface ClickOptions {
  /** @default users.bob */
  user?: SimUser;
  /** Allow a custom_id that is not on the message (a forged or stale id). @default false */
  forge?: boolean;
}

/**
 * A local Discord: REST under `<apiUrl>/v10` and a gateway WebSocket, spoken to by an unmodified
 * discord.js `Client({ rest: { api: d.apiUrl } })`. Tests drive people (slash commands, clicks,
 * reactions, messages) and assert on what the bot did, through typed, event-driven waits.
 */
export class DiscordSimulator {
  readonly options: ResolvedDiscordOptions;
  readonly state: DiscordState;
  readonly gateway: GatewayServer;
  readonly router: DiscordRouter;
  readonly applicationId: string;
  readonly bot: SimUser;
  readonly users: DiscordUsers;
  readonly guild: SimGuild;
  readonly channels: DiscordChannels;
  /** Every interaction sent to the bot, by id. */
  readonly interactions = new Map<string, InteractionHandle>();
  #server: LocalServer | undefined;

  constructor(options: DiscordSimulatorOptions = {}) {
    this.options = resolveDiscordOptions(options);
    this.applicationId = snowflake();
    this.bot = { id: this.applicationId, username: this.options.botName, globalName: null, bot: true };
    this.state = new DiscordState(this.bot, this.applicationId, this.options.uploadLimitBytes);
    this.users = {
      alice: this.state.addUser('alice'),
      bob: this.state.addUser('bob'),
      carol: this.state.addUser('carol'),
    };
    this.guild = this.createGuild({ name: this.options.guildName, owner: this.users.alice });
    const general = this.#channel(this.guild, 'general', ChannelType.GuildText, null);
    this.channels = {
      general,
      showcase: this.#channel(this.guild, 'showcase', ChannelType.GuildText, null),
      thread: this.#channel(this.guild, 'imagine-thread', ChannelType.PublicThread, general.id),
    };
    this.gateway = new GatewayServer(this.state, this.options);
    const deps: RestDeps = {
      state: this.state,
      options: this.options,
      gateway: this.gateway,
      interactions: this.interactions,
    };
    this.router = new DiscordRouter(deps, [
      ...appRoutes(deps),
      ...interactionRoutes(deps),
      ...channelRoutes(deps),
    ]);
  }

  /** Starts listening on 127.0.0.1 (random port). Use `startDiscordSimulator()` to construct and start at once. */
  async start(): Promise<this> {
    this.#server = await startLocalServer({
      request: (req, res) => this.#handle(req, res),
      upgrade: (req, socket, head) => {
        if (new URL(req.url ?? '/', 'http://localhost').pathname === '/gateway')
          this.gateway.handleUpgrade(req, socket, head);
        else socket.destroy();
      },
    });
    this.state.baseUrl = this.#server.url;
    this.gateway.url = `${this.#server.url.replace('http', 'ws')}/gateway`;
    return this;
  }

  async stop(): Promise<void> {
    for (const handle of this.interactions.values()) handle.markExpired();
    await this.gateway.close();
    await this.#server?.close();
  }

  /**
   * Discord unreachable: the listener closes, so new connections to REST and the gateway are
   * refused (ECONNREFUSED) until `goOnline()`, which listens again on the same port. Open gateway
   * sessions are not touched.
   */
  async goOffline(): Promise<void> {
    const server = this.#server;
    if (!server) throw new SimulatorUsageError('the Discord simulator is not started');
    if (!server.server.listening) return;
    await new Promise<void>((resolve) => {
      server.server.close(() => resolve());
      server.server.closeAllConnections();
    });
  }

  async goOnline(): Promise<void> {
    const server = this.#server;
    if (!server) throw new SimulatorUsageError('the Discord simulator is not started');
    if (server.server.listening) return;
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.server.listen(server.port, '127.0.0.1', () => {
        server.server.off('error', reject);
        resolve();
      });
    });
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    if (!this.#server) throw new SimulatorUsageError('the Discord simulator is not started');
    return this.#server.url;
  }

  /** Pass as discord.js `rest: { api: d.apiUrl }` (and as DISCORD_API_URL). */
  get apiUrl(): string {
    return `${this.url}/api`;
  }

  get token(): string {
    return this.options.token;
  }

  // ── World ────────────────────────────────────────────────────────────────────────────────

  /** Adds a person, a member of `guilds` (default: the default server). */
  createUser(username: string, options: { guilds?: SimGuild[] } = {}): SimUser {
    const user = this.state.addUser(username);
    for (const guild of options.guilds ?? [this.guild]) guild.memberIds.push(user.id);
    return user;
  }

  /**
   * Adds a server the bot is in (dispatched as GUILD_CREATE when the bot is connected). All
   * default users are members; `owner` is its owner; `admins` get an Administrator role.
   */
  createGuild(seed: {
    name: string;
    owner?: SimUser;
    admins?: SimUser[];
    uploadLimitBytes?: number;
  }): SimGuild {
    const id = snowflake();
    const owner = seed.owner ?? this.users?.alice;
    const adminRole = { id: snowflake(), name: 'Admin', permissions: String(ADMIN_PERMISSIONS) };
    const botRole = { id: snowflake(), name: this.bot.username, permissions: String(BOT_PERMISSIONS) };
    const people = Object.values(this.users ?? {}) as SimUser[];
    const guild: SimGuild = {
      id,
      name: seed.name,
      ownerId: owner?.id ?? this.bot.id,
      uploadLimitBytes: seed.uploadLimitBytes ?? this.options.uploadLimitBytes,
      roles: [{ id, name: '@everyone', permissions: String(EVERYONE_PERMISSIONS) }, adminRole, botRole],
      memberIds: [this.bot.id, ...people.map((u) => u.id)],
      memberRoles: new Map([
        [this.bot.id, [botRole.id]],
        ...(seed.admins ?? (owner ? [owner] : [])).map((u) => [u.id, [adminRole.id]] as [string, string[]]),
      ]),
    };
    // A new server arrives with its channels in one GUILD_CREATE, as when a bot is invited.
    this.state.guilds.set(guild.id, guild);
    if (this.channels)
      this.state.addChannel(
        { type: ChannelType.GuildText, name: 'general', guildId: id, parentId: null, recipientId: null },
        { silent: true },
      );
    this.state.addGuild(guild);
    return guild;
  }

  /** Adds a text channel or a thread (CHANNEL_CREATE / THREAD_CREATE to the bot). */
  createChannel(
    guild: SimGuild,
    name: string,
    options: { thread?: { parent: SimChannel; private?: boolean } } = {},
  ) {
    const type = options.thread
      ? options.thread.private
        ? ChannelType.PrivateThread
        : ChannelType.PublicThread
      : ChannelType.GuildText;
    return this.#channel(guild, name, type, options.thread?.parent.id ?? null);
  }

  /** A server's channels and threads, in creation order. */
  channelsOf(guild: SimGuild): SimChannel[] {
    return [...this.state.channels.values()].filter((c) => c.guildId === guild.id);
  }

  /** The DM channel between the bot and `user`. */
  dm(user: SimUser): SimChannel {
    return this.state.dmChannel(user);
  }

  /** Makes `user` an admin (Administrator role) of `guild`. */
  makeAdmin(user: SimUser, guild: SimGuild = this.guild): void {
    const adminRole = guild.roles.find((r) => r.name === 'Admin')!;
    guild.memberRoles.set(user.id, [...(guild.memberRoles.get(user.id) ?? []), adminRole.id]);
  }

  // ── People act ───────────────────────────────────────────────────────────────────────────

  /**
   * A user runs a slash command. `command` may name a subcommand ("atelier showcase"). Options
   * are checked against what the bot registered, as Discord's client does.
   */
  slash(
    command: string,
    options: Record<string, OptionValue> = {},
    settings: InteractionOptions = {},
  ): InteractionHandle {
    const [name, ...path] = command.replace(/^\//, '').trim().split(/\s+/);
    const context = this.#context(settings);
    const registered = findCommand(this.state, name!, context.channel);
    const built = buildOptions(this.state, registered, path, options, context, {
      unchecked: settings.unchecked ?? false,
    });
    return this.#send('command', InteractionType.ApplicationCommand, context, null, (ids) => ({
      ...baseInteraction(this.state, InteractionType.ApplicationCommand, context, ids),
      data: commandData(registered, built, context.channel.guildId),
    }));
  }

  /** A user types into an autocomplete option; the bot's answer is `waitForResponse().data.choices`. */
  autocomplete(
    command: string,
    options: Record<string, OptionValue>,
    settings: InteractionOptions & { focused: string },
  ): InteractionHandle {
    const [name, ...path] = command.replace(/^\//, '').trim().split(/\s+/);
    const context = this.#context(settings);
    const registered = findCommand(this.state, name!, context.channel);
    const built = buildOptions(this.state, registered, path, options, context, {
      unchecked: true,
      focused: settings.focused,
    });
    return this.#send(
      'autocomplete',
      InteractionType.ApplicationCommandAutocomplete,
      context,
      null,
      (ids) => ({
        ...baseInteraction(this.state, InteractionType.ApplicationCommandAutocomplete, context, ids),
        data: commandData(registered, built, context.channel.guildId),
      }),
    );
  }

  /** A user clicks the button `customId` on `message`. */
  click(message: SimMessage, customId: string, settings: ClickOptions = {}): InteractionHandle {
    const current = this.state.messages.get(message.id);
    if (!current || current.deleted)
      throw new SimulatorUsageError(`message ${message.id} is gone; nobody can click it`);
    const user = settings.user ?? this.users.bob;
    if (current.ephemeral && current.ephemeralTo !== user.id) {
      throw new SimulatorUsageError(`${user.username} cannot see ephemeral message ${message.id}`);
    }
    const button = current.buttons.find((b) => b.customId === customId);
    if (!settings.forge) {
      if (!button) {
        const ids = current.buttons.map((b) => b.customId).join(', ') || 'none';
        throw new SimulatorUsageError(`no button "${customId}" on message ${message.id} (buttons: ${ids})`);
      }
      if (button.disabled) throw new SimulatorUsageError(`button "${customId}" is disabled`);
    }
    const context = { user, channel: this.state.channels.get(current.channelId)! };
    return this.#send('component', InteractionType.MessageComponent, context, current, (ids) => ({
      ...baseInteraction(this.state, InteractionType.MessageComponent, context, ids),
      ...componentData(this.state, current, customId),
    }));
  }

  /**
   * The person who got a modal (`opened`: the interaction the bot answered with callback type 9)
   * submits it: `values` by the inputs' custom ids (inputs left out keep their prefilled text).
   * Dispatches MODAL_SUBMIT with the component's message when the modal came from a click.
   */
  submitModal(opened: InteractionHandle, values: Readonly<Record<string, string>> = {}): InteractionHandle {
    const modal = opened.modal;
    if (!modal) throw new SimulatorUsageError(`${opened.describe()} opened no modal`);
    if (opened.modalSubmitted)
      throw new SimulatorUsageError('that modal was submitted already (Discord closed it)');
    const data = modalSubmitData(modal, values);
    if ('problem' in data)
      throw new SimulatorUsageError(`Discord's client would not submit it: ${data.problem}`);
    opened.modalSubmitted = true;
    const message = opened.message ? (this.state.messages.get(opened.message.id) ?? null) : null;
    const context = { user: opened.user, channel: opened.channel };
    return this.#send('modal', InteractionType.ModalSubmit, context, message, (ids) => ({
      ...baseInteraction(this.state, InteractionType.ModalSubmit, context, ids),
      data,
      ...(message ? { message: messageJson(this.state, message) } : {}),
    }));
  }

  /** A user adds a reaction (MESSAGE_REACTION_ADD to the bot if its intents ask for it). */
  react(message: SimMessage, emoji: string, user: SimUser = this.users.bob): void {
    this.state.addReaction(this.#live(message), emoji, user.id);
  }

  /** A user removes their reaction (MESSAGE_REACTION_REMOVE). */
  unreact(message: SimMessage, emoji: string, user: SimUser = this.users.bob): void {
    this.state.removeReaction(this.#live(message), emoji, user.id);
  }

  /** A user posts a plain message (e.g. to react to something that is not an Atelier result). */
  say(channel: SimChannel, content: string, user: SimUser = this.users.bob): SimMessage {
    return this.state.createMessage({ channelId: channel.id, author: user, content });
  }

  // ── Observe ──────────────────────────────────────────────────────────────────────────────

  /** Live messages of a channel, oldest first, ephemeral ones included (see `message.ephemeralTo`). */
  messages(channel: SimChannel | string): SimMessage[] {
    return this.state.channelMessages(typeof channel === 'string' ? channel : channel.id);
  }

  message(id: string): SimMessage | undefined {
    return this.state.messages.get(id);
  }

  /** Every attachment of every live message in a channel. */
  attachments(channel: SimChannel | string): SimAttachment[] {
    return this.messages(channel).flatMap((m) => m.attachments);
  }

  /** Commands registered globally (default) or for a guild. */
  commands(guild?: SimGuild) {
    return this.state.commands.get(guild?.id ?? '') ?? [];
  }

  /** The REST request log, oldest first. */
  get requests(): readonly RestRequestRecord[] {
    return this.router.log;
  }

  /** Requests to paths the simulator does not serve: a bot calling these needs the simulator extended. */
  get unhandledRequests(): RestRequestRecord[] {
    return this.router.log.filter((r) => r.route === null);
  }

  on<E extends keyof DiscordEventMap>(event: E, listener: (...args: DiscordEventMap[E]) => void): this {
    this.state.events.on(event, listener as never);
    return this;
  }

  off<E extends keyof DiscordEventMap>(event: E, listener: (...args: DiscordEventMap[E]) => void): this {
    this.state.events.off(event, listener as never);
    return this;
  }

  /** Resolves when the bot has identified (READY sent) and its socket is open. */
  waitForReady(options: WaitOptions = {}): Promise<GatewaySessionInfo> {
    return waitForState(this.state.events, {
      events: ['gatewayReady', 'gatewayResumed'],
      probe: () => (this.gateway.connected ? this.gateway.sessions.at(-1) : undefined),
      what: 'the bot to connect to the gateway (IDENTIFY)',
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /** Resolves with the latest registration (global, or for `guild`) once `predicate` holds for it. */
  waitForCommands(
    predicate: (commands: ReturnType<DiscordSimulator['commands']>) => boolean = (c) => c.length > 0,
    options: WaitOptions & { guild?: SimGuild } = {},
  ) {
    return waitForState(this.state.events, {
      events: ['commandsRegistered'],
      probe: () => {
        const commands = this.commands(options.guild);
        return this.state.commands.has(options.guild?.id ?? '') && predicate(commands) ? commands : undefined;
      },
      what: `command registration${options.guild ? ` in ${options.guild.name}` : ' (global)'}`,
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /**
   * Resolves with the first live message (existing or future, created or edited) that matches.
   * `d.waitForMessage((m) => m.channelId === d.channels.general.id && m.attachments.length === 1)`
   */
  waitForMessage(
    predicate: (message: SimMessage) => boolean,
    options: WaitOptions = {},
  ): Promise<SimMessage> {
    return waitForState(this.state.events, {
      events: ['messageCreate', 'messageUpdate'],
      probe: () => [...this.state.messages.values()].find((m) => !m.deleted && predicate(m)),
      what: 'a message matching the predicate',
      describe: () => `messages so far:\n${this.#describeMessages()}`,
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /** Resolves when `message` is deleted. */
  waitForDeletion(message: SimMessage, options: WaitOptions = {}): Promise<SimMessage> {
    return waitForState(this.state.events, {
      events: ['messageDelete'],
      probe: () => (this.state.messages.get(message.id)?.deleted ? message : undefined),
      what: `message ${message.id} to be deleted`,
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /** Resolves with the first logged REST request matching `predicate` (e.g. a retried upload). */
  waitForRequest(predicate: (record: RestRequestRecord) => boolean, options: WaitOptions = {}) {
    return waitForState(this.state.events, {
      events: ['request'],
      probe: () => this.router.log.find(predicate),
      what: 'a REST request matching the predicate',
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /**
   * The next request(s) to `route` fail — by default with a 429 whose `retry_after` is
   * `failure.retryAfter` seconds. discord.js must wait that long and retry; `handle.retried`
   * resolves with the retry.
   */
  failNext(route: DiscordRoute, failure?: InjectedFailure): FailureHandle<RestRequestRecord> {
    return this.router.failNext(route, failure);
  }

  // ── Internals ────────────────────────────────────────────────────────────────────────────

  #context(settings: InteractionOptions) {
    return { user: settings.user ?? this.users.bob, channel: settings.channel ?? this.channels.general };
  }

  #send(
    kind: InteractionHandle['kind'],
    type: InteractionType,
    context: { user: SimUser; channel: SimChannel },
    message: SimMessage | null,
    build: (ids: { id: string; token: string }) => Record<string, unknown>,
  ): InteractionHandle {
    if (!this.gateway.connected) {
      throw new SimulatorUsageError('the bot is not connected to the gateway; await d.waitForReady() first');
    }
    const handle = new InteractionHandle(this.state, kind, type, context.user, context.channel, message, {
      timeoutMs: this.options.interactionTimeoutMs,
      tokenTtlMs: this.options.interactionTokenTtlMs,
      waitTimeoutMs: this.options.waitTimeoutMs,
    });
    handle.payload = build({ id: handle.id, token: handle.token }) as InteractionHandle['payload'];
    this.interactions.set(handle.id, handle);
    this.state.interactionMetadata.set(handle.id, {
      id: handle.id,
      type,
      userId: context.user.id,
      originalOf: null,
    });
    handle.sentAt = Date.now();
    this.gateway.dispatch(GatewayDispatchEvents.InteractionCreate, handle.payload);
    setTimeout(() => handle.markExpired(), this.options.interactionTimeoutMs + 1).unref();
    this.state.events.emit('interactionCreate', handle);
    return handle;
  }

  #live(message: SimMessage): SimMessage {
    const current = this.state.messages.get(message.id);
    if (!current || current.deleted) throw new SimulatorUsageError(`message ${message.id} is gone`);
    return current;
  }

  #channel(guild: SimGuild, name: string, type: SimChannel['type'], parentId: string | null): SimChannel {
    return this.state.addChannel({ type, name, guildId: guild.id, parentId, recipientId: null });
  }

  #describeMessages(): string {
    return (
      [...this.state.messages.values()]
        .slice(-10)
        .map((m) => {
          const channel = this.state.channels.get(m.channelId);
          const where = channel?.name ? `#${channel.name}` : `dm:${channel?.recipientId}`;
          const parts = [`${where} ${m.author.username}: ${JSON.stringify(m.content.slice(0, 80))}`];
          if (m.attachments.length) parts.push(`files=${m.attachments.map((a) => a.filename).join(',')}`);
          if (m.buttons.length) parts.push(`buttons=${m.buttons.map((b) => b.customId ?? b.url).join(',')}`);
          if (m.flags) parts.push(`flags=${m.flags}`);
          if (m.deleted) parts.push('(deleted)');
          return `  ${parts.join(' ')}`;
        })
        .join('\n') || '  (none)'
    );
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path.startsWith('/attachments/')) return this.#serveAttachment(path, res);
    return this.router.handle(req, res);
  }

  /** Attachment URLs point here, so a bot can download images it (or a user) posted. */
  #serveAttachment(path: string, res: ServerResponse): void {
    const [, , channelId, attachmentId] = path.split('/');
    const attachment =
      this.state.userUploads.get(attachmentId!) ??
      this.state
        .channelMessages(channelId!)
        .flatMap((m) => m.attachments)
        .find((a) => a.id === attachmentId);
    if (!attachment) {
      sendJson(res, 404, { message: '404: Not Found', code: 0 });
      return;
    }
    res.writeHead(200, {
      'content-type': attachment.contentType ?? 'application/octet-stream',
      'content-length': attachment.size,
    });
    res.end(attachment.data);
  }
}

export async function startDiscordSimulator(
  options: DiscordSimulatorOptions = {},
): Promise<DiscordSimulator> {
  return new DiscordSimulator(options).start();
}
