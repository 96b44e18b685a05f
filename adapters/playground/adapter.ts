/**
 * The ChatAdapter port for the playground: the bot's posts and edits go to every tab, its private
 * notes only to the tabs of the user they are for.
 */
import type { ChatAdapter, ChatMessage, PostedMessage } from '../../commands/types.js';
import type { ReplyTarget } from '../../src/jobs/types.js';
import type { ChannelHub } from './hub.js';

export const PLATFORM = 'playground';

export class PlaygroundAdapter implements ChatAdapter {
  readonly platform = PLATFORM;
  readonly #hub: ChannelHub;
  readonly #uploadLimitBytes: number;

  constructor(hub: ChannelHub, uploadLimitBytes: number) {
    this.#hub = hub;
    this.#uploadLimitBytes = uploadLimitBytes;
  }

  async post(target: ReplyTarget, message: ChatMessage): Promise<PostedMessage> {
    const messageId = this.#hub.postFromBot(target.channelId, message);
    return { platform: PLATFORM, channelId: target.channelId, messageId };
  }

  async edit(posted: PostedMessage, next: ChatMessage): Promise<void> {
    this.#hub.editFromBot(posted.channelId, posted.messageId, next);
  }

  async delete(posted: PostedMessage): Promise<void> {
    this.#hub.delete(posted.messageId);
  }

  async tellPrivately(target: ReplyTarget, userId: string, message: ChatMessage): Promise<void> {
    this.#hub.tellPrivately(target.channelId, userId, message);
  }

  /** Images go over local HTTP, never through a chat service, so only memory bounds them. */
  uploadLimit(_target: ReplyTarget): number {
    return this.#uploadLimitBytes;
  }
}
