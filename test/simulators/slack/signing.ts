import { createHmac } from 'node:crypto';

/**
 * How a delivery is signed: correctly, with the wrong secret, 10 minutes old, a day in the future
 * (correctly signed, but no real Slack sends it), or not at all.
 */
export type SignatureMode = 'valid' | 'bad' | 'stale' | 'future' | 'missing';

/** Slack rejects requests older than 5 minutes; a stale delivery is 10 minutes old. */
const STALE_SECONDS = 10 * 60;
/** A `future` delivery claims to be sent a day from now. */
const FUTURE_SECONDS = 24 * 60 * 60;

/**
 * Slack's v0 request signature: `v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<raw body>` with the
 * app's signing secret, in `X-Slack-Signature`, the timestamp in `X-Slack-Request-Timestamp`.
 */
export function signatureHeaders(
  body: string,
  secret: string,
  mode: SignatureMode,
  now = Date.now(),
): Record<string, string> {
  if (mode === 'missing') return {};
  const shift = mode === 'stale' ? -STALE_SECONDS : mode === 'future' ? FUTURE_SECONDS : 0;
  const timestamp = Math.floor(now / 1000) + shift;
  const key = mode === 'bad' ? `${secret}-but-wrong` : secret;
  const signature = `v0=${createHmac('sha256', key).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  return { 'x-slack-signature': signature, 'x-slack-request-timestamp': String(timestamp) };
}
