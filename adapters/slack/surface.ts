/**
 * The Slack surface: Bolt 5 in HTTP mode (one Request URL, `/slack/events`, for slash commands,
 * interactivity and events; Bolt answers 401 to requests whose signature is bad or stale) or in
 * Socket Mode, forwarding to the Bot; and the ChatAdapter the Bot posts job messages through.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { App, HTTPReceiver, webApi } from '@slack/bolt';
import type { BotPort } from '../../commands/port.js';
import { SLACK_TOKEN_ERRORS } from '../../src/app/surface-checks.js';
import { ConfigError } from '../../src/errors.js';
import { childLogger, type Logger } from '../../src/log.js';
import { boltLogger } from './bolt-logger.js';
import { SlackChatAdapter } from './chat-adapter.js';
import { slackErrorCode } from './errors.js';
import { registerListeners } from './listeners.js';
import { resolveSlackSurfaceOptions, SLACK_EVENTS_PATH, type SlackSurfaceOptions } from './options.js';
import { SlackPeople } from './people.js';
import { guardRequests } from './request-guard.js';
import { EVENT_RETENTION_MS, seenDeliveries } from './seen.js';

/**
 * What the Slack surface calls on the bot (commands/port.ts; `Bot` fits). Its core, when there is
 * one, keeps the ids of events acted on (so a retry after a restart is caught), and buttons are
 * checked against their job's team.
 */
export type SlackBot = Pick<
  BotPort,
  'attach' | 'command' | 'action' | 'submitForm' | 'reaction' | 'parseText' | 'app'
>;

export interface SlackSurface {
  adapter: SlackChatAdapter;
  /**
   * Checks the bot token (auth.test), attaches the adapter to the bot and starts receiving.
   * Resolves with one line: `slack: HTTP on :3000/slack/events as @atelier (team T123)` or
   * `slack: Socket Mode as @atelier (team T123)`.
   */
  start(bot: SlackBot): Promise<string>;
  /** Stops receiving; waits (up to a few seconds) for interactions being answered. */
  stop(): Promise<void>;
}

/** How long stop() waits for interactions and progress edits under way. */
const STOP_GRACE_MS = 3000;

export function createSlackSurface(options: SlackSurfaceOptions): SlackSurface {
  const settings = resolveSlackSurfaceOptions(options);
  const logger = childLogger(settings.logger, 'slack');
  const clientOptions: webApi.WebClientOptions = {
    slackApiUrl: settings.apiUrl,
    logger: boltLogger(logger),
    // The default retries for about 30 minutes; a chat answer that late helps nobody.
    retryConfig: webApi.retryPolicies.fiveRetriesInFiveMinutes,
  };
  // The adapter works before start(): jobs recovered at startup may post before Slack events flow.
  const client = new webApi.WebClient(settings.botToken, clientOptions);
  const adapter = new SlackChatAdapter({
    client,
    uploadLimitBytes: settings.maxUploadBytes,
    logger,
    imageRetryDelaysMs: settings.imageRetryDelaysMs,
    progressIntervalMs: settings.progressEditIntervalMs,
    channelIntervalMs: settings.channelEditIntervalMs,
    updatesPerMinute: settings.updatesPerMinute,
  });
  const people = new SlackPeople(client, { cacheMs: settings.userCacheMs });
  const inFlight = new Set<Promise<unknown>>();
  let app: App | undefined;

  return {
    adapter,
    async start(bot) {
      if (app) throw new Error('the Slack surface is already started');
      // No retries here: an unreachable or refusing Slack is said at once (serve retries the start).
      const identity = await whoAmI(
        new webApi.WebClient(settings.botToken, {
          ...clientOptions,
          retryConfig: { retries: 0 },
          timeout: 10_000,
        }),
      );
      const seen = seenDeliveries(bot.app?.store.db, logger);
      const created = new App({
        token: settings.botToken,
        // Known from auth.test above, so Bolt does not ask again.
        botId: identity.botId,
        botUserId: identity.userId,
        ...(settings.mode === 'socket'
          ? { appToken: settings.appToken, socketMode: true }
          : { receiver: guardedReceiver(settings.signingSecret!, seen, logger) }),
        clientOptions,
        logger: boltLogger(logger),
      });
      // Slack delivers an event again when its ack was late or lost (HTTP: X-Slack-Retry-Num;
      // Socket Mode: retry_attempt), with the same event_id: it is acted on once.
      created.use(async ({ body, next }) => {
        const eventId = (body as { event_id?: unknown }).event_id;
        if (body.type === 'event_callback' && typeof eventId === 'string') {
          const team = (body as { team_id?: unknown }).team_id;
          const key = `slack:event:${typeof team === 'string' ? team : ''}:${eventId}`;
          if (!seen.claim(key, Date.now() + EVENT_RETENTION_MS)) {
            logger.debug({ eventId }, 'slack: an event delivered again; already acted on');
            return;
          }
        }
        await next();
      });
      created.use(async ({ next }) => {
        const work = next();
        inFlight.add(work);
        try {
          await work;
        } finally {
          inFlight.delete(work);
        }
      });
      registerListeners(created, {
        bot,
        adapter,
        people,
        logger,
        botUserId: () => identity.userId,
        teamId: () => identity.teamId,
        ackDeadlineMs: settings.ackDeadlineMs,
      });
      bot.attach(adapter);
      app = created;
      const as = `as @${identity.name} (team ${identity.teamId})`;
      try {
        if (settings.mode === 'socket') {
          await startOrExplain(() => created.start(), 'SLACK_APP_TOKEN');
          return `slack: Socket Mode ${as}`;
        }
        const server = (await created.start(settings.port)) as Server;
        const { port } = server.address() as AddressInfo;
        return `slack: HTTP on :${port}${SLACK_EVENTS_PATH} ${as}`;
      } catch (error) {
        // A failed start leaves nothing running (no reconnecting socket), and start() can be tried again.
        app = undefined;
        await created.stop().catch(() => {});
        throw error;
      }
    },
    async stop() {
      const running = app;
      app = undefined;
      if (!running) return;
      await running.stop();
      adapter.dropWaitingProgress();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(() => resolve(), STOP_GRACE_MS);
      });
      // A progress edit under way finishes (and reports its preview files, recorded with the job).
      await Promise.race([Promise.allSettled([...inFlight, adapter.settled()]), grace]);
      clearTimeout(timer);
    },
  };
}

/**
 * Bolt's HTTP receiver on `/slack/events` with our checks in front (future timestamps, replays,
 * bodies that are not objects: see request-guard.ts).
 */
function guardedReceiver(signingSecret: string, seen: ReturnType<typeof seenDeliveries>, logger: Logger) {
  const receiver = new HTTPReceiver({
    signingSecret,
    endpoints: SLACK_EVENTS_PATH,
    logger: boltLogger(logger),
  });
  receiver.requestListener = guardRequests(receiver.requestListener, {
    signingSecret,
    endpoints: [SLACK_EVENTS_PATH],
    seen,
    logger,
  });
  return receiver;
}

interface Identity {
  userId: string;
  botId: string;
  name: string;
  teamId: string;
}

/** auth.test: who the token belongs to. A refused token is the operator's to fix, named as such. */
async function whoAmI(client: webApi.WebClient): Promise<Identity> {
  const auth = await startOrExplain(() => client.auth.test(), 'SLACK_BOT_TOKEN');
  return {
    userId: auth.user_id ?? '',
    botId: auth.bot_id ?? '',
    name: auth.user ?? 'atelier',
    teamId: auth.team_id ?? '',
  };
}

async function startOrExplain<T>(run: () => Promise<T>, variable: string): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const code = slackErrorCode(error);
    if (code && SLACK_TOKEN_ERRORS.has(code)) {
      throw new ConfigError(
        variable,
        `slack: Slack refused ${variable} (${code}); check the token of your Slack app`,
      );
    }
    throw error;
  }
}
