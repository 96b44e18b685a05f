import type { IncomingMessage, ServerResponse } from 'node:http';
import { stringify } from 'node:querystring';
import { SimulatorUsageError } from '../shared/errors.js';
import type { FailureHandle, InjectedFailure } from '../shared/failures.js';
import { headerValue, type LocalServer, sendJson, startLocalServer } from '../shared/http.js';
import { type WaitOptions, waitForState } from '../shared/waiting.js';
import { SlackDeliveries, SlackDelivery } from './delivery.js';
import { slackId } from './ids.js';
import { type ResolvedSlackOptions, resolveSlackOptions, type SlackSimulatorOptions } from './options.js';
import {
  blockActionsPayload,
  eventCallback,
  reactionAddedEvent,
  slashCommandFields,
  urlVerification,
} from './payloads.js';
import { handleResponseUrl } from './response-url.js';
import type { SignatureMode } from './signing.js';
import { SocketModeServer } from './socket-mode.js';
import { type SlackEventMap, SlackState } from './state.js';
import type {
  ApiCallRecord,
  SlackChannel,
  SlackEphemeral,
  SlackFile,
  SlackMessage,
  SlackUser,
} from './types.js';
import { type SlackView, viewSubmission } from './views.js';
import { chatMethods } from './web-api/chat-methods.js';
import { fileMethods, handleUpload } from './web-api/file-methods.js';
import { infoMethods } from './web-api/info-methods.js';
import type { MethodDeps } from './web-api/methods.js';
import { SlackRateLimiter } from './web-api/rate-limits.js';
import { SlackApiRouter } from './web-api/router.js';

export interface SlackUsers {
  /** The workspace's primary owner (so an owner and an admin too). */
  alice: SlackUser;
  bob: SlackUser;
  carol: SlackUser;
}

export interface SlackChannels {
  general: SlackChannel;
  showcase: SlackChannel;
}

export interface SendOptions {
  /** How the HTTP request is signed (ignored over Socket Mode, which is not signed). @default 'valid' */
  signature?: SignatureMode;
}

export interface SlashOptions extends SendOptions {
  /** @default users.bob */
  user?: SlackUser;
  /** @default channels.general */
  channel?: SlackChannel;
}

export interface ClickOptions extends SendOptions {
  /** @default users.bob */
  user?: SlackUser;
  /** Send an action_id that is not on the message (a forged or stale button). @default false */
  forge?: boolean;
  /** Override the button's value (forged payloads). */
  value?: string;
  /**
   * The click comes from another workspace with this team id (`team.id`, `user.team_id`), as
   * when the same app is installed in several workspaces. @default this workspace
   */
  team?: string;
}

/**
 * A local Slack: the Web API at `apiUrl` (Bolt's `clientOptions.slackApiUrl`), the files v2
 * upload URL, response_urls, and Socket Mode — and, towards the bot, signed HTTP deliveries
 * to its Request URL or envelopes over its Socket Mode connection, acks timed.
 */
export class SlackSimulator {
  readonly options: ResolvedSlackOptions;
  readonly state: SlackState;
  readonly deliveries: SlackDeliveries;
  readonly socket: SocketModeServer;
  readonly router: SlackApiRouter;
  readonly bot: SlackUser;
  readonly users: SlackUsers;
  readonly channels: SlackChannels;
  #server: LocalServer | undefined;
  readonly #methodDeps: MethodDeps;

  constructor(options: SlackSimulatorOptions = {}) {
    this.options = resolveSlackOptions(options);
    this.bot = {
      id: slackId('U'),
      name: this.options.botName,
      realName: this.options.botName,
      isAdmin: false,
      isOwner: false,
      isPrimaryOwner: false,
      isBot: true,
    };
    this.state = new SlackState(this.bot, slackId('B'));
    this.users = {
      alice: this.state.addUser('alice', { primaryOwner: true }),
      bob: this.state.addUser('bob'),
      carol: this.state.addUser('carol'),
    };
    this.channels = {
      general: this.state.addChannel('general'),
      showcase: this.state.addChannel('showcase'),
    };
    this.deliveries = new SlackDeliveries(this.state, this.options);
    this.socket = new SocketModeServer(this.state, this.options.socketPingIntervalMs);
    this.deliveries.socket = this.socket;
    this.socket.onLateAck = (envelopeId) => this.deliveries.lateAck(envelopeId);
    this.#methodDeps = {
      state: this.state,
      options: this.options,
      deliveries: this.deliveries,
      rateLimits: new SlackRateLimiter(this.options.rateLimits),
      baseUrl: () => this.url,
      socketUrl: () => this.socket.issueUrl(),
    };
    this.router = new SlackApiRouter(this.#methodDeps, {
      ...infoMethods(this.#methodDeps),
      ...chatMethods(this.#methodDeps),
      ...fileMethods(this.#methodDeps),
    });
  }

  async start(): Promise<this> {
    this.#server = await startLocalServer({
      request: (req, res) => this.#handle(req, res),
      upgrade: (req, socket, head) => {
        if (new URL(req.url ?? '/', 'http://localhost').pathname.startsWith('/link'))
          this.socket.handleUpgrade(req, socket, head);
        else socket.destroy();
      },
    });
    this.deliveries.baseUrl = this.#server.url;
    this.socket.wsBaseUrl = this.#server.url.replace('http', 'ws');
    return this;
  }

  async stop(): Promise<void> {
    await this.socket.close();
    await this.#server?.close();
  }

  get url(): string {
    if (!this.#server) throw new SimulatorUsageError('the Slack simulator is not started');
    return this.#server.url;
  }

  /** Pass as Bolt `clientOptions: { slackApiUrl: s.apiUrl }` (and as SLACK_API_URL). Ends with `/`. */
  get apiUrl(): string {
    return `${this.url}/api/`;
  }

  get botToken(): string {
    return this.options.botToken;
  }

  get appToken(): string {
    return this.options.appToken;
  }

  get signingSecret(): string {
    return this.options.signingSecret;
  }

  get teamId(): string {
    return this.state.teamId;
  }

  /** The bot's Request URL for HTTP deliveries, e.g. `http://127.0.0.1:3000/slack/events`. */
  setRequestUrl(url: string): void {
    this.options.requestUrl = url;
  }

  // ── World ────────────────────────────────────────────────────────────────────────────────

  /** A member of the public channels: with `admin`, a Workspace Admin; with `owner`, an Owner (and admin). */
  createUser(name: string, options: { admin?: boolean; owner?: boolean } = {}): SlackUser {
    const user = this.state.addUser(name, options);
    for (const channel of this.state.channels.values()) if (!channel.isPrivate) channel.members.push(user.id);
    return user;
  }

  createChannel(name: string, options: { private?: boolean; members?: SlackUser[] } = {}): SlackChannel {
    const members = options.members ? [this.bot.id, ...options.members.map((u) => u.id)] : undefined;
    return this.state.addChannel(name, {
      private: options.private ?? false,
      ...(members ? { members } : {}),
    });
  }

  /** The bot's DM channel with `user`. */
  im(user: SlackUser): SlackChannel {
    return this.state.im(user);
  }

  // ── People act ───────────────────────────────────────────────────────────────────────────

  /** A user runs `/command text`. The returned delivery resolves its ack; the reply may come as its ack body. */
  slash(command: string, text = '', options: SlashOptions = {}): SlackDelivery {
    const user = options.user ?? this.users.bob;
    const channel = options.channel ?? this.channels.general;
    const responseUrl = this.deliveries.newResponseUrl('commands');
    const fields = slashCommandFields(this.state, this.options.teamDomain, {
      command: command.startsWith('/') ? command : `/${command}`,
      text,
      user,
      channel,
      responseUrl: responseUrl.url,
      triggerId: this.deliveries.newTriggerId(user.id),
    });
    const delivery = this.#delivery('slash_command', fields, options, user.id, channel.id, null);
    responseUrl.bind(delivery);
    return this.deliveries.send(
      delivery,
      { body: stringify(fields), contentType: 'application/x-www-form-urlencoded' },
      'slash_commands',
    );
  }

  /** A user clicks the button with `actionId` on a message (or on an ephemeral message they see). */
  clickButton(
    target: SlackMessage | SlackEphemeral,
    actionId: string,
    options: ClickOptions = {},
  ): SlackDelivery {
    const user = options.user ?? this.users.bob;
    const isEphemeral = 'source' in target;
    if (isEphemeral && target.user !== user.id)
      throw new SimulatorUsageError(`${user.name} cannot see that ephemeral message`);
    const live = isEphemeral ? target : this.state.message(target.channel, target.ts);
    if (!live || live.deleted) throw new SimulatorUsageError('that message is gone; nobody can click it');
    let button = live.buttons.find((b) => b.actionId === actionId);
    if (!button) {
      if (!options.forge) {
        const known = live.buttons.map((b) => b.actionId).join(', ') || 'none';
        throw new SimulatorUsageError(`no button "${actionId}" on that message (buttons: ${known})`);
      }
      button = {
        actionId,
        blockId: undefined,
        text: actionId,
        value: options.value,
        style: undefined,
        url: undefined,
      };
    } else if (options.value !== undefined) {
      button = { ...button, value: options.value };
    }
    const channel = this.state.channels.get(live.channel)!;
    const container = isEphemeral ? { ephemeral: target } : { message: live as SlackMessage };
    const responseUrl = this.deliveries.newResponseUrl('actions');
    const payload = blockActionsPayload(this.state, this.options.teamDomain, {
      user,
      channel,
      container,
      button,
      responseUrl: responseUrl.url,
      triggerId: this.deliveries.newTriggerId(user.id),
    });
    if (options.team !== undefined) {
      payload.team = { id: options.team, domain: `${options.team.toLowerCase()}-elsewhere` };
      payload.user = { ...(payload.user as Record<string, unknown>), team_id: options.team };
    }
    const delivery = this.#delivery('block_actions', payload, options, user.id, channel.id, container);
    responseUrl.bind(delivery);
    return this.deliveries.send(
      delivery,
      {
        body: stringify({ payload: JSON.stringify(payload) }),
        contentType: 'application/x-www-form-urlencoded',
      },
      'interactive',
    );
  }

  /**
   * The person whose modal `view` is submits it (`values` by the inputs' action ids; inputs left
   * out keep their initial text): a `view_submission` delivery. The bot's ack closes the modal or,
   * with `response_action: errors`, keeps it open with `view.errors`.
   */
  submitView(
    view: SlackView,
    values: Readonly<Record<string, string>> = {},
    options: SendOptions = {},
  ): SlackDelivery {
    const live = this.state.views.get(view.id);
    if (!live) throw new SimulatorUsageError(`no view ${view.id} was opened`);
    if (live.state !== 'open') throw new SimulatorUsageError('that modal is closed; nobody can submit it');
    const user = this.state.users.get(live.user);
    if (!user) throw new SimulatorUsageError(`the modal's person (${live.user}) is unknown`);
    const built = viewSubmission(this.state, this.options.teamDomain, live, user, values);
    if ('problem' in built)
      throw new SimulatorUsageError(`Slack's client would not submit it: ${built.problem}`);
    built.payload.trigger_id = this.deliveries.newTriggerId(user.id);
    const delivery = this.#delivery('view_submission', built.payload, options, user.id, null, null);
    return this.deliveries.send(
      delivery,
      {
        body: stringify({ payload: JSON.stringify(built.payload) }),
        contentType: 'application/x-www-form-urlencoded',
      },
      'interactive',
    );
  }

  /** A user adds a reaction (`name` is a shortcode like `arrows_counterclockwise`); sends `reaction_added`. */
  react(
    message: SlackMessage,
    name: string,
    user: SlackUser = this.users.bob,
    options: SendOptions = {},
  ): SlackDelivery {
    const live = this.#live(message);
    this.state.addReaction(live, name, user.id);
    return this.sendEvent(reactionAddedEvent(live, name, user), { ...options, user, channel: live.channel });
  }

  unreact(
    message: SlackMessage,
    name: string,
    user: SlackUser = this.users.bob,
    options: SendOptions = {},
  ): SlackDelivery {
    const live = this.#live(message);
    this.state.removeReaction(live, name, user.id);
    return this.sendEvent(reactionAddedEvent(live, name, user, true), {
      ...options,
      user,
      channel: live.channel,
    });
  }

  /** Delivers any Events API event (wrapped in an `event_callback`). */
  sendEvent(
    event: Record<string, unknown>,
    options: SendOptions & { user?: SlackUser; channel?: string } = {},
  ): SlackDelivery {
    const body = eventCallback(this.state, event);
    const delivery = this.#delivery(
      'event',
      body,
      options,
      options.user?.id ?? null,
      options.channel ?? null,
      null,
    );
    return this.deliveries.send(
      delivery,
      { body: JSON.stringify(body), contentType: 'application/json' },
      'events_api',
    );
  }

  /**
   * Slack delivers an event again (same `event_id`, same body): as it does when the ack was late
   * or failed. Over HTTP with `X-Slack-Retry-Num: <attempt>` and `X-Slack-Retry-Reason`, freshly
   * signed; over Socket Mode in an envelope with `retry_attempt` and `retry_reason`.
   */
  retry(original: SlackDelivery, attempt = 1, reason = 'http_timeout'): SlackDelivery {
    if (original.kind !== 'event') throw new SimulatorUsageError('Slack retries Events API deliveries only');
    if (!Number.isInteger(attempt) || attempt < 1 || attempt > 3)
      throw new SimulatorUsageError(`Slack retries an event 3 times at most, got attempt ${attempt}`);
    const delivery = this.#delivery(
      'event',
      original.payload,
      { signature: original.signature },
      original.user,
      original.channel,
      null,
    );
    delivery.retry = { attempt, reason };
    return this.deliveries.send(
      delivery,
      { body: JSON.stringify(original.payload), contentType: 'application/json' },
      'events_api',
    );
  }

  /**
   * Someone who captured an HTTP delivery sends it again byte for byte: same body, same
   * timestamp and signature headers (always over HTTP: Socket Mode is not signed). `addHeaders`
   * go along unsigned (headers are not covered by the signature), e.g. a forged `x-slack-retry-num`.
   */
  replay(original: SlackDelivery, addHeaders: Record<string, string> = {}): SlackDelivery {
    if (!original.request) throw new SimulatorUsageError('only a delivery sent over HTTP can be replayed');
    const delivery = this.#delivery(
      original.kind,
      original.payload,
      { signature: original.signature },
      original.user,
      original.channel,
      original.container,
    );
    const { body, headers } = original.request;
    return this.deliveries.send(
      delivery,
      { body, contentType: headers['content-type'] ?? '', exactHeaders: { ...headers, ...addHeaders } },
      null,
    );
  }

  /**
   * A correctly signed HTTP request with `body` as given (e.g. JSON `null`, or `payload=null`):
   * what a holder of the signing secret, or a broken proxy, could send.
   */
  sendSigned(body: string, contentType: string, options: SendOptions = {}): SlackDelivery {
    const delivery = this.#delivery('raw', {}, options, null, null, null);
    return this.deliveries.send(delivery, { body, contentType }, null);
  }

  /** Slack's Request URL check: the bot must echo `challenge` (HTTP only). */
  urlVerification(options: SendOptions & { challenge?: string } = {}): SlackDelivery {
    const body = urlVerification(options.challenge ?? `challenge-${slackId('E')}`);
    const delivery = this.#delivery('url_verification', body, options, null, null, null);
    return this.deliveries.send(
      delivery,
      { body: JSON.stringify(body), contentType: 'application/json' },
      null,
    );
  }

  /** A person posts a message (e.g. to react to something that is not the bot's). */
  say(channel: SlackChannel, text: string, user: SlackUser = this.users.bob): SlackMessage {
    return this.state.postMessage({ channel: channel.id, user: user.id, text });
  }

  // ── Observe ──────────────────────────────────────────────────────────────────────────────

  /** Live messages of a channel (thread replies included), oldest first. */
  messages(channel: SlackChannel | string): SlackMessage[] {
    return this.state.channelMessages(typeof channel === 'string' ? channel : channel.id);
  }

  /** Replies in `parent`'s thread. */
  replies(parent: SlackMessage): SlackMessage[] {
    return this.messages(parent.channel).filter((m) => m.threadTs === parent.ts && m.ts !== parent.ts);
  }

  /** Ephemeral messages, all or those `user` saw. */
  ephemerals(user?: SlackUser): SlackEphemeral[] {
    return this.state.ephemerals.filter((e) => !e.deleted && (!user || e.user === user.id));
  }

  files(): SlackFile[] {
    return [...this.state.files.values()];
  }

  get calls(): readonly ApiCallRecord[] {
    return this.router.log;
  }

  /** Calls Slack's rate limits refused (HTTP 429, not injected with `failNext`). */
  get rateLimitedCalls(): ApiCallRecord[] {
    return this.router.log.filter((c) => c.status === 429 && !c.injected);
  }

  /** Calls to methods the simulator does not implement (answered `unknown_method`). */
  get unhandledCalls(): ApiCallRecord[] {
    return this.router.log.filter((c) => c.error === 'unknown_method');
  }

  on<E extends keyof SlackEventMap>(event: E, listener: (...args: SlackEventMap[E]) => void): this {
    this.state.events.on(event, listener as never);
    return this;
  }

  off<E extends keyof SlackEventMap>(event: E, listener: (...args: SlackEventMap[E]) => void): this {
    this.state.events.off(event, listener as never);
    return this;
  }

  /** Resolves with the first live message (existing or future, posted or updated) that matches. */
  waitForMessage(
    predicate: (message: SlackMessage) => boolean,
    options: WaitOptions = {},
  ): Promise<SlackMessage> {
    return waitForState(this.state.events, {
      events: ['messageCreate', 'messageUpdate'],
      probe: () => [...this.state.messages.values()].find((m) => !m.deleted && predicate(m)),
      what: 'a Slack message matching the predicate',
      describe: () => this.#describe(),
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /** Modals opened with views.open, oldest first. */
  get views(): SlackView[] {
    return [...this.state.views.values()];
  }

  /** Resolves with the first modal (opened already or later) that matches. */
  waitForView(
    predicate: (view: SlackView) => boolean = () => true,
    options: WaitOptions = {},
  ): Promise<SlackView> {
    return waitForState(this.state.events, {
      events: ['viewOpened'],
      probe: () => this.views.find(predicate),
      what: 'a modal (views.open) matching the predicate',
      describe: () => this.#describe(),
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  waitForEphemeral(
    predicate: (message: SlackEphemeral) => boolean,
    options: WaitOptions = {},
  ): Promise<SlackEphemeral> {
    return waitForState(this.state.events, {
      events: ['ephemeral', 'ephemeralUpdate'],
      probe: () => this.state.ephemerals.find((e) => !e.deleted && predicate(e)),
      what: 'an ephemeral message matching the predicate',
      describe: () => this.#describe(),
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  waitForDeletion(message: SlackMessage, options: WaitOptions = {}): Promise<SlackMessage> {
    return waitForState(this.state.events, {
      events: ['messageDelete'],
      probe: () =>
        this.state.messages.get(`${message.channel}:${message.ts}`)?.deleted ? message : undefined,
      what: `message ${message.ts} to be deleted`,
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /** Resolves with the first logged Web API call (or upload / response_url post) matching. */
  waitForCall(
    predicate: (call: ApiCallRecord) => boolean,
    options: WaitOptions = {},
  ): Promise<ApiCallRecord> {
    return waitForState(this.state.events, {
      events: ['apiCall'],
      probe: () => this.router.log.find(predicate),
      what: 'a Web API call matching the predicate',
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /** Resolves when a Socket Mode connection is open (after `hello`). */
  waitForSocket(options: WaitOptions = {}): Promise<true> {
    return waitForState(this.state.events, {
      events: ['socketConnected'],
      probe: () => (this.socket.connected ? true : undefined),
      what: 'a Socket Mode connection',
      timeoutMs: options.timeoutMs ?? this.options.waitTimeoutMs,
    });
  }

  /**
   * The next call(s) to `method` fail — by default HTTP 429 with `Retry-After: <retryAfter>`
   * (whole seconds, as Slack sends). Also `'upload_url'` and `'response_url'`.
   */
  failNext(method: string, failure?: InjectedFailure): FailureHandle<ApiCallRecord> {
    return this.router.failNext(method, failure);
  }

  // ── Internals ────────────────────────────────────────────────────────────────────────────

  #delivery(
    kind: SlackDelivery['kind'],
    payload: Record<string, unknown>,
    options: SendOptions,
    user: string | null,
    channel: string | null,
    container: SlackDelivery['container'],
  ): SlackDelivery {
    return new SlackDelivery(
      this.state,
      kind,
      payload,
      options.signature ?? 'valid',
      user,
      channel,
      container,
      this.options.waitTimeoutMs,
    );
  }

  #live(message: SlackMessage): SlackMessage {
    const live = this.state.message(message.channel, message.ts);
    if (!live) throw new SimulatorUsageError(`message ${message.ts} is gone`);
    return live;
  }

  #describe(): string {
    const lines = [...this.state.messages.values()].slice(-10).map((m) => {
      const channel = this.state.channels.get(m.channel);
      const files = m.files.length ? ` files=${m.files.map((f) => f.filename).join(',')}` : '';
      const buttons = m.buttons.length ? ` buttons=${m.buttons.map((b) => b.actionId).join(',')}` : '';
      return `  #${channel?.name ?? m.channel} ${m.user === this.bot.id ? 'bot' : m.user}: ${JSON.stringify(m.text.slice(0, 80))}${files}${buttons}${m.deleted ? ' (deleted)' : ''}`;
    });
    const ephemerals = this.state.ephemerals
      .slice(-5)
      .map((e) => `  (ephemeral to ${e.user}) ${JSON.stringify(e.text.slice(0, 80))}`);
    return `messages so far:\n${[...lines, ...ephemerals].join('\n') || '  (none)'}`;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const segments = path.split('/').filter(Boolean);
    if (segments[0] === 'api' && segments.length === 2) return this.router.handle(segments[1]!, req, res);
    if (segments[0] === 'upload' && segments.length === 3 && req.method === 'POST') {
      return handleUpload(this.#methodDeps, this.router, segments[2]!, req, res);
    }
    if (
      (segments[0] === 'commands' || segments[0] === 'actions') &&
      segments.length === 3 &&
      req.method === 'POST'
    ) {
      return handleResponseUrl(this.state, this.deliveries, this.router, segments[2]!, req, res);
    }
    if (segments[0] === 'files' && segments.length === 3) return this.#serveFile(segments[1]!, req, res);
    sendJson(res, 404, { ok: false, error: 'not_found' });
  }

  /** `url_private` of uploaded files: needs the bot token, as on Slack. */
  #serveFile(id: string, req: IncomingMessage, res: ServerResponse): void {
    const file = this.state.files.get(id);
    if (headerValue(req, 'authorization') !== `Bearer ${this.botToken}`) {
      sendJson(res, 403, { ok: false, error: 'not_authed' });
      return;
    }
    if (!file?.data) {
      sendJson(res, 404, { ok: false, error: 'file_not_found' });
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.data.length });
    res.end(file.data);
  }
}

export async function startSlackSimulator(options: SlackSimulatorOptions = {}): Promise<SlackSimulator> {
  return new SlackSimulator(options).start();
}
