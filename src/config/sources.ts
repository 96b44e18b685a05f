/**
 * Layers of raw settings (default file, override file, environment) merged into one tree, with
 * the origin of every value remembered, so an error can say "(from env ATELIER_QUEUE__CONCURRENCY)"
 * or "(from override file atelier.yaml:12)" instead of leaving the operator to guess.
 */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { ConfigError } from '../errors.js';

export type ConfigSource =
  | { kind: 'default file' | 'override file'; file: string; line?: number }
  | { kind: 'env' | '.env'; name: string };

export function describeSource(source: ConfigSource): string {
  if ('name' in source) return `${source.kind} ${source.name}`;
  return `${source.kind} ${source.file}${source.line === undefined ? '' : `:${source.line}`}`;
}

export type ConfigPath = readonly (string | number)[];

/** "generation.aspect.allowed[2]" */
export function formatPath(path: ConfigPath): string {
  return path
    .map((segment, index) =>
      typeof segment === 'number' ? `[${segment}]` : index === 0 ? segment : `.${segment}`,
    )
    .join('');
}

const pathKey = (path: ConfigPath) => path.join('\u0000');

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Own property even for "__proto__", so a hostile key is reported as unknown, never applied. */
function defineValue(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export class ConfigLayers {
  readonly value: Record<string, unknown> = {};
  readonly #sources = new Map<string, ConfigSource>();

  /** Deep-merges `tree`: mappings merge key by key, everything else (lists too) replaces. */
  merge(
    tree: Record<string, unknown>,
    sourceOf: (path: ConfigPath) => ConfigSource,
    path: string[] = [],
  ): void {
    for (const [key, value] of Object.entries(tree)) {
      const target = this.#containerAt(path);
      const current = Object.hasOwn(target, key) ? target[key] : undefined;
      if (isPlainObject(value) && isPlainObject(current)) {
        this.merge(value, sourceOf, [...path, key]);
      } else {
        this.set([...path, key], value, sourceOf([...path, key]));
      }
    }
  }

  set(path: readonly string[], value: unknown, source: ConfigSource): void {
    const parent = this.#containerAt(path.slice(0, -1));
    defineValue(parent, path[path.length - 1]!, value);
    const prefix = pathKey(path);
    for (const key of [...this.#sources.keys()]) {
      if (key.startsWith(`${prefix}\u0000`)) this.#sources.delete(key);
    }
    this.#sources.set(prefix, source);
  }

  /** The source of the value at `path`, or of the nearest enclosing value that was set whole. */
  sourceOf(path: ConfigPath): ConfigSource | undefined {
    for (let length = path.length; length > 0; length--) {
      const source = this.#sources.get(pathKey(path.slice(0, length)));
      if (source) return source;
    }
    return undefined;
  }

  /** The raw value at `path` as written by the operator, before any parsing. */
  rawAt(path: ConfigPath): unknown {
    let node: unknown = this.value;
    for (const segment of path) {
      if (typeof node !== 'object' || node === null || !Object.hasOwn(node, segment)) return undefined;
      node = (node as Record<string | number, unknown>)[segment];
    }
    return node;
  }

  /** Walks to the mapping at `path`, replacing a scalar in the way (a later layer wins). */
  #containerAt(path: readonly string[]): Record<string, unknown> {
    let node = this.value;
    for (const segment of path) {
      const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
      if (isPlainObject(next)) {
        node = next;
      } else {
        const created: Record<string, unknown> = {};
        defineValue(node, segment, created);
        node = created;
      }
    }
    return node;
  }
}

export interface YamlFile {
  tree: Record<string, unknown>;
  /** 1-based line of each key, by path. */
  lineOf(path: ConfigPath): number | undefined;
}

/** How many copies YAML aliases may make in a settings file; a real one needs a handful. */
const MAX_ALIAS_COUNT = 100;

/**
 * Reads a YAML settings file. Integers are parsed as bigints so that an unquoted 19-digit
 * Discord id keeps every digit; the schema turns safe integers back into numbers.
 */
export function readYamlFile(file: string, shownAs: string, configKey: string): YamlFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? `there is no file at ${file}`
        : String((error as Error).message);
    throw new ConfigError(
      configKey,
      `config: ${configKey} = ${JSON.stringify(shownAs)} is not allowed: expected a readable YAML file (${reason})`,
    );
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { intAsBigInt: true, lineCounter, uniqueKeys: true });
  const firstError = document.errors[0];
  if (firstError) {
    const line = firstError.linePos?.[0]?.line;
    const summary = firstError.message.split('\n')[0];
    throw new ConfigError(
      configKey,
      `config: ${shownAs}${line ? `:${line}` : ''} is not valid YAML: ${summary}`,
    );
  }
  let tree: unknown;
  try {
    tree = document.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (error) {
    // The yaml package refuses to expand aliases past maxAliasCount (a "billion laughs" file).
    const summary = String((error as Error).message).split('\n')[0];
    throw new ConfigError(
      configKey,
      /alias/i.test(summary)
        ? `config: ${shownAs} is not allowed: its aliases (*name) expand to more than ${MAX_ALIAS_COUNT} copies, as an alias bomb does; write the values out instead`
        : `config: ${shownAs} is not valid YAML: ${summary}`,
    );
  }
  if (!isPlainObject(tree)) {
    throw new ConfigError(
      configKey,
      `config: ${shownAs} is not allowed: expected a YAML mapping of sections (e.g. "queue:") at the top level`,
    );
  }

  const lines = new Map<string, number>();
  const walk = (node: YamlNode | null | undefined, path: string[]) => {
    if (!isMap(node)) return;
    for (const pair of node.items) {
      if (!isScalar(pair.key)) continue;
      const keyPath = [...path, String(pair.key.value)];
      const offset = pair.key.range?.[0];
      if (offset !== undefined) lines.set(pathKey(keyPath), lineCounter.linePos(offset).line);
      walk(pair.value as YamlNode | null, keyPath);
    }
  };
  walk(document.contents as YamlNode | null, []);

  return {
    tree,
    lineOf(path) {
      for (let length = path.length; length > 0; length--) {
        const line = lines.get(pathKey(path.slice(0, length)));
        if (line !== undefined) return line;
      }
      return undefined;
    },
  };
}
