/**
 * Secrets come only from the environment or `.env`: a YAML file gets copied, committed and pasted
 * into issues, an environment variable much less often. The object holding them masks itself
 * when serialized or inspected, so logging a whole config cannot leak a token.
 */
import { inspect } from 'node:util';
import { ConfigError } from '../errors.js';
import type { ConfigPath } from './sources.js';

export const SECRET_VARIABLES = {
  discordToken: 'DISCORD_TOKEN',
  slackBotToken: 'SLACK_BOT_TOKEN',
  slackSigningSecret: 'SLACK_SIGNING_SECRET',
  slackAppToken: 'SLACK_APP_TOKEN',
  hfToken: 'HF_TOKEN',
  playgroundSecret: 'PLAYGROUND_SECRET',
  /** The cluster's Redis (`redis://[user:password@]host:port/db`): it may carry a password. */
  redisUrl: 'REDIS_URL',
} as const;

export type SecretName = keyof typeof SECRET_VARIABLES;

export type Secrets = Readonly<Partial<Record<SecretName, string>>>;

const VISIBLE_PREFIX = 4;
const SHORTEST_WITH_PREFIX = 16;

/**
 * "xoxb…(57 chars)": enough to tell which token is set (the prefix names its kind) and to compare
 * lengths, never enough to use it. Short values show nothing at all.
 */
export function maskSecret(value: string | undefined): string {
  if (value === undefined || value === '') return '(not set)';
  if (value.length < SHORTEST_WITH_PREFIX) return `****(${value.length} chars)`;
  return `${value.slice(0, VISIBLE_PREFIX)}…(${value.length} chars)`;
}

/** Each secret's variable name with its masked value, for `atelier doctor`. */
export function maskedSecrets(secrets: Secrets): Record<string, string> {
  const shown: Record<string, string> = {};
  for (const [name, variable] of Object.entries(SECRET_VARIABLES) as [SecretName, string][]) {
    shown[variable] = maskSecret(secrets[name]);
  }
  return shown;
}

/** Slack's token kinds, so a bot token pasted into SLACK_APP_TOKEN (or back) fails at start. */
const EXPECTED_PREFIX: Partial<Record<SecretName, { prefix: string; what: string }>> = {
  slackBotToken: { prefix: 'xoxb-', what: 'a bot token starting with xoxb-' },
  slackAppToken: { prefix: 'xapp-', what: 'an app-level token starting with xapp-' },
};

/**
 * Reads the secrets. `env` is the merged environment; `fromDotEnv` names the variables that came
 * from `.env`, for the error message.
 */
export function readSecrets(
  env: Readonly<Record<string, string | undefined>>,
  fromDotEnv: ReadonlySet<string>,
): Secrets {
  const values: Partial<Record<SecretName, string>> = {};
  for (const [name, variable] of Object.entries(SECRET_VARIABLES) as [SecretName, string][]) {
    const value = env[variable]?.trim();
    if (!value) continue;
    const expected = EXPECTED_PREFIX[name];
    if (expected && /^x(oxb|app)-/.test(value) && !value.startsWith(expected.prefix)) {
      const origin = fromDotEnv.has(variable) ? '.env' : 'env';
      throw new ConfigError(
        variable,
        `config: ${variable} = ${maskSecret(value)} is not allowed: expected ${expected.what} (from ${origin} ${variable})`,
      );
    }
    values[name] = value;
  }
  return maskedWhenShown(values);
}

function maskedWhenShown(values: Partial<Record<SecretName, string>>): Secrets {
  const masked = () =>
    Object.fromEntries(Object.entries(values).map(([name, value]) => [name, maskSecret(value)]));
  Object.defineProperty(values, 'toJSON', { value: masked, enumerable: false });
  Object.defineProperty(values, inspect.custom, { value: masked, enumerable: false });
  return Object.freeze(values);
}

/** Where each secret would sit if someone wrote it in YAML, mapped to the variable to use instead. */
const SECRET_PATHS: Record<string, string> = {
  'discord.token': SECRET_VARIABLES.discordToken,
  'slack.token': SECRET_VARIABLES.slackBotToken,
  'slack.botToken': SECRET_VARIABLES.slackBotToken,
  'slack.signingSecret': SECRET_VARIABLES.slackSigningSecret,
  'slack.appToken': SECRET_VARIABLES.slackAppToken,
  'models.hfToken': SECRET_VARIABLES.hfToken,
  'models.hub.token': SECRET_VARIABLES.hfToken,
  'hf.token': SECRET_VARIABLES.hfToken,
  'cluster.redisUrl': SECRET_VARIABLES.redisUrl,
  'cluster.redis.password': SECRET_VARIABLES.redisUrl,
};

const SECRET_LIKE_KEY = /token|secret|password|passwd|credential|api_?key|redis_?url/i;

/** The first key in a settings tree that looks like a secret, with the variable it belongs in. */
export function findSecretKey(
  tree: unknown,
  path: string[] = [],
): { path: ConfigPath; variable?: string } | undefined {
  if (typeof tree !== 'object' || tree === null || Array.isArray(tree)) return undefined;
  for (const [key, value] of Object.entries(tree)) {
    const keyPath = [...path, key];
    if (SECRET_LIKE_KEY.test(key)) return { path: keyPath, variable: SECRET_PATHS[keyPath.join('.')] };
    const nested = findSecretKey(value, keyPath);
    if (nested) return nested;
  }
  return undefined;
}

export function secretNotAllowedMessage(key: string, variable: string | undefined, origin: string): string {
  const where = variable
    ? `set ${variable} in the environment or in .env`
    : `secrets are read only from the environment or .env (${Object.values(SECRET_VARIABLES).join(', ')})`;
  return `config: ${key} looks like a secret and is not allowed in configuration: ${where} (from ${origin})`;
}
