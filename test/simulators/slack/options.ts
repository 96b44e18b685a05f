import {
  DEFAULT_SLACK_RATE_LIMITS,
  type ResolvedSlackRateLimits,
  type SlackRateLimitOptions,
} from './web-api/rate-limits.js';

export interface SlackSimulatorOptions {
  /** Bot token Web API calls must carry. @default 'xoxb-simulated-bot-token' */
  botToken?: string;
  /** App-level token for Socket Mode (`apps.connections.open`). @default 'xapp-1-simulated-app-token' */
  appToken?: string;
  /** Secret the signed requests to the bot are signed with. @default 'simulated-signing-secret' */
  signingSecret?: string;
  /** The bot's HTTP endpoint (Request URL), e.g. `http://127.0.0.1:3000/slack/events`. Settable later. */
  requestUrl?: string;
  /** Workspace name and subdomain (permalinks). @default 'Atelier Lab' / 'atelier-lab' */
  teamName?: string;
  teamDomain?: string;
  /** The bot user's name. @default 'atelier' */
  botName?: string;
  /** Slack waits this long for an ack (HTTP response or Socket Mode ack). @default 3000 */
  ackTimeoutMs?: number;
  /** Largest file files.getUploadURLExternal accepts (Slack: 1 GB). @default 1 GiB */
  maxFileBytes?: number;
  /**
   * How deliveries reach the bot: over an open Socket Mode connection if there is one, else
   * HTTP (`'auto'`), or only one of them. @default 'auto'
   */
  transport?: 'auto' | 'http' | 'socket';
  /** Interval of WebSocket pings on Socket Mode connections. @default 10_000 */
  socketPingIntervalMs?: number;
  /** Default give-up time of the `waitFor…` helpers. @default 10_000 */
  waitTimeoutMs?: number;
  /**
   * Slack's rate limits, enforced with HTTP 429 + `Retry-After` (see web-api/rate-limits.ts):
   * chat.update 50 per minute per workspace, 1 message per second per channel in bursts of 5.
   * Each may be changed; `false` turns them all off.
   */
  rateLimits?: SlackRateLimitOptions | false;
}

export type ResolvedSlackOptions = Required<Omit<SlackSimulatorOptions, 'requestUrl' | 'rateLimits'>> & {
  requestUrl: string | undefined;
  rateLimits: ResolvedSlackRateLimits;
};

export function resolveSlackOptions(options: SlackSimulatorOptions): ResolvedSlackOptions {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const resolved: ResolvedSlackOptions = {
    botToken: 'xoxb-simulated-bot-token',
    appToken: 'xapp-1-simulated-app-token',
    signingSecret: 'simulated-signing-secret',
    requestUrl: undefined,
    teamName: 'Atelier Lab',
    teamDomain: 'atelier-lab',
    botName: 'atelier',
    ackTimeoutMs: 3000,
    maxFileBytes: 1024 ** 3,
    transport: 'auto',
    socketPingIntervalMs: 10_000,
    waitTimeoutMs: 10_000,
    ...defined,
    rateLimits:
      options.rateLimits === false
        ? { chatUpdatePerMinute: 0, channelMessagesPerSecond: 0, channelMessageBurst: 1 }
        : { ...DEFAULT_SLACK_RATE_LIMITS, ...withoutUndefined(options.rateLimits ?? {}) },
  };
  if (!resolved.botToken.startsWith('xoxb-'))
    throw new TypeError('Expected `botToken` to start with "xoxb-"');
  if (!resolved.appToken.startsWith('xapp-'))
    throw new TypeError('Expected `appToken` to start with "xapp-"');
  for (const key of ['ackTimeoutMs', 'maxFileBytes', 'socketPingIntervalMs', 'waitTimeoutMs'] as const) {
    if (!Number.isFinite(resolved[key]) || resolved[key] <= 0) {
      throw new TypeError(`Expected \`${key}\` to be a finite number > 0, got \`${resolved[key]}\``);
    }
  }
  const limits = resolved.rateLimits;
  for (const key of ['chatUpdatePerMinute', 'channelMessagesPerSecond'] as const) {
    if (!Number.isFinite(limits[key]) || limits[key] < 0) {
      throw new TypeError(`Expected \`rateLimits.${key}\` to be a finite number ≥ 0, got \`${limits[key]}\``);
    }
  }
  if (!Number.isFinite(limits.channelMessageBurst) || limits.channelMessageBurst < 1) {
    throw new TypeError(
      `Expected \`rateLimits.channelMessageBurst\` to be a number ≥ 1, got \`${limits.channelMessageBurst}\``,
    );
  }
  return resolved;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
