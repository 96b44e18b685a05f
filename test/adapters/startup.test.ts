/**
 * Start-up failures as an operator meets them: a refused, unreachable or failing Discord or Slack
 * is one line naming the cause and what to check — never a stack trace. The other surfaces serve
 * while the failed one retries with backoff; when it was the only surface, the start stops.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serve } from '../../adapters/serve.js';
import { createApp } from '../../src/app/index.js';
import { explainStartFailure, SurfaceStartError } from '../../src/app/surface-checks.js';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { startDiscordSimulator } from '../simulators/discord/index.js';
import { startSlackSimulator } from '../simulators/slack/index.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A port nothing listens on (connections to it are refused). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Started {
  lines: string[];
  warnings: string[];
  /** Settles when serve() ends (rejects when the start stops). */
  running: Promise<void>;
  waitForLine(pattern: RegExp, from?: 'lines' | 'warnings'): Promise<string>;
  close(): Promise<void>;
}

async function startServe(env: Record<string, string>, retryDelaysMs = [150]): Promise<Started> {
  const dataDir = mkdtempSync(join(tmpdir(), 'atelier-startup-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({
    cwd: dataDir,
    env: { ATELIER_DATA_DIR: dataDir, ATELIER_LOG__LEVEL: 'silent', ...env },
  });
  const app = await createApp(config, { logger: createLogger({ level: 'silent' }) });
  await app.load();
  const lines: string[] = [];
  const warnings: string[] = [];
  const waiters: (() => void)[] = [];
  const notify = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  let stop!: () => void;
  const until = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const running = serve(
    { app, config },
    {
      until,
      retryDelaysMs,
      print: (line) => {
        lines.push(line);
        notify();
      },
      warn: (line) => {
        warnings.push(line);
        notify();
      },
    },
  );
  running.catch(() => {});
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    stop();
    await running.catch(() => {});
    await app.close();
  };
  cleanups.push(close);
  return {
    lines,
    warnings,
    running,
    close,
    async waitForLine(pattern, from = 'lines') {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const found = (from === 'lines' ? lines : warnings).find((l) => pattern.test(l));
        if (found) return found;
        if (Date.now() > deadline)
          throw new Error(`no ${from} line matched ${pattern}: ${JSON.stringify({ lines, warnings })}`);
        await Promise.race([
          new Promise<void>((resolve) => waiters.push(resolve)),
          new Promise((resolve) => setTimeout(resolve, 200)),
        ]);
      }
    },
  };
}

/** serve() when it was the only surface: the error it stops with. */
async function onlySurfaceFails(env: Record<string, string>): Promise<SurfaceStartError> {
  const started = await startServe(env);
  const error = await started.running.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SurfaceStartError);
  const failure = error as SurfaceStartError;
  expect(failure.message).not.toContain('\n');
  expect(started.lines).toEqual([]);
  return failure;
}

describe('Discord that cannot be used, as the only surface', () => {
  it('a refused token (401) stops the start with one line naming DISCORD_TOKEN', async () => {
    const d = await startDiscordSimulator();
    cleanups.push(() => d.stop());
    const failure = await onlySurfaceFails({ DISCORD_TOKEN: 'revoked-token', DISCORD_API_URL: d.apiUrl });
    expect(failure.message).toMatch(
      /^discord: Discord refused DISCORD_TOKEN \(401 Unauthorized\).*Developer Portal/,
    );
    expect(failure.retryable).toBe(false);
  });

  it('an HTTP 500 names the answer, the status page and DISCORD_API_URL', async () => {
    const d = await startDiscordSimulator();
    cleanups.push(() => d.stop());
    d.failNext('GET /users/@me', { status: 500, times: 50 });
    const failure = await onlySurfaceFails({ DISCORD_TOKEN: d.token, DISCORD_API_URL: d.apiUrl });
    expect(failure.message).toMatch(
      /^discord: Discord's API answered 500 .*users\/@me.*discordstatus\.com.*DISCORD_API_URL/,
    );
  });

  it('an HTTP 500 from the gateway discovery after the token check is named the same way', async () => {
    const d = await startDiscordSimulator();
    cleanups.push(() => d.stop());
    d.failNext('GET /gateway/bot', { status: 500, times: 50 });
    const failure = await onlySurfaceFails({ DISCORD_TOKEN: d.token, DISCORD_API_URL: d.apiUrl });
    expect(failure.message).toMatch(/^discord: Discord's API answered 500 .*DISCORD_API_URL/);
  });

  it('a refused connection names the address and DISCORD_API_URL', async () => {
    const d = await startDiscordSimulator();
    cleanups.push(() => d.stop());
    await d.goOffline();
    const failure = await onlySurfaceFails({ DISCORD_TOKEN: d.token, DISCORD_API_URL: d.apiUrl });
    expect(failure.message).toMatch(
      /^discord: connection to 127\.0\.0\.1:\d+ refused \(ECONNREFUSED\).*DISCORD_API_URL/,
    );
  });

  it('a name that does not resolve is a DNS failure', async () => {
    const failure = await onlySurfaceFails({
      DISCORD_TOKEN: 'any-token',
      DISCORD_API_URL: 'http://discord.invalid/api',
    });
    expect(failure.message).toMatch(/^discord: cannot resolve discord\.invalid \(DNS lookup failed, E\w+\)/);
  });
});

describe('a failed surface beside others that work', () => {
  it('is one line while the playground serves, retried with backoff until Discord is back', async () => {
    const d = await startDiscordSimulator();
    cleanups.push(() => d.stop());
    await d.goOffline();
    const started = await startServe({
      DISCORD_TOKEN: d.token,
      DISCORD_API_URL: d.apiUrl,
      ATELIER_PLAYGROUND__ENABLED: 'true',
      PLAYGROUND_PORT: '0',
    });
    const playground = await started.waitForLine(/^playground: http:\/\/127\.0\.0\.1:\d+$/);
    const warning = await started.waitForLine(/^discord: /, 'warnings');
    expect(warning).toMatch(
      /^discord: connection to 127\.0\.0\.1:\d+ refused .* — retrying in \d+ s; the other surfaces keep serving$/,
    );
    // The playground answers meanwhile.
    const page = await fetch(playground.slice('playground: '.length));
    expect(page.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The same cause again is not repeated on every attempt.
    expect(started.warnings).toHaveLength(1);

    await d.goOnline();
    await started.waitForLine(/^discord: connected as Atelier/);
    await d.waitForReady();
    await started.close();
    await expect(started.running).resolves.toBeUndefined();
  });

  it('an unreachable Slack API is said at once, not after minutes of silent retries', async () => {
    const port = await closedPort();
    const t0 = Date.now();
    const started = await startServe({
      SLACK_BOT_TOKEN: 'xoxb-any',
      SLACK_SIGNING_SECRET: 'secret',
      SLACK_PORT: '0',
      SLACK_API_URL: `http://127.0.0.1:${port}/api/`,
      ATELIER_PLAYGROUND__ENABLED: 'true',
      PLAYGROUND_PORT: '0',
    });
    await started.waitForLine(/^playground: /);
    const warning = await started.waitForLine(/^slack: /, 'warnings');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(warning).toMatch(
      /^slack: connection to 127\.0\.0\.1:\d+ refused \(ECONNREFUSED\).*SLACK_API_URL.* — retrying in/,
    );
  });

  it('Slack refusing the bot token names SLACK_BOT_TOKEN and is not retried', async () => {
    const s = await startSlackSimulator();
    cleanups.push(() => s.stop());
    const started = await startServe({
      SLACK_BOT_TOKEN: 'xoxb-revoked',
      SLACK_SIGNING_SECRET: s.signingSecret,
      SLACK_PORT: '0',
      SLACK_API_URL: s.apiUrl,
      ATELIER_PLAYGROUND__ENABLED: 'true',
      PLAYGROUND_PORT: '0',
    });
    const warning = await started.waitForLine(/^slack: /, 'warnings');
    expect(warning).toMatch(
      /^slack: Slack refused SLACK_BOT_TOKEN \(invalid_auth\); .*xoxb-.* — slack stays off until this is fixed/,
    );
  });

  it('Slack answering 500 to auth.test, as the only surface, stops the start', async () => {
    const s = await startSlackSimulator();
    cleanups.push(() => s.stop());
    s.failNext('auth.test', { status: 500, times: 10 });
    const failure = await onlySurfaceFails({
      SLACK_BOT_TOKEN: s.botToken,
      SLACK_SIGNING_SECRET: s.signingSecret,
      SLACK_PORT: '0',
      SLACK_API_URL: s.apiUrl,
    });
    expect(failure.message).toMatch(/^slack: Slack's API answered 500 .*auth\.test.*slack-status\.com/);
  });
});

describe('explainStartFailure', () => {
  it("names discord.js's TokenInvalid as a refused DISCORD_TOKEN", () => {
    const error = Object.assign(new Error('An invalid token was provided.'), { code: 'TokenInvalid' });
    expect(explainStartFailure('discord', error).message).toMatch(/^discord: Discord refused DISCORD_TOKEN/);
  });

  it('does not retry a configuration mistake of the playground (no secret beyond loopback)', () => {
    const error = new ConfigError('PLAYGROUND_SECRET', 'playground: set PLAYGROUND_SECRET');
    expect(explainStartFailure('playground', error)).toMatchObject({
      retryable: false,
      message: 'playground: set PLAYGROUND_SECRET',
    });
  });

  it('names a timeout', () => {
    const error = new TypeError('fetch failed', {
      cause: Object.assign(new Error('Connect Timeout Error'), { code: 'UND_ERR_CONNECT_TIMEOUT' }),
    });
    expect(explainStartFailure('slack', error).message).toMatch(/^slack: slack\.com: no answer within \d+ s/);
  });
});
