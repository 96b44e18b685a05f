/**
 * `response_url` posts: JSON `{ text, blocks, response_type, replace_original, delete_original,
 * thread_ts }`. Ephemeral by default; `in_channel` posts for everyone; replace/delete act on the
 * message the button was on (or, for a slash command, on this URL's previous ephemeral reply).
 * Each URL works 5 times within 30 minutes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody, sendJson } from '../shared/http.js';
import type { SlackDeliveries } from './delivery.js';
import type { SlackState } from './state.js';
import type { SlackBlock } from './types.js';
import type { SlackApiRouter } from './web-api/router.js';

const MAX_USES = 5;
const LIFETIME_MS = 30 * 60_000;

export async function handleResponseUrl(
  state: SlackState,
  deliveries: SlackDeliveries,
  router: SlackApiRouter,
  id: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const at = Date.now();
  const raw = (await readBody(req)).toString('utf8');
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    body = { text: raw };
  }
  if (router.injectFailure('response_url', res, body, 'none')) return;
  const finish = (status: number, error: string | null) => {
    sendJson(res, status, error ? { ok: false, error } : { ok: true });
    const record = router.record({
      method: 'response_url',
      args: body,
      token: 'none',
      status,
      ok: !error,
      error,
      at,
      injected: false,
    });
    if (!error) router.failures.answered('response_url', record);
  };

  const entry = deliveries.responseUrl(id);
  if (!entry) return finish(404, 'invalid_url');
  if (entry.uses >= MAX_USES) return finish(404, 'used_url');
  if (at - entry.createdAt > LIFETIME_MS) return finish(404, 'expired_url');
  entry.uses += 1;
  const { delivery } = entry;
  delivery.responsePosts.push({ at, body });

  const text = typeof body.text === 'string' ? body.text : undefined;
  const blocks = Array.isArray(body.blocks) ? (body.blocks as SlackBlock[]) : undefined;
  const container = delivery.container;
  if (body.delete_original === true || body.replace_original === true) {
    const remove = body.delete_original === true;
    if (container && 'message' in container) {
      const message = state.message(container.message.channel, container.message.ts);
      if (!message) return finish(404, 'message_not_found');
      if (remove) state.deleteMessage(message);
      else
        state.updateMessage(message, {
          ...(text !== undefined ? { text } : {}),
          ...(blocks ? { blocks } : {}),
        });
      return finish(200, null);
    }
    const ephemeral = container && 'ephemeral' in container ? container.ephemeral : entry.lastEphemeral;
    if (ephemeral) {
      state.updateEphemeral(ephemeral, {
        ...(text !== undefined ? { text } : {}),
        ...(blocks ? { blocks } : {}),
        deleted: remove,
      });
      return finish(200, null);
    }
    if (remove) return finish(404, 'message_not_found');
  }

  const threadTs = typeof body.thread_ts === 'string' ? body.thread_ts : null;
  if (body.response_type === 'in_channel') {
    state.postMessage({ channel: delivery.channel!, user: state.bot.id, text: text ?? '', blocks, threadTs });
  } else {
    entry.lastEphemeral = state.postEphemeral({
      channel: delivery.channel!,
      user: delivery.user!,
      text: text ?? '',
      blocks: blocks ?? [],
      threadTs,
      source: 'response_url',
    });
  }
  finish(200, null);
}
