/**
 * Field builders for the settings schema. Each one carries a single human phrase saying what is
 * allowed ("an integer from 1 to 4"); zod reports that phrase for every way a value can be wrong,
 * so a config error always reads "<key> = <value> is not allowed: expected <phrase>".
 *
 * Values arrive from YAML parsed with `intAsBigInt` (so an unquoted 19-digit Discord id keeps
 * every digit) and from environment strings, hence the preprocessing below.
 */
import { z } from 'zod';

/** Integers from YAML are bigints; numbers within the safe range become plain numbers. */
function toNumber(value: unknown): unknown {
  if (
    typeof value === 'bigint' &&
    value >= BigInt(Number.MIN_SAFE_INTEGER) &&
    value <= BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    return Number(value);
  }
  return value;
}

/** A number where text is expected (an id, a host) is read as its digits. */
function numberAsText(value: unknown): unknown {
  return typeof value === 'bigint' || (typeof value === 'number' && Number.isFinite(value))
    ? String(value)
    : value;
}

function rangePhrase(min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return `from ${min} to ${max}`;
  if (min !== undefined) return `≥ ${min}`;
  if (max !== undefined) return `≤ ${max}`;
  return '';
}

export function integer(min?: number, max?: number) {
  const allowed = `an integer ${rangePhrase(min, max)}`.trim();
  let schema = z.int({ error: allowed });
  if (min !== undefined) schema = schema.min(min, { error: allowed });
  if (max !== undefined) schema = schema.max(max, { error: allowed });
  return z.preprocess(toNumber, schema);
}

export function decimal(min: number, max: number, options: { exclusiveMin?: boolean } = {}) {
  const allowed = options.exclusiveMin ? `a number > ${min} and ≤ ${max}` : `a number from ${min} to ${max}`;
  const base = z.number({ error: allowed });
  const bounded = options.exclusiveMin ? base.gt(min, { error: allowed }) : base.min(min, { error: allowed });
  return z.preprocess(toNumber, bounded.max(max, { error: allowed }));
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `one of ${values.join(', ')}` });
}

/** A list picked from fixed choices, at least one. */
export function choiceList<const T extends readonly [string, ...string[]]>(values: T) {
  const allowed = `a non-empty list of ${values.join(', ')} (in an environment variable: comma-separated)`;
  const item = z.enum(values, { error: `one of ${values.join(', ')}` });
  return z.preprocess(splitList, z.array(item, { error: allowed }).min(1, { error: allowed }));
}

export function flag() {
  return z.boolean({ error: 'true or false' });
}

export function text(options: { nonEmpty?: boolean } = {}) {
  const allowed = options.nonEmpty ? 'non-empty text' : 'text';
  const base = z.string({ error: allowed });
  return z.preprocess(numberAsText, options.nonEmpty ? base.trim().min(1, { error: allowed }) : base);
}

/** Text or null; `nullMeans` completes the phrase, e.g. "a path, or null for the bundled model". */
export function optionalText(what: string, nullMeans: string) {
  return z.preprocess(numberAsText, z.string({ error: `${what}, or null ${nullMeans}` }).nullable());
}

/** Comma-separated text is accepted too, so an environment variable can carry a list. */
function splitList(value: unknown): unknown {
  if (typeof value === 'bigint' || typeof value === 'number') return [value];
  if (typeof value !== 'string') return value;
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

export function textList() {
  const allowed = 'a list of text (in an environment variable: comma-separated)';
  const item = z.preprocess(numberAsText, z.string({ error: allowed }).trim().min(1, { error: allowed }));
  return z.preprocess(splitList, z.array(item, { error: allowed }));
}

/**
 * Platform ids (Discord snowflakes, Slack user ids). An unquoted snowflake is a 64-bit integer in
 * YAML; it arrives as a bigint and is kept exactly as its decimal digits.
 */
export function idList() {
  const allowed = 'a list of ids (in an environment variable: comma-separated)';
  const id = z.preprocess(numberAsText, z.string({ error: allowed }).trim().min(1, { error: allowed }));
  return z.preprocess(splitList, z.array(id, { error: allowed }));
}

export function optionalId(nullMeans: string) {
  const allowed = `an id, or null ${nullMeans}`;
  return z.preprocess(
    numberAsText,
    z.string({ error: allowed }).trim().min(1, { error: allowed }).nullable(),
  );
}

export function port() {
  const allowed = 'a port number from 0 to 65535 (0 picks any free port)';
  return z.preprocess(
    toNumber,
    z.int({ error: allowed }).min(0, { error: allowed }).max(65535, { error: allowed }),
  );
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

export function httpUrl() {
  const allowed = 'an http(s) URL';
  return z.string({ error: allowed }).refine(isHttpUrl, { error: allowed });
}

export function optionalHttpUrl(nullMeans: string) {
  const allowed = `an http(s) URL, or null ${nullMeans}`;
  return z.string({ error: allowed }).refine(isHttpUrl, { error: allowed }).nullable();
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** "10 MiB", "25MB" or a plain byte count, so platform limits can be written as documented. */
function parseSize(value: unknown): unknown {
  if (typeof value !== 'string') return toNumber(value);
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!match) return value;
  const factor = SIZE_UNITS[(match[2] || 'b').toLowerCase()];
  return factor === undefined ? value : Math.round(Number(match[1]) * factor);
}

export function byteSize(min = 1024) {
  const allowed = `a size of at least ${min} bytes, as a number or with a unit (e.g. 10 MiB, 25 MB)`;
  return z.preprocess(parseSize, z.int({ error: allowed }).min(min, { error: allowed }));
}
