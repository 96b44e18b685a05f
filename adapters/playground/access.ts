/**
 * Who may use the playground. On loopback, whoever can reach the page is the person at this
 * machine, and a name is a convenience. Bound beyond loopback, a name is no identity (anyone could
 * type an admin's), so the server asks for a shared secret (PLAYGROUND_SECRET) on every request
 * and WebSocket: as `?key=<secret>` once (the page then gets a cookie and a clean address),
 * `Authorization: Bearer <secret>`, or that cookie.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const SECRET_VARIABLE = 'PLAYGROUND_SECRET';
const COOKIE = 'atelier_playground';

export class Access {
  readonly #secretDigest: Buffer;
  readonly #cookieValue: string;

  constructor(secret: string) {
    this.#secretDigest = digest(secret);
    // The cookie carries a value derived from the secret, never the secret itself.
    this.#cookieValue = createHmac('sha256', secret).update('atelier playground cookie').digest('base64url');
  }

  /** Whether the request carries the secret (query `key`, a bearer token, or the cookie). */
  allows(req: IncomingMessage): boolean {
    const key = new URL(req.url ?? '/', 'http://playground').searchParams.get('key');
    if (key !== null && this.#matches(key)) return true;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ') && this.#matches(auth.slice('Bearer '.length).trim())) return true;
    const cookie = cookieValue(req.headers.cookie, COOKIE);
    return cookie !== undefined && equal(digest(cookie), digest(this.#cookieValue));
  }

  /**
   * Answers a request without the secret (true when it did): the page gets a line saying what to
   * do; a page address with the right `?key=` gets the cookie and its address without the key.
   */
  gate(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://playground');
    const key = url.searchParams.get('key');
    if (key !== null && this.#matches(key)) {
      url.searchParams.delete('key');
      res.statusCode = 303;
      res.setHeader(
        'Set-Cookie',
        `${COOKIE}=${this.#cookieValue}; HttpOnly; SameSite=Strict; Path=/; Max-Age=31536000`,
      );
      res.setHeader('Location', `${url.pathname}${url.search}`);
      res.setHeader('Cache-Control', 'no-store');
      res.end();
      return true;
    }
    if (this.allows(req)) return false;
    res.statusCode = 401;
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(
      `This playground is shared beyond its own machine and asks for its secret: open this address with ?key=<the secret> (${SECRET_VARIABLE} on the server).\n`,
    );
    return true;
  }

  #matches(candidate: string): boolean {
    return equal(digest(candidate), this.#secretDigest);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}
