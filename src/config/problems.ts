/**
 * Turns schema issues into the one line an operator reads at start:
 *   config: queue.concurrency = "abc" is not allowed: expected an integer from 1 to 64 (from env ATELIER_QUEUE__CONCURRENCY)
 */
import { z } from 'zod';
import { nearest } from '../edit-distance.js';
import { ConfigError } from '../errors.js';
import { settingsSchema } from './schema.js';
import { type ConfigLayers, type ConfigPath, describeSource, formatPath } from './sources.js';

const SHOWN_VALUE_LENGTH = 80;

function showValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  if (typeof value === 'bigint') return value.toString();
  const json =
    JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? Number(item) : item)) ??
    String(value);
  return json.length > SHOWN_VALUE_LENGTH ? `${json.slice(0, SHOWN_VALUE_LENGTH - 1)}…` : json;
}

/** The object schema at `path` (through preprocess pipes and nullables), to list its known keys. */
function sectionKeys(path: ConfigPath): string[] {
  let schema: z.ZodType = settingsSchema;
  for (const segment of path) {
    while (schema instanceof z.ZodPipe || schema instanceof z.ZodNullable) {
      schema = schema instanceof z.ZodPipe ? (schema.out as z.ZodType) : (schema.unwrap() as z.ZodType);
    }
    // A mapping of names the operator chooses (styles): every entry has the value's keys.
    if (schema instanceof z.ZodRecord) {
      schema = schema.valueType as z.ZodType;
      continue;
    }
    if (!(schema instanceof z.ZodObject)) return [];
    const next: unknown = schema.shape[String(segment)];
    if (!next) return [];
    schema = next as z.ZodType;
  }
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

/** Case and separators do not count: "max_queued_per_user" is maxQueuedPerUser, "FP8_weights" fp8-weights. */
const fold = (word: string) => word.toLowerCase().replace(/[_-]/g, '');

/** "max_queued_per_user" and "concurency" both find their key. */
function closestKey(unknown: string, known: string[]): string | undefined {
  const near = nearest(unknown, known, fold);
  return near && near.distance <= Math.max(1, Math.floor(near.candidate.length / 4))
    ? near.candidate
    : undefined;
}

/**
 * The allowed value a mistyped one was meant to be ("fp8_weights", "fp8-weigths" → fp8-weights).
 * Stricter than for keys: a value a quarter of its length away, so short words ("tpu") suggest
 * nothing rather than a different choice ("cpu").
 */
function closestValue(value: unknown, allowed: readonly unknown[]): string | undefined {
  if (typeof value !== 'string') return undefined;
  const choices = allowed.filter((choice): choice is string => typeof choice === 'string');
  const near = nearest(value, choices, fold);
  return near && !near.tied && near.distance <= Math.floor(fold(near.candidate).length / 4)
    ? near.candidate
    : undefined;
}

function describeIssue(
  issue: z.core.$ZodIssue,
  layers: ConfigLayers,
  defaultsFile: string,
): { key: string; line: string } {
  if (issue.code === 'unrecognized_keys') {
    const path = [...issue.path.map((segment) => segment as string | number), issue.keys[0]!];
    const key = formatPath(path);
    const source = layers.sourceOf(path);
    const known = sectionKeys(issue.path as ConfigPath);
    const suggestion = closestKey(issue.keys[0]!, known);
    const parent = formatPath(issue.path as ConfigPath);
    const hint = suggestion
      ? `did you mean ${formatPath([...(issue.path as ConfigPath), suggestion])}?`
      : `known keys${parent ? ` in ${parent}` : ''}: ${known.join(', ')}`;
    return {
      key,
      line: `config: ${key} is not a known setting (from ${source ? describeSource(source) : 'unknown source'}); ${hint}`,
    };
  }
  const path = issue.path as ConfigPath;
  const key = formatPath(path);
  // The operator's own text where it exists; inside a comma-separated env list, the parsed item.
  const value = layers.rawAt(path) ?? issue.input;
  const source = layers.sourceOf(path);
  const origin = source ? ` (from ${describeSource(source)})` : '';
  if (value === undefined) {
    // Only the defaults file promises every key, so a missing one is missing there.
    return {
      key,
      line: `config: ${key} is missing from default file ${defaultsFile}: expected ${issue.message}`,
    };
  }
  const suggestion = issue.code === 'invalid_value' ? closestValue(value, issue.values) : undefined;
  return {
    key,
    line: `config: ${key} = ${showValue(value)} is not allowed: expected ${issue.message}${origin}${suggestion ? `; did you mean ${suggestion}?` : ''}`,
  };
}

/** One ConfigError for the first problem; the count of the others is appended so none are hidden. */
export function configErrorFromIssues(
  issues: readonly z.core.$ZodIssue[],
  layers: ConfigLayers,
  defaultsFile: string,
): ConfigError {
  const { key, line } = describeIssue(issues[0]!, layers, defaultsFile);
  const others = issues.length - 1;
  return new ConfigError(
    key,
    others > 0 ? `${line} (+${others} more config problem${others === 1 ? '' : 's'})` : line,
  );
}
