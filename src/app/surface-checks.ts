/**
 * What a chat surface meets when it starts, checked live and said in one line: Discord's
 * `GET /users/@me` with DISCORD_TOKEN at DISCORD_API_URL, Slack's `auth.test` with SLACK_BOT_TOKEN
 * (and `apps.connections.open` with SLACK_APP_TOKEN in Socket Mode) at SLACK_API_URL. `serve`
 * runs these before it starts a surface and `doctor` runs the same ones, so both name the same
 * cause: a refused token, a DNS failure, a refused connection, a timeout, TLS, or an HTTP error.
 * `explainStartFailure` turns anything a surface throws at start (discord.js, Bolt, fetch) into
 * the same kind of line.
 */
import { AtelierError } from '../errors.js';

export type SurfaceName = 'discord' | 'slack' | 'playground';

/** A surface cannot start; `message` is the one line for the operator (`discord: …`). */
export class SurfaceStartError extends AtelierError {
  constructor(
    readonly surface: SurfaceName,
    message: string,
    /** false when trying again cannot help (a refused token: it is read once, at start). */
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super('CONFIG', message, 'The bot cannot reach its chat platform; an admin has been told.', options);
  }
}

export const DEFAULT_DISCORD_API = 'https://discord.com/api';
export const DEFAULT_SLACK_API = 'https://slack.com/api/';
/** How long a start-up check waits for an answer. */
export const CHECK_TIMEOUT_MS = 10_000;

interface Target {
  surface: SurfaceName;
  /** What the operator sets to point elsewhere, e.g. DISCORD_API_URL. */
  urlVariable: string;
  /** The token variable a 401 / invalid_auth is about. */
  tokenVariable: string;
  /** Where the platform publishes outages. */
  status: string;
  /** What to check when the token is refused. */
  tokenHint: string;
}

const DISCORD: Target = {
  surface: 'discord',
  urlVariable: 'DISCORD_API_URL',
  tokenVariable: 'DISCORD_TOKEN',
  status: 'https://discordstatus.com',
  tokenHint:
    'copy the bot token again from the Developer Portal (your application → Bot → Reset Token), not the client secret or public key',
};

const slackTarget = (tokenVariable: string): Target => ({
  surface: 'slack',
  urlVariable: 'SLACK_API_URL',
  tokenVariable,
  status: 'https://slack-status.com',
  tokenHint:
    tokenVariable === 'SLACK_APP_TOKEN'
      ? 'use the app-level token (xapp-…, scope connections:write) from Basic Information → App-Level Tokens of your Slack app'
      : 'use the Bot User OAuth Token (xoxb-…) from OAuth & Permissions of your Slack app, and reinstall the app if it was removed',
});

/** Slack's answers that mean "this token is not accepted". */
export const SLACK_TOKEN_ERRORS: ReadonlySet<string> = new Set([
  'invalid_auth',
  'not_authed',
  'account_inactive',
  'token_revoked',
  'token_expired',
  'not_allowed_token_type',
  'missing_scope',
]);

export interface DiscordIdentity {
  /** `Atelier#0001`, or the bare username for accounts without a discriminator. */
  tag: string;
  id: string;
}

/** `GET <apiUrl>/v10/users/@me` with the bot token: who DISCORD_TOKEN is, or why not. */
export async function checkDiscord(options: {
  token: string;
  apiUrl?: string | null;
  timeoutMs?: number;
}): Promise<DiscordIdentity> {
  const base = (options.apiUrl ?? DEFAULT_DISCORD_API).replace(/\/+$/, '');
  const url = `${base}/v10/users/@me`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: `Bot ${options.token}`, 'user-agent': 'DiscordBot (atelier, 1)' },
      signal: AbortSignal.timeout(options.timeoutMs ?? CHECK_TIMEOUT_MS),
    });
  } catch (error) {
    throw explain(DISCORD, error, url, options.timeoutMs);
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw httpFailure(DISCORD, response.status, response.statusText, `GET ${url}`);
  }
  const user = (await response.json().catch(() => ({}))) as {
    id?: string;
    username?: string;
    discriminator?: string;
  };
  const name = user.username ?? 'unknown';
  return {
    id: user.id ?? '',
    tag: user.discriminator && user.discriminator !== '0' ? `${name}#${user.discriminator}` : name,
  };
}

export interface SlackIdentity {
  user: string;
  teamId: string;
  team: string;
}

/**
 * `auth.test` with the bot token at SLACK_API_URL (no retries: a start that waits minutes helps
 * nobody), and in Socket Mode `apps.connections.open` with the app token.
 */
export async function checkSlack(options: {
  botToken: string;
  appToken?: string;
  apiUrl?: string | null;
  timeoutMs?: number;
}): Promise<SlackIdentity> {
  const auth = await slackCall(options, 'auth.test', options.botToken, 'SLACK_BOT_TOKEN');
  if (options.appToken)
    await slackCall(options, 'apps.connections.open', options.appToken, 'SLACK_APP_TOKEN');
  return {
    user: typeof auth.user === 'string' ? auth.user : 'unknown',
    teamId: typeof auth.team_id === 'string' ? auth.team_id : '',
    team: typeof auth.team === 'string' ? auth.team : '',
  };
}

async function slackCall(
  options: { apiUrl?: string | null; timeoutMs?: number },
  method: string,
  token: string,
  variable: string,
): Promise<Record<string, unknown>> {
  const target = slackTarget(variable);
  const base = options.apiUrl ?? DEFAULT_SLACK_API;
  const url = `${base}${base.endsWith('/') ? '' : '/'}${method}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: '',
      signal: AbortSignal.timeout(options.timeoutMs ?? CHECK_TIMEOUT_MS),
    });
  } catch (error) {
    throw explain(target, error, url, options.timeoutMs);
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw httpFailure(target, response.status, response.statusText, `POST ${url}`);
  }
  const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  if (!body || typeof body !== 'object') {
    throw new SurfaceStartError(
      'slack',
      `slack: ${url} did not answer like Slack's Web API (no JSON); check ${target.urlVariable}`,
      true,
    );
  }
  if (body.ok !== true) throw slackRefusal(target, String(body.error ?? 'unknown_error'), method);
  return body;
}

function slackRefusal(target: Target, code: string, method: string): SurfaceStartError {
  if (SLACK_TOKEN_ERRORS.has(code)) {
    return new SurfaceStartError(
      'slack',
      `slack: Slack refused ${target.tokenVariable} (${code}); ${target.tokenHint}`,
      false,
    );
  }
  return new SurfaceStartError('slack', `slack: Slack answered ${method} with "${code}"`, true);
}

function httpFailure(target: Target, status: number, statusText: string, request: string): SurfaceStartError {
  const answered = `${status}${statusText ? ` ${statusText}` : ''}`;
  if (status === 401) {
    return new SurfaceStartError(
      target.surface,
      `${target.surface}: ${title(target)} refused ${target.tokenVariable} (${answered}): the token is wrong, reset or revoked; ${target.tokenHint}`,
      false,
    );
  }
  if (status >= 500) {
    return new SurfaceStartError(
      target.surface,
      `${target.surface}: ${title(target)}'s API answered ${answered} to ${request}: trouble on its side (see ${target.status}) or a wrong ${target.urlVariable}; retrying later can help`,
      true,
    );
  }
  return new SurfaceStartError(
    target.surface,
    `${target.surface}: ${title(target)}'s API answered ${answered} to ${request}; check ${target.urlVariable} and ${target.tokenVariable}`,
    status === 429 || status === 408,
  );
}

const title = (target: Target) => (target.surface === 'discord' ? 'Discord' : 'Slack');

const TLS_CODES = /CERT|SSL|TLS|ALTNAME|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/;

/** A network failure (from fetch, undici, node:net, discord.js or the Slack WebClient) in one line. */
function explain(
  target: Target,
  error: unknown,
  url: string | undefined,
  timeoutMs?: number,
): SurfaceStartError {
  const host = hostOf(url) ?? 'the API';
  const code = networkCode(error);
  const line = (text: string, retryable = true) =>
    new SurfaceStartError(target.surface, `${target.surface}: ${text}`, retryable, { cause: error });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || code === 'EAI_FAIL') {
    return line(
      `cannot resolve ${hostOf(url, false) ?? host} (DNS lookup failed, ${code}): check this machine's network and DNS, and ${target.urlVariable}`,
    );
  }
  if (code === 'ECONNREFUSED') {
    return line(
      `connection to ${host} refused (ECONNREFUSED): nothing listens there; check ${target.urlVariable} and any proxy or firewall`,
    );
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET') {
    return line(
      `connection to ${host} was cut (${code}): check the network, proxy or firewall between this machine and ${host}`,
    );
  }
  if (
    code === 'ETIMEDOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'TimeoutError' ||
    code === 'AbortError' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH'
  ) {
    const why = code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ? `unreachable (${code})` : 'no answer';
    return line(
      `${host}: ${why}${why === 'no answer' ? ` within ${Math.round((timeoutMs ?? CHECK_TIMEOUT_MS) / 1000)} s` : ''}: check the network, proxy or firewall, and ${target.urlVariable}`,
    );
  }
  if (code && TLS_CODES.test(code)) {
    return line(
      `TLS to ${host} failed (${code}): check the system clock, and a proxy that intercepts TLS (NODE_EXTRA_CA_CERTS)`,
    );
  }
  return line(
    `cannot reach ${host}: ${deepestMessage(error)}${code ? ` (${code})` : ''}; check ${target.urlVariable}`,
  );
}

/** The first error code along `cause` / `original` (the Slack WebClient's wrapper) chains. */
function networkCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; current && depth < 6; depth++) {
    const e = current as {
      code?: unknown;
      name?: unknown;
      cause?: unknown;
      original?: unknown;
      errors?: unknown;
    };
    if (
      typeof e.code === 'string' &&
      /^(E[A-Z]+|UND_ERR_[A-Z_]+|[A-Z_]*CERT[A-Z_]*|ERR_TLS[A-Z_]*|ERR_SSL[A-Z_]*)$/.test(e.code)
    )
      return e.code;
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return e.name;
    // AggregateError from happy-eyeballs connects (IPv4 + IPv6): the first one's code.
    if (Array.isArray(e.errors) && e.errors.length > 0) {
      const inner = networkCode(e.errors[0]);
      if (inner) return inner;
    }
    current = e.cause ?? e.original;
  }
  return undefined;
}

/** `fetch failed` says nothing: the innermost cause's message does (`bad port`, …). */
function deepestMessage(error: unknown): string {
  let current: unknown = error;
  let message = error instanceof Error ? error.message : String(error);
  for (let depth = 0; current instanceof Error && depth < 6; depth++) {
    message = current.message || message;
    current = current.cause;
  }
  return message;
}

function hostOf(url: string | undefined, withPort = true): string | undefined {
  if (!url) return undefined;
  try {
    const parsed = new URL(url);
    return withPort ? parsed.host : parsed.hostname;
  } catch {
    return undefined;
  }
}

/**
 * Anything a surface threw at start, as one line. Errors from the checks above pass through;
 * discord.js (`TokenInvalid`, `HTTPError`, `DiscordAPIError`), the Slack WebClient and plain
 * network errors are named the same way the checks name them.
 */
export function explainStartFailure(
  surface: SurfaceName,
  error: unknown,
  context: { apiUrl?: string | null; tokenVariable?: string } = {},
): SurfaceStartError {
  if (error instanceof SurfaceStartError) return error;
  // A ConfigError (a refused Slack token, a playground bound beyond loopback without its secret)
  // is already one line, and retrying does not mend a configuration.
  if (error instanceof AtelierError && error.code === 'CONFIG') {
    return new SurfaceStartError(surface, error.message, false, { cause: error });
  }
  if (surface === 'playground') {
    const code = networkCode(error);
    const message = error instanceof Error ? error.message : String(error);
    return new SurfaceStartError(
      'playground',
      code === 'EADDRINUSE'
        ? `playground: the port is taken (${message}); stop what uses it or set PLAYGROUND_PORT`
        : `playground: cannot start: ${message}`,
      true,
      { cause: error },
    );
  }
  const target = surface === 'discord' ? DISCORD : slackTarget(context.tokenVariable ?? 'SLACK_BOT_TOKEN');
  const base = context.apiUrl ?? (surface === 'discord' ? DEFAULT_DISCORD_API : DEFAULT_SLACK_API);
  const e = error as {
    code?: unknown;
    status?: unknown;
    statusCode?: unknown;
    url?: unknown;
    method?: unknown;
    data?: { error?: unknown };
    message?: unknown;
    key?: unknown;
  };
  if (e?.code === 'TokenInvalid') return httpFailure(target, 401, 'Unauthorized', 'login');
  if (surface === 'slack' && typeof e?.data?.error === 'string') {
    const variable = typeof e.key === 'string' && e.key.startsWith('SLACK_') ? e.key : target.tokenVariable;
    return slackRefusal(slackTarget(variable), e.data.error, 'a call');
  }
  const status =
    typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  if (status !== undefined && status >= 400) {
    const request = `${typeof e.method === 'string' ? `${e.method.toUpperCase()} ` : ''}${typeof e.url === 'string' ? e.url : base}`;
    return httpFailure(
      target,
      status,
      typeof e.message === 'string' && e.message.length < 60 ? e.message : '',
      request,
    );
  }
  return explain(target, error, typeof e?.url === 'string' ? e.url : base);
}
