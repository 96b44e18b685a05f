/**
 * Settings from environment variables.
 *
 * Scheme: `ATELIER_<SECTION>__<KEY>[__<KEY>…]`. "__" separates levels and "_" inside a level marks
 * a capital: ATELIER_QUEUE__MAX_QUEUED_PER_USER → queue.maxQueuedPerUser. Values are read as YAML
 * scalars where they look like numbers, booleans, null or a [flow, list]; anything else is text,
 * and list settings also take comma-separated text. Empty variables are ignored (as if unset).
 *
 * Operator names that deployment docs and container images already use, applied last:
 * ATELIER_DATA_DIR, PLAYGROUND_PORT, SLACK_PORT, DISCORD_API_URL, SLACK_API_URL.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEnv } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';

export type Environment = Readonly<Record<string, string | undefined>>;

export const OPERATOR_VARIABLES: Readonly<Record<string, readonly string[]>> = {
  ATELIER_DATA_DIR: ['dataDir'],
  PLAYGROUND_PORT: ['playground', 'port'],
  SLACK_PORT: ['slack', 'port'],
  DISCORD_API_URL: ['discord', 'apiUrl'],
  SLACK_API_URL: ['slack', 'apiUrl'],
};

const PREFIX = 'ATELIER_';
const LEVEL_SEPARATOR = '__';

export interface EnvSetting {
  name: string;
  path: string[];
  value: unknown;
}

/** QUEUED_PER_USER → queuedPerUser */
function camelCase(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

/** True for ATELIER_… variables that name a setting (they contain "__"). */
export function isSettingVariable(name: string): boolean {
  return name.startsWith(PREFIX) && name.includes(LEVEL_SEPARATOR, PREFIX.length);
}

export function settingPath(name: string): string[] {
  const segments = name.slice(PREFIX.length).split(LEVEL_SEPARATOR);
  if (segments.some((segment) => !/^[A-Za-z0-9]+(_[A-Za-z0-9]+)*$/.test(segment))) {
    throw new ConfigError(
      name,
      `config: ${name} is not allowed: expected a name like ATELIER_QUEUE__MAX_QUEUED_PER_USER ("__" between levels, single "_" inside one)`,
    );
  }
  return segments.map(camelCase);
}

const LOOKS_LIKE_YAML_SCALAR =
  /^(?:[-+]?(?:\d[\d_]*)?\.?\d+(?:[eE][-+]?\d+)?|true|false|null|~|\[.*\]|\{.*\})$/s;

export function parseEnvValue(raw: string): unknown {
  const text = raw.trim();
  if (!LOOKS_LIKE_YAML_SCALAR.test(text)) return text;
  try {
    return parseYaml(text, { intAsBigInt: true });
  } catch {
    return text;
  }
}

/** Every setting the environment carries, in the order they apply (scheme first, operator names last). */
export function settingsFromEnv(env: Environment): EnvSetting[] {
  const present = (name: string) => {
    const value = env[name];
    return value !== undefined && value.trim() !== '';
  };
  const scheme = Object.keys(env)
    .filter((name) => isSettingVariable(name) && present(name))
    .sort()
    .map((name) => ({ name, path: settingPath(name), value: parseEnvValue(env[name]!) }));
  const operator = Object.entries(OPERATOR_VARIABLES)
    .filter(([name]) => present(name))
    .map(([name, path]) => ({ name, path: [...path], value: parseEnvValue(env[name]!) }));
  return [...scheme, ...operator];
}

export interface DotEnv {
  file: string;
  values: Record<string, string>;
}

/** The `.env` file in `cwd`, parsed with Node's own parser (no dependency), or undefined if absent. */
export function readDotEnv(cwd: string): DotEnv | undefined {
  const file = join(cwd, '.env');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError('.env', `config: ${file} could not be read: ${(error as Error).message}`);
  }
  return { file, values: parseEnv(text) as Record<string, string> };
}
