/**
 * The files v2 upload flow: files.getUploadURLExternal → POST the bytes to the returned URL
 * (raw or multipart, as the WebClient sends them) → files.completeUploadExternal, which shares
 * the files into a channel or thread as one message with `initial_comment` / `blocks`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerValue, readBody } from '../../shared/http.js';
import { isMultipart, parseMultipart } from '../../shared/multipart.js';
import { slackId } from '../ids.js';
import { fileJson } from '../serialize.js';
import type { SlackBlock } from '../types.js';
import { jsonArg, type MethodDefinition, type MethodDeps, requireString, SlackApiError } from './methods.js';
import type { SlackApiRouter } from './router.js';

export function fileMethods(deps: MethodDeps): Record<string, MethodDefinition> {
  const { state } = deps;
  return {
    'files.getUploadURLExternal': {
      handle: ({ args }) => {
        const filename = requireString(args, 'filename');
        const length = Number(args.length);
        if (!Number.isInteger(length) || length < 0)
          throw new SlackApiError('invalid_arguments', { arg: 'length' });
        if (length > deps.options.maxFileBytes) throw new SlackApiError('file_too_large');
        const id = slackId('F');
        state.files.set(id, {
          id,
          filename,
          title: filename,
          declaredLength: length,
          data: undefined,
          altText: typeof args.alt_text === 'string' ? args.alt_text : undefined,
          shares: [],
          completed: false,
        });
        return { upload_url: `${deps.baseUrl()}/upload/v1/${id}`, file_id: id };
      },
    },
    'files.delete': {
      handle: ({ args }) => {
        const id = requireString(args, 'file');
        const file = state.files.get(id);
        if (!file) throw new SlackApiError('file_not_found');
        state.files.delete(id);
        // Where it was shared it goes too: a message that was only this file is removed.
        for (const share of file.shares) {
          const message = state.message(share.channel, share.ts);
          if (!message) continue;
          message.files = message.files.filter((f) => f.id !== id);
          if (message.files.length === 0 && !message.text && message.blocks.length === 0) {
            state.deleteMessage(message);
          }
        }
        return {};
      },
    },
    'files.completeUploadExternal': {
      handle: ({ args }) => {
        const entries = jsonArg<{ id?: string; title?: string }[]>(args, 'files');
        if (!Array.isArray(entries) || entries.length === 0)
          throw new SlackApiError('invalid_arguments', { arg: 'files' });
        const files = entries.map((entry) => {
          const file = entry.id ? state.files.get(entry.id) : undefined;
          if (!file || file.completed) throw new SlackApiError('file_not_found');
          if (!file.data) throw new SlackApiError('file_upload_not_found');
          if (file.data.length !== file.declaredLength) throw new SlackApiError('file_upload_size_mismatch');
          if (entry.title) file.title = entry.title;
          return file;
        });
        const channelId =
          typeof args.channel_id === 'string' && args.channel_id ? args.channel_id : undefined;
        const threadTs = typeof args.thread_ts === 'string' && args.thread_ts ? args.thread_ts : null;
        if (channelId) {
          const channel = state.channels.get(channelId);
          if (!channel) throw new SlackApiError('channel_not_found');
          if (!channel.members.includes(state.bot.id)) throw new SlackApiError('not_in_channel');
          if (threadTs && !state.message(channelId, threadTs)) throw new SlackApiError('thread_not_found');
          const blocks = jsonArg<SlackBlock[]>(args, 'blocks');
          const message = state.postMessage({
            channel: channelId,
            user: state.bot.id,
            text: typeof args.initial_comment === 'string' ? args.initial_comment : '',
            blocks,
            threadTs,
            files,
          });
          for (const file of files) file.shares.push({ channel: channelId, ts: message.ts });
        }
        for (const file of files) file.completed = true;
        return { files: files.map((f) => fileJson(state, f, deps.baseUrl())) };
      },
    },
  };
}

/** `POST /upload/v1/:fileId` — the upload URL. Raw bytes or multipart (first file part, else the `body`/`file` field). */
export async function handleUpload(
  deps: MethodDeps,
  router: SlackApiRouter,
  fileId: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const args = { file_id: fileId };
  const at = Date.now();
  if (router.injectFailure('upload_url', res, args, 'none')) return;
  const file = deps.state.files.get(fileId);
  const raw = await readBody(req);
  const finish = (status: number, text: string) => {
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(text);
    const record = router.record({
      method: 'upload_url',
      args,
      token: 'none',
      status,
      ok: status === 200,
      error: status === 200 ? null : text,
      at,
      injected: false,
    });
    if (status === 200) router.failures.answered('upload_url', record);
  };
  if (!file || file.completed) return finish(404, 'file_not_found');
  const contentType = headerValue(req, 'content-type');
  let data = raw;
  if (isMultipart(contentType)) {
    const form = await parseMultipart(raw, contentType);
    const part = form.files[0];
    const field = form.fields.get('file') ?? form.fields.get('body');
    data = part ? part.data : Buffer.from(field ?? '', 'utf8');
  }
  file.data = data;
  deps.state.events.emit('fileUploaded', file);
  finish(200, `OK - ${data.length}`);
}
