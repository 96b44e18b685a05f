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
}

export type ResolvedSlackOptions = Required<Omit<SlackSimulatorOptions, 'requestUrl'>> & {
  requestUrl: string | undefined;
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
  return resolved;
}
