/**
 * The gateway WebSocket, as discord.js's @discordjs/ws expects it (JSON encoding, no compression
 * since zlib-sync is not installed): HELLO → IDENTIFY → READY + one GUILD_CREATE per guild;
 * heartbeats answered with ACKs; RESUME replays what a dropped session missed; dispatches are
 * filtered by the intents the bot identified with, as Discord does.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  ChannelType,
  GatewayCloseCodes,
  GatewayDispatchEvents,
  GatewayIntentBits,
  GatewayOpcodes,
} from 'discord-api-types/v10';
import { type WebSocket, WebSocketServer } from 'ws';
import type { ResolvedDiscordOptions } from './options.js';
import { channelJson, emojiJson, guildCreateJson, memberJson, messageJson, userJson } from './serialize.js';
import type { DiscordState, ReactionEvent } from './state.js';
import type { SimChannel, SimMessage } from './types.js';

export interface GatewaySessionInfo {
  sessionId: string;
  intents: number;
  identifiedAt: number;
  heartbeats: number;
  /** Number of times this session was resumed after a drop. */
  resumes: number;
}

const PRIVILEGED_INTENTS =
  GatewayIntentBits.GuildMembers | GatewayIntentBits.GuildPresences | GatewayIntentBits.MessageContent;

interface Session {
  info: GatewaySessionInfo;
  socket: WebSocket | null;
  seq: number;
  /** Every dispatch, for RESUME replays. */
  log: { s: number; t: string; d: unknown }[];
  invalid: boolean;
}

interface Connection {
  socket: WebSocket;
  session: Session | null;
}

export class GatewayServer {
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #sessions = new Map<string, Session>();
  readonly #connections = new Set<Connection>();
  #url = '';

  constructor(
    private readonly state: DiscordState,
    private readonly options: ResolvedDiscordOptions,
  ) {
    this.#wireStateEvents();
  }

  /** The URL `GET /gateway/bot` hands out. */
  set url(value: string) {
    this.#url = value;
  }
  get url(): string {
    return this.#url;
  }

  get sessions(): GatewaySessionInfo[] {
    return [...this.#sessions.values()].filter((s) => !s.invalid).map((s) => s.info);
  }

  /** Whether a session is identified and its socket open: interactions can be delivered. */
  get connected(): boolean {
    return [...this.#sessions.values()].some((s) => !s.invalid && s.socket?.readyState === 1);
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, req));
  }

  /**
   * Sends a dispatch to every live session whose intents allow it (`intent` 0 = always).
   * Dropped-but-resumable sessions keep it in their log and get it on RESUME.
   */
  dispatch(t: string, d: unknown, intent = 0): void {
    for (const session of this.#sessions.values()) {
      if (session.invalid) continue;
      if (intent !== 0 && (session.info.intents & intent) === 0) continue;
      const payload = { op: GatewayOpcodes.Dispatch, t, s: ++session.seq, d };
      session.log.push(payload);
      session.socket?.send(JSON.stringify(payload));
    }
  }

  /** Drops the bot's connections with `code`; with a resumable code discord.js reconnects and RESUMEs. */
  disconnect(code: number = GatewayCloseCodes.UnknownError): void {
    for (const connection of this.#connections) connection.socket.close(code, 'simulated disconnect');
  }

  /** Sends op 7 RECONNECT: the bot should reconnect and resume. */
  requestReconnect(): void {
    for (const connection of this.#connections)
      this.#send(connection.socket, { op: GatewayOpcodes.Reconnect, d: null });
  }

  /** Sends op 9 INVALID_SESSION (not resumable): the bot must IDENTIFY again. */
  invalidateSessions(): void {
    for (const connection of this.#connections) {
      if (connection.session) connection.session.invalid = true;
      this.#send(connection.socket, { op: GatewayOpcodes.InvalidSession, d: false });
    }
  }

  async close(): Promise<void> {
    for (const connection of this.#connections) connection.socket.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #accept(socket: WebSocket, req: IncomingMessage): void {
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const connection: Connection = { socket, session: null };
    this.#connections.add(connection);
    socket.on('close', (code) => {
      this.#connections.delete(connection);
      if (connection.session?.socket === socket) connection.session.socket = null;
      this.state.events.emit('gatewayClosed', {
        code,
        sessionId: connection.session?.info.sessionId ?? null,
      });
    });
    if (query.get('v') !== '10') {
      socket.close(GatewayCloseCodes.InvalidAPIVersion, 'Invalid API version');
      return;
    }
    if ((query.get('encoding') ?? 'json') !== 'json') {
      socket.close(GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    socket.on('message', (data, isBinary) => this.#onMessage(connection, data.toString(), isBinary));
    this.#send(socket, {
      op: GatewayOpcodes.Hello,
      d: { heartbeat_interval: this.options.heartbeatIntervalMs },
    });
  }

  #onMessage(connection: Connection, text: string, isBinary: boolean): void {
    let payload: { op?: number; d?: unknown };
    try {
      payload = JSON.parse(text) as { op?: number; d?: unknown };
    } catch {
      connection.socket.close(GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    if (isBinary) {
      connection.socket.close(GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    switch (payload.op) {
      case GatewayOpcodes.Heartbeat:
        this.#send(connection.socket, { op: GatewayOpcodes.HeartbeatAck });
        if (connection.session) {
          connection.session.info.heartbeats += 1;
          this.state.events.emit('heartbeat', connection.session.info);
        }
        return;
      case GatewayOpcodes.Identify:
        this.#identify(connection, payload.d as IdentifyData);
        return;
      case GatewayOpcodes.Resume:
        this.#resume(connection, payload.d as ResumeData);
        return;
      case GatewayOpcodes.PresenceUpdate:
      case GatewayOpcodes.RequestGuildMembers:
      case GatewayOpcodes.VoiceStateUpdate:
        if (!connection.session)
          connection.socket.close(GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
        return;
      default:
        connection.socket.close(GatewayCloseCodes.UnknownOpcode, 'Unknown opcode.');
    }
  }

  #identify(connection: Connection, d: IdentifyData): void {
    if (connection.session) {
      connection.socket.close(GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
      return;
    }
    if (d?.token !== this.options.token && d?.token !== `Bot ${this.options.token}`) {
      connection.socket.close(GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
      return;
    }
    if (typeof d.intents !== 'number' || d.intents < 0) {
      connection.socket.close(GatewayCloseCodes.InvalidIntents, 'Invalid intent(s).');
      return;
    }
    if ((d.intents & PRIVILEGED_INTENTS & ~this.options.allowedPrivilegedIntents) !== 0) {
      connection.socket.close(GatewayCloseCodes.DisallowedIntents, 'Disallowed intent(s).');
      return;
    }
    if (d.shard && (d.shard[0] !== 0 || d.shard[1] !== 1)) {
      connection.socket.close(GatewayCloseCodes.InvalidShard, 'Invalid shard.');
      return;
    }
    const session: Session = {
      info: {
        sessionId: randomBytes(16).toString('hex'),
        intents: d.intents,
        identifiedAt: Date.now(),
        heartbeats: 0,
        resumes: 0,
      },
      socket: connection.socket,
      seq: 0,
      log: [],
      invalid: false,
    };
    // One shard, one session: a new IDENTIFY replaces older sessions (as a restarted bot would).
    for (const old of this.#sessions.values()) old.invalid = true;
    this.#sessions.set(session.info.sessionId, session);
    connection.session = session;
    const guilds = [...this.state.guilds.values()];
    this.#sendDispatch(session, GatewayDispatchEvents.Ready, {
      v: 10,
      user: { ...userJson(this.state.bot), verified: true, mfa_enabled: false, flags: 0 },
      guilds: guilds.map((g) => ({ id: g.id, unavailable: true })),
      session_id: session.info.sessionId,
      resume_gateway_url: this.#url,
      shard: [0, 1],
      application: { id: this.state.applicationId, flags: 0 },
      private_channels: [],
      relationships: [],
      user_settings: {},
      presences: [],
      guild_join_requests: [],
      geo_ordered_rtc_regions: [],
      auth: {},
      _trace: ['["atelier-simulator",{"micros":0}]'],
    });
    for (const guild of guilds)
      this.#sendDispatch(session, GatewayDispatchEvents.GuildCreate, guildCreateJson(this.state, guild));
    this.state.events.emit('gatewayReady', session.info);
  }

  #resume(connection: Connection, d: ResumeData): void {
    const session = this.#sessions.get(d?.session_id ?? '');
    const tokenOk = d?.token === this.options.token || d?.token === `Bot ${this.options.token}`;
    if (!session || session.invalid || !tokenOk || typeof d.seq !== 'number' || d.seq > session.seq) {
      this.#send(connection.socket, { op: GatewayOpcodes.InvalidSession, d: false });
      return;
    }
    session.socket = connection.socket;
    connection.session = session;
    const after = d.seq;
    for (const missed of session.log.filter((p) => p.s > after)) {
      connection.socket.send(JSON.stringify({ op: GatewayOpcodes.Dispatch, ...missed }));
    }
    session.info.resumes += 1;
    this.#sendDispatch(session, GatewayDispatchEvents.Resumed, {});
    this.state.events.emit('gatewayResumed', session.info);
  }

  #sendDispatch(session: Session, t: string, d: unknown): void {
    const payload = { op: GatewayOpcodes.Dispatch, t, s: ++session.seq, d };
    session.log.push(payload);
    session.socket?.send(JSON.stringify(payload));
  }

  #send(socket: WebSocket, payload: { op: number; d?: unknown }): void {
    if (socket.readyState === 1) socket.send(JSON.stringify({ s: null, t: null, d: null, ...payload }));
  }

  /** Model changes → dispatches, each gated by the intent Discord requires for it. */
  #wireStateEvents(): void {
    const { events } = this.state;
    const messageIntent = (channel: SimChannel | undefined) =>
      channel?.type === ChannelType.DM ? GatewayIntentBits.DirectMessages : GatewayIntentBits.GuildMessages;
    const reactionIntent = (channel: SimChannel | undefined) =>
      channel?.type === ChannelType.DM
        ? GatewayIntentBits.DirectMessageReactions
        : GatewayIntentBits.GuildMessageReactions;

    events.on('messageCreate', (message) => {
      if (message.ephemeral) return;
      const channel = this.state.channels.get(message.channelId);
      this.#dispatchMessage(GatewayDispatchEvents.MessageCreate, message, messageIntent(channel));
    });
    events.on('messageUpdate', (message) => {
      if (message.ephemeral) return;
      const channel = this.state.channels.get(message.channelId);
      this.#dispatchMessage(GatewayDispatchEvents.MessageUpdate, message, messageIntent(channel));
    });
    events.on('messageDelete', (message) => {
      if (message.ephemeral) return;
      const channel = this.state.channels.get(message.channelId);
      this.dispatch(
        GatewayDispatchEvents.MessageDelete,
        {
          id: message.id,
          channel_id: message.channelId,
          ...(message.guildId ? { guild_id: message.guildId } : {}),
        },
        messageIntent(channel),
      );
    });
    const reaction = (t: string, event: ReactionEvent, withMember: boolean) => {
      const { message } = event;
      const channel = this.state.channels.get(message.channelId);
      const guild = channel && this.state.guildOf(channel);
      const user = this.state.users.get(event.userId)!;
      this.dispatch(
        t,
        {
          user_id: event.userId,
          channel_id: message.channelId,
          message_id: message.id,
          ...(guild ? { guild_id: guild.id } : {}),
          ...(guild && withMember ? { member: memberJson(guild, user) } : {}),
          emoji: emojiJson(event.emoji),
          ...(withMember ? { message_author_id: message.author.id, burst_colors: [] } : {}),
          burst: false,
          type: 0,
        },
        reactionIntent(channel),
      );
    };
    events.on('reactionAdd', (event) => reaction(GatewayDispatchEvents.MessageReactionAdd, event, true));
    events.on('reactionRemove', (event) =>
      reaction(GatewayDispatchEvents.MessageReactionRemove, event, false),
    );
    events.on('channelCreate', (channel) => {
      if (channel.type === ChannelType.DM) return;
      const isThread = channel.type !== ChannelType.GuildText;
      this.dispatch(
        isThread ? GatewayDispatchEvents.ThreadCreate : GatewayDispatchEvents.ChannelCreate,
        { ...channelJson(this.state, channel), ...(isThread ? { newly_created: true } : {}) },
        GatewayIntentBits.Guilds,
      );
    });
    events.on('guildCreate', (guild) => {
      this.dispatch(
        GatewayDispatchEvents.GuildCreate,
        guildCreateJson(this.state, guild),
        GatewayIntentBits.Guilds,
      );
    });
  }

  /**
   * Without the privileged MessageContent intent, Discord blanks content, embeds, attachments and
   * components of other people's messages in guilds; the bot's own messages and DMs keep theirs.
   */
  #dispatchMessage(t: string, message: SimMessage, intent: number): void {
    const full = messageJson(this.state, message);
    const guild = message.guildId ? this.state.guilds.get(message.guildId) : undefined;
    const member = guild ? { member: memberJson(guild, message.author) } : {};
    for (const session of this.#sessions.values()) {
      if (session.invalid || (session.info.intents & intent) === 0) continue;
      const blank =
        (session.info.intents & GatewayIntentBits.MessageContent) === 0 &&
        message.author.id !== this.state.bot.id &&
        guild !== undefined;
      const d = {
        ...full,
        ...(blank ? { content: '', embeds: [], attachments: [], components: [] } : {}),
        ...(guild ? { guild_id: guild.id } : {}),
        ...member,
      };
      const payload = { op: GatewayOpcodes.Dispatch, t, s: ++session.seq, d };
      session.log.push(payload);
      session.socket?.send(JSON.stringify(payload));
    }
  }
}

interface IdentifyData {
  token?: string;
  intents?: number;
  shard?: [number, number];
}

interface ResumeData {
  token?: string;
  session_id?: string;
  seq?: number;
}
