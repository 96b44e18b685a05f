/** Discord's upload cap for a server without boosts (10 MiB since 2024). */
export const DEFAULT_UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024;

export interface DiscordSimulatorOptions {
  /** Bot token accepted by REST (`Authorization: Bot <token>`) and by IDENTIFY. @default 'simulated-bot-token' */
  token?: string;
  /** The bot's username. @default 'Atelier' */
  botName?: string;
  /** Name of the default server. @default 'Atelier Lab' */
  guildName?: string;
  /**
   * Upload cap of the default server (the whole request's files), and of DMs. Larger uploads get
   * Discord's 413 / 40005 "Request entity too large". @default 10 MiB
   */
  uploadLimitBytes?: number;
  /** Time Discord gives an interaction's first response. @default 3000 */
  interactionTimeoutMs?: number;
  /** Lifetime of an interaction token for edits and follow-ups. @default 900_000 (15 min) */
  interactionTokenTtlMs?: number;
  /** Gateway heartbeat interval sent in HELLO. @default 41_250 (Discord's usual value) */
  heartbeatIntervalMs?: number;
  /**
   * Every REST bucket (route + major parameter) allows `limit` requests per `windowMs`; the
   * headers report it and the next request gets a real 429. Interaction callbacks are exempt,
   * as on Discord. @default { limit: 50, windowMs: 1000 }
   */
  rateLimit?: { limit: number; windowMs: number };
  /**
   * Privileged intents (bitfield) the application is allowed in its portal settings; an IDENTIFY
   * asking for others is closed with 4014 "Disallowed intent(s)". @default 0 (none)
   */
  allowedPrivilegedIntents?: number;
  /** Default give-up time of the `waitFor…` helpers. @default 10_000 */
  waitTimeoutMs?: number;
}

export type ResolvedDiscordOptions = Required<DiscordSimulatorOptions>;

export function resolveDiscordOptions(options: DiscordSimulatorOptions): ResolvedDiscordOptions {
  const resolved: ResolvedDiscordOptions = {
    token: 'simulated-bot-token',
    botName: 'Atelier',
    guildName: 'Atelier Lab',
    uploadLimitBytes: DEFAULT_UPLOAD_LIMIT_BYTES,
    interactionTimeoutMs: 3000,
    interactionTokenTtlMs: 15 * 60_000,
    heartbeatIntervalMs: 41_250,
    rateLimit: { limit: 50, windowMs: 1000 },
    allowedPrivilegedIntents: 0,
    waitTimeoutMs: 10_000,
    ...stripUndefined(options),
  };
  for (const key of [
    'uploadLimitBytes',
    'interactionTimeoutMs',
    'heartbeatIntervalMs',
    'waitTimeoutMs',
  ] as const) {
    const value = resolved[key];
    if (!Number.isFinite(value) || value <= 0) {
      throw new TypeError(
        `Expected \`${key}\` to be a finite number > 0, got \`${value}\` (${typeof value})`,
      );
    }
  }
  if (resolved.rateLimit.limit < 1 || resolved.rateLimit.windowMs <= 0) {
    throw new TypeError('Expected `rateLimit` to have limit >= 1 and windowMs > 0');
  }
  return resolved;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
