/**
 * Checks in front of Bolt's HTTPReceiver, for what Bolt's own verification lets through:
 *
 * - a timestamp more than 5 minutes in the future (Bolt only refuses old ones): 401;
 * - a correctly signed request sent again byte for byte (same body, timestamp and signature)
 *   within the signature window: 401 — or an empty 200 when it says it is a Slack retry
 *   (`X-Slack-Retry-Num`), so Slack stops retrying what was already acted on;
 * - a body that is not an object (JSON `null`, `payload=null`, a number…), which Bolt's receiver
 *   would dereference outside its error handling and take the whole process down with: 400.
 *
 * Requests whose signature is missing, wrong or stale go on to Bolt, which answers 401. The body
 * is read here once and handed on as `rawBody`, which Bolt reuses instead of reading the stream.
 * @see https://docs.slack.dev/authentication/verifying-requests-from-slack
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { parse } from 'node:querystring';
import type { Logger } from '../../src/log.js';
import type { SeenDeliveries } from './seen.js';

/** Slack's window for request timestamps, either way. */
export const SIGNATURE_WINDOW_S = 5 * 60;
/** Bolt's own limit on request bodies. */
const BODY_LIMIT_BYTES = 4 * 1024 * 1024;

export interface RequestGuardOptions {
  signingSecret: string;
  /** The paths Bolt answers events on. */
  endpoints: readonly string[];
  seen: SeenDeliveries;
  logger: Logger;
}

type Verdict = { pass: true } | { pass: false; status: number; why?: string };

/** Wraps Bolt's request listener with the checks above. */
export function guardRequests(bolt: RequestListener, options: RequestGuardOptions): RequestListener {
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'POST' || !options.endpoints.includes(path)) {
      bolt(req, res);
      return;
    }
    void guard(req, res, bolt, options).catch((error: unknown) => {
      options.logger.error({ err: error }, 'slack: a request failed before it reached the bot');
      if (!res.headersSent) answer(res, 500);
      else res.destroy();
    });
  };
}

async function guard(
  req: IncomingMessage,
  res: ServerResponse,
  bolt: RequestListener,
  options: RequestGuardOptions,
): Promise<void> {
  const body = await readBody(req);
  if (body === undefined) {
    options.logger.warn('slack: a request body was larger than 4 MB; refused');
    answer(res, 413);
    return;
  }
  (req as IncomingMessage & { rawBody?: Buffer }).rawBody = body;
  const verdict = inspect(req, body.toString('utf8'), options);
  if (verdict.pass) {
    bolt(req, res);
    return;
  }
  if (verdict.why) options.logger.warn({ status: verdict.status }, `slack: ${verdict.why}`);
  answer(res, verdict.status);
}

function inspect(req: IncomingMessage, text: string, options: RequestGuardOptions): Verdict {
  const contentType = header(req, 'content-type')?.split(';')[0]?.trim().toLowerCase();
  const form = contentType === 'application/x-www-form-urlencoded';
  // Slack's SSL check is unsigned; Bolt answers it and drops anything else in it.
  if (form && parse(text).ssl_check === '1') return { pass: true };

  const signature = header(req, 'x-slack-signature');
  const timestampText = header(req, 'x-slack-request-timestamp');
  // Unsigned, badly signed or stale: Bolt refuses it (401) and logs why.
  if (!signature || !timestampText || !/^\d{1,12}$/.test(timestampText)) return { pass: true };
  const timestamp = Number(timestampText);
  if (!signedCorrectly(options.signingSecret, timestamp, text, signature)) return { pass: true };
  const nowS = Math.floor(Date.now() / 1000);
  if (timestamp < nowS - SIGNATURE_WINDOW_S) return { pass: true };
  if (timestamp > nowS + SIGNATURE_WINDOW_S) {
    return { pass: false, status: 401, why: 'refused a signed request dated more than 5 minutes ahead' };
  }

  if (!isObjectBody(text, form)) {
    return { pass: false, status: 400, why: 'refused a signed request whose body is not an object' };
  }

  // The signature covers timestamp and body: the same one again is the same request again.
  const first = options.seen.claim(
    `slack:signature:${signature}`,
    (timestamp + SIGNATURE_WINDOW_S + 60) * 1000,
  );
  if (first) return { pass: true };
  if (header(req, 'x-slack-retry-num') !== undefined) return { pass: false, status: 200 };
  return { pass: false, status: 401, why: 'refused a signed request sent before (a replay)' };
}

function signedCorrectly(secret: string, timestamp: number, body: string, signature: string): boolean {
  const expected = `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  const given = Buffer.from(signature);
  const wanted = Buffer.from(expected);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/** Whether the body parses as Bolt parses it, into an object Bolt can look into. */
function isObjectBody(text: string, form: boolean): boolean {
  try {
    let parsed: unknown;
    if (form) {
      const fields = parse(text);
      parsed = typeof fields.payload === 'string' ? JSON.parse(fields.payload) : fields;
    } else {
      parsed = JSON.parse(text);
    }
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  } catch {
    // Not JSON at all: Bolt answers that itself (400).
    return true;
  }
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > BODY_LIMIT_BYTES) {
        tooLarge = true;
        chunks.length = 0;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!tooLarge) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function answer(res: ServerResponse, status: number): void {
  res.writeHead(status);
  res.end();
}
