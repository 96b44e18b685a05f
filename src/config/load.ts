/**
 * Loads the configuration: config/default.yaml, then the file named in ATELIER_CONFIG, then the
 * environment (see env.ts for the variable scheme), validated against schema.ts. Any problem
 * throws one ConfigError whose message names the key, the value, what is allowed and where the
 * value came from. Pure with respect to its inputs: it reads files, never writes process.env.
 */
import { homedir } from 'node:os';
import { isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import { type Environment, readDotEnv, settingsFromEnv } from './env.js';
import { configErrorFromIssues } from './problems.js';
import { type AtelierSettings, settingsSchema } from './schema.js';
import { findSecretKey, readSecrets, type Secrets, secretNotAllowedMessage } from './secrets.js';
import {
  ConfigLayers,
  type ConfigSource,
  describeSource,
  formatPath,
  readYamlFile,
  type YamlFile,
} from './sources.js';

export const DEFAULTS_FILE = fileURLToPath(new URL('../../config/default.yaml', import.meta.url));

export interface LoadConfigOptions {
  /** Environment variables to read. @default process.env */
  env?: Environment;
  /** Where relative paths, ATELIER_CONFIG and `.env` are resolved. @default process.cwd() */
  cwd?: string;
  /** The file holding every default. @default config/default.yaml of this package */
  defaultsFile?: string;
}

export interface AtelierConfig extends AtelierSettings {
  /** Masked when serialized or inspected. */
  secrets: Secrets;
  /** The files that were read, for `atelier doctor`. */
  files: { defaults: string; override?: string; dotenv?: string };
}

/** Absolute paths for the settings that name folders; "~/" is the user's home. */
function resolvePath(path: string, cwd: string, env: Environment): string {
  const home = env.HOME ?? env.USERPROFILE ?? homedir();
  const expanded = path === '~' ? home : path.startsWith('~/') ? resolve(home, path.slice(2)) : path;
  return resolve(cwd, expanded);
}

function shownFile(file: string, cwd: string): string {
  const fromCwd = relative(cwd, file);
  return fromCwd && !fromCwd.startsWith('..') && !isAbsolute(fromCwd) ? fromCwd : file;
}

function applyFile(
  layers: ConfigLayers,
  yaml: YamlFile,
  kind: 'default file' | 'override file',
  file: string,
): void {
  const sourceOf = (path: readonly (string | number)[]): ConfigSource => ({
    kind,
    file,
    line: yaml.lineOf(path),
  });
  const secret = findSecretKey(yaml.tree);
  if (secret) {
    const key = formatPath(secret.path);
    throw new ConfigError(
      key,
      secretNotAllowedMessage(key, secret.variable, describeSource(sourceOf(secret.path))),
    );
  }
  layers.merge(yaml.tree, sourceOf);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

export function loadConfig(options: LoadConfigOptions = {}): AtelierConfig {
  const cwd = resolve(options.cwd ?? process.cwd());
  const processEnv = options.env ?? process.env;
  const dotenv = readDotEnv(cwd);
  // Real environment variables win over .env; empty ones count as unset.
  const env: Record<string, string | undefined> = { ...dotenv?.values };
  for (const [name, value] of Object.entries(processEnv)) {
    if (value !== undefined && value.trim() !== '') env[name] = value;
  }
  const fromDotEnv = new Set(Object.keys(dotenv?.values ?? {}).filter((name) => !processEnv[name]?.trim()));

  const layers = new ConfigLayers();
  const defaultsFile = resolve(options.defaultsFile ?? DEFAULTS_FILE);
  const defaultsShown = shownFile(defaultsFile, cwd);
  applyFile(layers, readYamlFile(defaultsFile, defaultsShown, 'defaults'), 'default file', defaultsShown);

  let overrideFile: string | undefined;
  const named = env.ATELIER_CONFIG?.trim();
  if (named) {
    overrideFile = resolvePath(named, cwd, env);
    const shown = shownFile(overrideFile, cwd);
    applyFile(layers, readYamlFile(overrideFile, named, 'ATELIER_CONFIG'), 'override file', shown);
  }

  for (const setting of settingsFromEnv(env)) {
    const source: ConfigSource = { kind: fromDotEnv.has(setting.name) ? '.env' : 'env', name: setting.name };
    const secret = findSecretKey(
      setting.path.reduceRight<unknown>((value, key) => ({ [key]: value }), setting.value),
    );
    if (secret) {
      const key = formatPath(secret.path);
      throw new ConfigError(key, secretNotAllowedMessage(key, secret.variable, describeSource(source)));
    }
    layers.set(setting.path, setting.value, source);
  }

  const parsed = settingsSchema.safeParse(layers.value, { reportInput: true });
  if (!parsed.success) throw configErrorFromIssues(parsed.error.issues, layers, defaultsShown);

  const settings = parsed.data;
  settings.dataDir = resolvePath(settings.dataDir, cwd, env);
  if (settings.models.dir !== null) settings.models.dir = resolvePath(settings.models.dir, cwd, env);
  for (const model of Object.values(settings.models.list)) {
    if (model.dir) model.dir = resolvePath(model.dir, cwd, env);
  }
  if (settings.loras.dir !== null) settings.loras.dir = resolvePath(settings.loras.dir, cwd, env);
  if (settings.models.graphCacheDir !== null)
    settings.models.graphCacheDir = resolvePath(settings.models.graphCacheDir, cwd, env);

  const config: AtelierConfig = {
    ...settings,
    secrets: readSecrets(env, fromDotEnv),
    files: {
      defaults: defaultsFile,
      ...(overrideFile && { override: overrideFile }),
      ...(dotenv && { dotenv: dotenv.file }),
    },
  };
  return deepFreeze(config);
}
