/**
 * Job ids: short, sortable by creation time, and safe in URLs, file names and chat custom ids
 * (Discord `custom_id` ≤ 100 chars, Slack `action_id`/`value` ≤ 255/2000).
 *
 * Layout: 9 characters of milliseconds since the Unix epoch + 4 characters of randomness, in
 * Crockford's base32 lowercased (`0-9a-z` without i, l, o, u). That alphabet is in ASCII order,
 * so comparing ids as strings orders them by time; 9 digits cover 2^45 ms (until the year 3084).
 * Ids made in the same millisecond by one process increase (the random part is incremented), so
 * they sort in creation order too.
 */
import { randomInt } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const TIME_DIGITS = 9;
const RANDOM_DIGITS = 4;
const RANDOM_SPACE = 32 ** RANDOM_DIGITS;
const JOB_ID_PATTERN = new RegExp(`^[${ALPHABET}]{${TIME_DIGITS + RANDOM_DIGITS}}$`);

// Per-process state so ids minted in one millisecond stay strictly increasing.
let lastTime = -1;
let lastRandom = 0;

function encode(value: number, digits: number): string {
  let out = '';
  let rest = value;
  for (let i = 0; i < digits; i++) {
    out = ALPHABET[rest % 32] + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

/** A new job id for a job created at `now` (ms since the epoch). */
export function newJobId(now: number = Date.now()): string {
  let time = Math.max(0, Math.floor(now));
  if (time <= lastTime) {
    time = lastTime;
    lastRandom += 1;
    if (lastRandom >= RANDOM_SPACE) {
      // More than a million ids in one millisecond: borrow the next millisecond.
      time += 1;
      lastRandom = randomInt(RANDOM_SPACE / 2);
    }
  } else {
    // Half the space keeps room to increment within the millisecond.
    lastRandom = randomInt(RANDOM_SPACE / 2);
  }
  lastTime = time;
  return encode(time, TIME_DIGITS) + encode(lastRandom, RANDOM_DIGITS);
}

/** Whether `value` has the shape of a job id (it may still name no job). */
export function isJobId(value: string): boolean {
  return JOB_ID_PATTERN.test(value);
}

/** The creation time (ms since the epoch) encoded in a job id. */
export function jobIdTime(id: string): number {
  let time = 0;
  for (let i = 0; i < TIME_DIGITS; i++) time = time * 32 + ALPHABET.indexOf(id[i]!);
  return time;
}
