/**
 * The playground surface: one HTTP server on loopback serving the page, its images and gallery,
 * and a WebSocket at `/ws` that carries the channel live. Started by adapters/serve.ts like the
 * Discord and Slack surfaces.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { BotPort } from '../../commands/port.js';
import type { ChatAdapter } from '../../commands/types.js';
import { ConfigError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { PlaygroundFeedRepository } from '../../src/store/playground-feed-repository.js';
import { Access, SECRET_VARIABLE } from './access.js';
import { PlaygroundAdapter } from './adapter.js';
import { createRequestHandler, isAllowedHost } from './http.js';
import { ChannelHub, type FeedStore } from './hub.js';
import { Interactions } from './interactions.js';
import { type ConnectionLimits, handleSocket } from './socket-handler.js';
import { DEFAULT_STATIC_DIR, loadStaticFiles } from './static-files.js';

export interface PlaygroundOptions {
  logger: Logger;
  /**
   * Interface to listen on. Beyond loopback a `secret` is required: names are no identities.
   * @default '127.0.0.1'
   */
  host?: string;
  /**
   * The shared secret every request and WebSocket must carry (`?key=`, a bearer token, or the
   * cookie the page gets); required when `host` is beyond loopback, optional on it.
   * From PLAYGROUND_SECRET (environment or .env) through the config's secrets.
   */
  secret?: string;
  /**
   * Where the conversation is kept across restarts; `false` keeps it in memory only.
   * @default the bot's database (`bot.app.store`), when it has one
   */
  feedStore?: FeedStore | false;
  /** `0` picks a free port; the start line reports the real one. @default 7860 */
  port?: number;
  /** Channels shown from the start; the bot may post to more (they then appear). @default ['general', 'showcase'] */
  channels?: readonly string[];
  /** @default 'Atelier' */
  botName?: string;
  /** Public messages each channel keeps for tabs that open later (and across restarts). @default playground.keepMessages, else 200 */
  maxMessagesPerChannel?: number;
  /** Private messages kept per user. @default 50 */
  maxPrivatePerUser?: number;
  /** Memory for message images and previews; the oldest are dropped beyond it. @default 256 MiB */
  imageCacheBytes?: number;
  /** What `uploadLimit()` reports to the bot: images are served locally, so this is generous. @default 50 MiB */
  uploadLimitBytes?: number;
  /** Folder of the page's files. @default adapters/playground/static */
  staticDir?: string;
  /** Seconds between WebSocket pings; a tab that misses one is dropped. @default 30 */
  heartbeatSeconds?: number;
  /** Frames one tab may send a minute (bursts of a quarter). @default playground.maxFramesPerMinute, else 120 */
  maxFramesPerMinute?: number;
  /** Longest plain chat line, in characters. @default playground.maxChatLength, else 4000 */
  maxChatLength?: number;
  /** Largest frame a tab may send; larger ones are refused to that tab. @default 512 KiB */
  maxFrameBytes?: number;
  /** How much of the feed a welcome frame carries (the newest messages). @default 1 MiB */
  welcomeMaxBytes?: number;
}

/**
 * What the playground calls on the bot (commands/port.ts; `Bot` fits). Its core, when there is
 * one, gives the database the conversation is kept in and the `playground.*` settings.
 */
export type PlaygroundBot = Pick<
  BotPort,
  | 'commands'
  | 'attach'
  | 'command'
  | 'action'
  | 'submitForm'
  | 'reaction'
  | 'autocomplete'
  | 'parseText'
  | 'recentResults'
  | 'resultImage'
  | 'app'
>;

export interface PlaygroundSurface {
  adapter: ChatAdapter;
  /** Attaches the bot and listens; resolves with `playground: http://127.0.0.1:7860`. */
  start(bot: PlaygroundBot): Promise<string>;
  /** Closes every tab's socket and the server. */
  stop(): Promise<void>;
  /** The page's address once started (with the real port when `port` was 0). */
  readonly url: string | undefined;
}

const MIB = 1024 * 1024;
/** The longest line the protocol accepts (100,000 characters, up to 4 bytes each) must fit in a frame. */
const MAX_FRAME_BYTES = 512 * 1024;
/** Frames up to this size are read and refused politely; beyond it the socket library closes that tab (1009). */
const HARD_FRAME_BYTES = 4 * MIB;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

export function createPlaygroundSurface(options: PlaygroundOptions): PlaygroundSurface {
  const settings = {
    host: '127.0.0.1',
    port: 7860,
    channels: ['general', 'showcase'],
    botName: 'Atelier',
    maxMessagesPerChannel: 200,
    maxPrivatePerUser: 50,
    imageCacheBytes: 256 * MIB,
    uploadLimitBytes: 50 * MIB,
    staticDir: DEFAULT_STATIC_DIR,
    heartbeatSeconds: 30,
    ...withoutUndefined(options),
  };
  const { logger } = options;
  const hub = new ChannelHub(settings);
  const adapter = new PlaygroundAdapter(hub, settings.uploadLimitBytes);
  const loopback = isLoopback(settings.host);
  const allowedHosts = loopback ? LOOPBACK_HOSTS : undefined;
  const secret = options.secret?.trim() || undefined;
  let server: Server | undefined;
  let sockets: WebSocketServer | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let url: string | undefined;

  async function start(bot: PlaygroundBot): Promise<string> {
    if (server) throw new Error('the playground is already started');
    if (!loopback && !secret)
      throw new ConfigError(
        SECRET_VARIABLE,
        `playground: playground.host = ${settings.host} reaches beyond this machine, where anyone could type an admin's name and act as them: set ${SECRET_VARIABLE} to a shared secret, or keep playground.host on 127.0.0.1.`,
      );
    const configured = bot.app?.config.playground;
    const keep = options.maxMessagesPerChannel ?? configured?.keepMessages ?? settings.maxMessagesPerChannel;
    hub.feed.setLimits({
      maxPerChannel: keep,
      maxPrivatePerUser: Math.min(settings.maxPrivatePerUser, keep),
    });
    const feedStore =
      options.feedStore === false
        ? undefined
        : (options.feedStore ??
          (bot.app?.store ? new PlaygroundFeedRepository(bot.app.store.db) : undefined));
    if (feedStore) hub.useStore(feedStore, logger);
    const limits: ConnectionLimits = {
      maxFramesPerMinute: options.maxFramesPerMinute ?? configured?.maxFramesPerMinute ?? 120,
      maxChatLength: options.maxChatLength ?? configured?.maxChatLength ?? 4000,
      maxFrameBytes: settings.maxFrameBytes ?? MAX_FRAME_BYTES,
      welcomeMaxBytes: settings.welcomeMaxBytes ?? MIB,
    };
    bot.attach(adapter);
    const interactions = new Interactions(hub, bot, logger);
    const access = secret === undefined ? undefined : new Access(secret);
    const handler = createRequestHandler({
      hub,
      bot: () => bot,
      staticFiles: loadStaticFiles(settings.staticDir),
      logger,
      allowedHosts,
      access,
    });
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: Math.max(HARD_FRAME_BYTES, 2 * limits.maxFrameBytes),
    });
    wss.on('connection', (socket) => handleSocket(socket, { hub, bot, interactions, logger, limits }));
    const http = createServer((req, res) => void handler(req, res));
    http.on('upgrade', (req, socket, head) => {
      if (
        new URL(req.url ?? '/', 'http://x').pathname !== '/ws' ||
        !isAllowedHost(req, allowedHosts) ||
        !sameOrigin(req)
      ) {
        socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
        return;
      }
      if (access && !access.allows(req)) {
        socket.end(
          `HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nthe playground's secret (${SECRET_VARIABLE}) is required\n`,
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    await listen(http, settings.host, settings.port);
    server = http;
    sockets = wss;
    heartbeat = startHeartbeat(wss, settings.heartbeatSeconds * 1000);
    const { port } = http.address() as AddressInfo;
    url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}`;
    logger.info({ url, secretRequired: secret !== undefined }, 'playground listening');
    if (secret === undefined) return `playground: ${url}`;
    return `playground: ${url} (shared secret required: open ${url}/?key=<${SECRET_VARIABLE}>; requests without it are refused)`;
  }

  async function stop(): Promise<void> {
    clearInterval(heartbeat);
    for (const socket of sockets?.clients ?? []) socket.terminate();
    sockets?.close();
    const http = server;
    server = undefined;
    sockets = undefined;
    url = undefined;
    if (!http) return;
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  }

  return {
    adapter,
    start,
    stop,
    get url() {
      return url;
    },
  };
}

/** Listens, turning the usual operator mistakes (port taken, no permission) into one clear line. */
async function listen(http: Server, host: string, port: number): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, host, () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const why =
        code === 'EADDRINUSE'
          ? `port ${port} is already in use`
          : code === 'EACCES'
            ? `no permission to listen on port ${port}`
            : `${host} is not an address of this machine`;
      throw new ConfigError(
        code === 'EADDRNOTAVAIL' ? 'playground.host' : 'playground.port',
        `playground: cannot listen on ${host}:${port}: ${why}. Set PLAYGROUND_PORT to a free port (0 picks one) or change playground.host.`,
      );
    }
    throw error;
  }
}

/**
 * A browser sends its page's Origin with every WebSocket; refusing other origins keeps a web page
 * on another site from driving the bot as anyone. Clients without an Origin (Node, curl) are fine.
 */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Dead tabs (a sleeping laptop, a killed browser) never send close; a missed pong drops them. */
function startHeartbeat(wss: WebSocketServer, intervalMs: number): NodeJS.Timeout {
  const alive = new WeakSet<object>();
  wss.on('connection', (socket) => {
    alive.add(socket);
    socket.on('pong', () => alive.add(socket));
  });
  const timer = setInterval(() => {
    for (const socket of wss.clients) {
      if (!alive.has(socket)) {
        socket.terminate();
        continue;
      }
      alive.delete(socket);
      socket.ping();
    }
  }, intervalMs);
  timer.unref();
  return timer;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
