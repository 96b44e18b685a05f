/**
 * Bolt's and the Slack SDK's log lines into our pino logger. Their `info` chatter (connection
 * steps, retries) goes to debug so the operator's log keeps one line per thing that matters;
 * warnings and errors pass through. Secrets are scrubbed by the logger itself.
 */
import { type Logger as BoltLogger, LogLevel } from '@slack/bolt';
import type { Logger } from '../../src/log.js';

export function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.DEBUG;
  let name = 'bolt';
  const line = (parts: unknown[]) =>
    parts.map((part) => (typeof part === 'string' ? part : String(part))).join(' ');
  const errorOf = (parts: unknown[]) => parts.find((part) => part instanceof Error);
  return {
    debug: (...parts: unknown[]) => logger.debug({ library: name }, line(parts)),
    info: (...parts: unknown[]) => logger.debug({ library: name }, line(parts)),
    warn: (...parts: unknown[]) => logger.warn({ library: name, err: errorOf(parts) }, line(parts)),
    error: (...parts: unknown[]) => logger.error({ library: name, err: errorOf(parts) }, line(parts)),
    // pino's own level decides what is written; Bolt only asks.
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: (next: string) => {
      name = next;
    },
  };
}
