/**
 * chat.* — posting, updating, ephemeral messages, deleting, permalinks — with the argument
 * checks and error codes Slack documents for each method.
 */
import { messageJson } from '../serialize.js';
import type { SlackBlock, SlackMessage } from '../types.js';
import { jsonArg, type MethodDefinition, type MethodDeps, requireString, SlackApiError } from './methods.js';

/** Slack truncates beyond 40,000 characters and refuses more than 50 blocks per message. */
export const SLACK_LIMITS = { text: 40_000, blocks: 50 } as const;

export function chatMethods(deps: MethodDeps): Record<string, MethodDefinition> {
  const { state } = deps;

  const channelOf = (args: Record<string, unknown>) => {
    const id = requireString(args, 'channel', 'channel_not_found');
    const channel = state.channels.get(id);
    if (!channel) throw new SlackApiError('channel_not_found');
    if (!channel.members.includes(state.bot.id)) throw new SlackApiError('not_in_channel');
    return channel;
  };

  /** text/blocks checks shared by postMessage, postEphemeral and update. */
  const content = (args: Record<string, unknown>, requireSome: boolean) => {
    const text = typeof args.text === 'string' ? args.text : undefined;
    const blocks = jsonArg<SlackBlock[]>(args, 'blocks');
    const attachments = jsonArg<unknown[]>(args, 'attachments');
    if (blocks !== undefined && !Array.isArray(blocks)) throw new SlackApiError('invalid_blocks_format');
    if (blocks && blocks.length > SLACK_LIMITS.blocks)
      throw new SlackApiError('invalid_blocks', { errors: ['must provide less than 50 items'] });
    if (blocks?.some((b) => typeof b?.type !== 'string')) throw new SlackApiError('invalid_blocks');
    const badFiles = (blocks ?? []).flatMap((block, i) =>
      block.type === 'image' && block.slack_file !== undefined && !showableFile(block.slack_file)
        ? [`invalid slack file [json-pointer:/blocks/${i}/slack_file]`]
        : [],
    );
    if (badFiles.length > 0) throw new SlackApiError('invalid_blocks', { errors: badFiles });
    if (text && text.length > SLACK_LIMITS.text) throw new SlackApiError('msg_too_long');
    if (requireSome && !text && !blocks?.length && !attachments?.length) throw new SlackApiError('no_text');
    return { text, blocks };
  };

  /**
   * An image block's `slack_file` (by `id`, or by `url`: its url_private or permalink) must name
   * an uploaded PNG, JPEG or GIF that is shared somewhere: a file uploaded without a channel is
   * private to its uploader, and Slack refuses to show it (`invalid slack file`).
   */
  const showableFile = (ref: unknown): boolean => {
    if (!ref || typeof ref !== 'object') return false;
    const { id, url } = ref as { id?: unknown; url?: unknown };
    if ((id === undefined) === (url === undefined)) return false;
    const fileId =
      typeof id === 'string' ? id : typeof url === 'string' ? /\/(F[A-Z0-9]+)\//.exec(url)?.[1] : undefined;
    const file = fileId ? state.files.get(fileId) : undefined;
    return file?.completed === true && file.shares.length > 0 && /\.(png|jpe?g|gif)$/i.test(file.filename);
  };

  const ownMessage = (args: Record<string, unknown>, tsArg: string, notMine: string): SlackMessage => {
    const channel = channelOf(args);
    const message = state.message(channel.id, requireString(args, tsArg, 'message_not_found'));
    if (!message) throw new SlackApiError('message_not_found');
    if (message.user !== state.bot.id) throw new SlackApiError(notMine);
    return message;
  };

  return {
    'chat.postMessage': {
      handle: ({ args }) => {
        const channel = channelOf(args);
        const { text, blocks } = content(args, true);
        const threadTs = typeof args.thread_ts === 'string' && args.thread_ts ? args.thread_ts : null;
        if (threadTs && !state.message(channel.id, threadTs)) throw new SlackApiError('thread_not_found');
        const message = state.postMessage({
          channel: channel.id,
          user: state.bot.id,
          text: text ?? '',
          blocks,
          threadTs,
        });
        return { channel: channel.id, ts: message.ts, message: messageJson(state, message) };
      },
    },
    'chat.update': {
      handle: ({ args }) => {
        const message = ownMessage(args, 'ts', 'cant_update_message');
        const { text, blocks } = content(args, false);
        state.updateMessage(message, {
          ...(text !== undefined ? { text } : {}),
          ...(blocks !== undefined ? { blocks } : {}),
        });
        return {
          channel: message.channel,
          ts: message.ts,
          text: message.text,
          message: messageJson(state, message),
        };
      },
    },
    'chat.postEphemeral': {
      handle: ({ args }) => {
        const channel = channelOf(args);
        const user = requireString(args, 'user', 'user_not_found');
        if (!state.users.has(user)) throw new SlackApiError('user_not_found');
        if (!channel.members.includes(user)) throw new SlackApiError('user_not_in_channel');
        const { text, blocks } = content(args, true);
        const threadTs = typeof args.thread_ts === 'string' && args.thread_ts ? args.thread_ts : null;
        const ephemeral = state.postEphemeral({
          channel: channel.id,
          user,
          text: text ?? '',
          blocks: blocks ?? [],
          threadTs,
          source: 'chat.postEphemeral',
        });
        return { message_ts: ephemeral.ts };
      },
    },
    'chat.delete': {
      handle: ({ args }) => {
        const message = ownMessage(args, 'ts', 'cant_delete_message');
        state.deleteMessage(message);
        return { channel: message.channel, ts: message.ts };
      },
    },
    'chat.getPermalink': {
      handle: ({ args }) => {
        const channel = channelOf(args);
        const message = state.message(channel.id, requireString(args, 'message_ts', 'message_not_found'));
        if (!message) throw new SlackApiError('message_not_found');
        const base = `https://${deps.options.teamDomain}.slack.com/archives/${channel.id}/p${message.ts.replace('.', '')}`;
        const permalink = message.threadTs ? `${base}?thread_ts=${message.threadTs}&cid=${channel.id}` : base;
        return { channel: channel.id, permalink };
      },
    },
  };
}
