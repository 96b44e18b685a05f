import { randomBytes } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** Slack-style ids: a type letter (U user, C channel, D DM, B bot, T team, A app, F file) + 10 chars. */
export function slackId(prefix: 'U' | 'C' | 'D' | 'B' | 'T' | 'A' | 'F' | 'V' | 'E'): string {
  const bytes = randomBytes(10);
  return prefix + [...bytes].map((b) => ALPHABET[b % ALPHABET.length]).join('');
}

let lastMicros = 0;

/** Message timestamps ("1700000000.123456"): unique and increasing, as Slack guarantees per channel. */
export function messageTs(now = Date.now()): string {
  lastMicros = Math.max(lastMicros + 1, now * 1000);
  return `${Math.floor(lastMicros / 1_000_000)}.${String(lastMicros % 1_000_000).padStart(6, '0')}`;
}

export function tsToMillis(ts: string): number {
  return Number(ts) * 1000;
}

/** trigger_ids are "<digits>.<digits>.<hex>", valid for 3 seconds. */
export function triggerId(): string {
  return `${Date.now()}.${Math.floor(Math.random() * 1e12)}.${randomBytes(16).toString('hex')}`;
}
