import { describe, expect, it } from 'vitest';
import type { JobRecord } from '../../src/jobs/types.js';
import { childLogger, createLogger, logJobTransition, REDACTED, scrubSecrets } from '../../src/log.js';

/** A logger writing into an array of parsed lines (and the raw text, to look for leaks). */
function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const raw: string[] = [];
  const log = createLogger({ ...options, destination: { write: (line: string) => void raw.push(line) } });
  return { log, raw, lines: () => raw.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

const SLACK = 'xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx';
const DISCORD = 'MTExMTExMTExMTExMTExMTExMQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';

describe('createLogger() keeps secrets out', () => {
  it('redacts secret-bearing keys at any usual depth', () => {
    const { log, raw, lines } = capture();
    log.info(
      {
        token: 'plain-token-value',
        config: { secrets: { discordToken: 'a' }, slack: { signingSecret: 'signing-value' } },
        req: { headers: { authorization: 'Bot abc', 'x-slack-signature': 'v0=deadbeef', accept: 'json' } },
      },
      'request',
    );
    const [line] = lines();
    expect(line).toMatchObject({
      token: REDACTED,
      config: { secrets: REDACTED, slack: { signingSecret: REDACTED } },
      req: { headers: { authorization: REDACTED, 'x-slack-signature': REDACTED, accept: 'json' } },
    });
    expect(raw.join('')).not.toMatch(/plain-token-value|signing-value|deadbeef/);
  });

  it('removes configured secret values and token shapes from messages and errors', () => {
    const { log, raw } = capture({ secrets: ['my-signing-secret-value', undefined] });
    log.error(new Error(`login failed for ${DISCORD}`), `posting with ${SLACK} and my-signing-secret-value`);
    log.warn(
      { url: 'https://hf.co/x?token=hf_abcdefghijklmnopqrstuvwxyz' },
      'Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345',
    );
    const text = raw.join('');
    for (const secret of [
      DISCORD,
      SLACK,
      'my-signing-secret-value',
      'hf_abcdefghijklmnopqrstuvwxyz',
      'abcdefghijklmnopqrstuvwxyz012345',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain(REDACTED);
  });

  it('leaves ordinary words alone', () => {
    expect(scrubSecrets('Bot connected to 3 guilds; Bearer of good news')).toBe(
      'Bot connected to 3 guilds; Bearer of good news',
    );
  });

  it('writes one JSON object per line with a readable level and time', () => {
    const { log, raw } = capture({ level: 'debug' });
    log.debug('hello');
    expect(raw).toHaveLength(1);
    const line = JSON.parse(raw[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'debug', msg: 'hello' });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it('child loggers tag their component', () => {
    const { log, lines } = capture();
    childLogger(log, 'scheduler', { worker: 1 }).info('tick');
    expect(lines()[0]).toMatchObject({ component: 'scheduler', worker: 1, msg: 'tick' });
  });
});

describe('logJobTransition()', () => {
  const job: JobRecord = {
    id: 'j_01',
    spec: {
      kind: 'txt2img',
      requester: { platform: 'discord', userId: '42', displayName: 'Ada', teamId: 'g1' },
      params: {
        prompt: 'a secret prompt',
        negativePrompt: '',
        aspect: '16:9',
        width: 1344,
        height: 768,
        seed: 1,
        steps: 28,
        guidance: 4.5,
        count: 2,
        sampler: 'euler',
      },
      reply: { platform: 'discord', channelId: 'c1' },
    },
    state: 'queued',
    createdAt: 1_000,
    attempts: 0,
  };

  it('logs a start with the queue wait', () => {
    const { log, lines } = capture();
    logJobTransition(log, { ...job, state: 'running', startedAt: 4_000, attempts: 1 }, 'queued', 'running', {
      now: 4_000,
    });
    expect(lines()[0]).toMatchObject({
      level: 'info',
      event: 'job',
      jobId: 'j_01',
      from: 'queued',
      to: 'running',
      user: 'discord:42',
      team: 'g1',
      queueWaitMs: 3_000,
      attempts: 1,
      size: '1344x768',
      msg: 'job j_01 queued → running',
    });
    expect(lines()[0]).not.toHaveProperty('runMs');
  });

  it('logs a finish with queue wait and run time, and no prompt unless asked', () => {
    const { log, raw, lines } = capture();
    const done = { ...job, state: 'done' as const, startedAt: 4_000, finishedAt: 24_500, attempts: 1 };
    logJobTransition(log, done, 'running', 'done');
    expect(lines()[0]).toMatchObject({ queueWaitMs: 3_000, runMs: 20_500, to: 'done' });
    expect(raw.join('')).not.toContain('a secret prompt');
    logJobTransition(log, done, 'running', 'done', { includePrompt: true });
    expect(lines()[1]).toMatchObject({ prompt: 'a secret prompt' });
  });

  it('logs failures as warnings with the reason', () => {
    const { log, lines } = capture();
    const failed = {
      ...job,
      state: 'failed' as const,
      startedAt: 2_000,
      finishedAt: 3_000,
      error: 'timed out',
      attempts: 1,
    };
    logJobTransition(log, failed, 'running', 'failed');
    expect(lines()[0]).toMatchObject({ level: 'warn', error: 'timed out', runMs: 1_000 });
  });

  it('counts a job cancelled while waiting as all queue wait', () => {
    const { log, lines } = capture();
    logJobTransition(log, { ...job, state: 'cancelled', finishedAt: 9_000 }, 'queued', 'cancelled');
    expect(lines()[0]).toMatchObject({ queueWaitMs: 8_000, to: 'cancelled' });
    expect(lines()[0]).not.toHaveProperty('runMs');
  });

  it('logs a new job as coming from nowhere', () => {
    const { log, lines } = capture();
    logJobTransition(log, job, null, 'queued', { now: 1_000 });
    expect(lines()[0]).toMatchObject({
      from: null,
      to: 'queued',
      queueWaitMs: 0,
      msg: 'job j_01 new → queued',
    });
  });
});
