/**
 * The playground's channels as one place: every change to the feed (a post, an edit, a deletion,
 * a reaction, a private note) is recorded and sent to exactly the tabs that may see it. The
 * ChatAdapter port and the page's own actions both go through here.
 */
import type { ChatMessage } from '../../commands/types.js';
import { newJobId } from '../../src/jobs/ids.js';
import { Feed } from './feed.js';
import { ImageStore } from './image-store.js';
import type { WireMessage, WireReaction, WireUser } from './protocol.js';
import { renderContent } from './render.js';
import { Sessions } from './sessions.js';
import { KnownUsers, type PlaygroundUser } from './users.js';

export interface HubOptions {
  channels: readonly string[];
  botName: string;
  maxMessagesPerChannel: number;
  maxPrivatePerUser: number;
  imageCacheBytes: number;
}

/** What a message answers: who did what (shown above the bot's reply, as Discord does). */
export interface Interaction {
  user: PlaygroundUser;
  action: string;
}

export class ChannelHub {
  readonly sessions = new Sessions();
  readonly users = new KnownUsers();
  readonly images: ImageStore;
  readonly feed: Feed;
  readonly #bot: WireUser & { bot: true };

  constructor(options: HubOptions) {
    this.images = new ImageStore(options.imageCacheBytes);
    this.feed = new Feed({
      channels: options.channels,
      maxPerChannel: options.maxMessagesPerChannel,
      maxPrivatePerUser: options.maxPrivatePerUser,
      onEvict: (message) => this.images.clear(message.id),
    });
    this.#bot = { id: 'atelier', name: options.botName, bot: true };
  }

  /** Posts a bot message publicly; returns its id. */
  postFromBot(channelId: string, message: ChatMessage, interaction?: Interaction): string {
    const id = newMessageId();
    this.#ensureChannel(channelId);
    const wire: WireMessage = {
      id,
      channelId,
      author: this.#bot,
      ...renderContent(id, message, this),
      interaction: interaction && wireInteraction(interaction),
      reactions: [],
      createdAt: Date.now(),
    };
    this.feed.upsert({ message: wire });
    this.sessions.broadcast({ type: 'message', message: wire });
    return id;
  }

  /**
   * Replaces a bot message's content, keeping its place, interaction and reactions. A message the
   * feed no longer holds (posted before a restart, or scrolled out) is posted again under its id,
   * so a result redelivered after a restart still reaches the channel.
   */
  editFromBot(channelId: string, messageId: string, next: ChatMessage): void {
    const existing = this.feed.find(messageId);
    this.#ensureChannel(channelId);
    const now = Date.now();
    const wire: WireMessage = {
      ...(existing?.message ?? {
        id: messageId,
        channelId,
        author: this.#bot,
        reactions: [],
        createdAt: now,
      }),
      ...renderContent(messageId, next, this),
      editedAt: now,
    };
    this.feed.upsert({ message: wire });
    this.sessions.broadcast({ type: 'message', message: wire });
  }

  delete(messageId: string): void {
    const removed = this.feed.remove(messageId);
    this.images.clear(messageId);
    if (!removed) return;
    const frame = { type: 'delete', channelId: removed.message.channelId, messageId } as const;
    if (removed.recipient === undefined) this.sessions.broadcast(frame);
    else this.sessions.sendToUser(removed.recipient, frame);
  }

  /** A bot message only `userId`'s tabs see. */
  tellPrivately(channelId: string, userId: string, message: ChatMessage, interaction?: Interaction): void {
    const id = newMessageId();
    const wire: WireMessage = {
      id,
      channelId,
      author: this.#bot,
      ...renderContent(id, message, this),
      interaction: interaction && wireInteraction(interaction),
      private: true,
      reactions: [],
      createdAt: Date.now(),
    };
    this.feed.upsert({ message: wire, recipient: userId });
    this.sessions.sendToUser(userId, { type: 'message', message: wire });
  }

  /** A person's plain chat line (not a command), shown to everyone in the channel. */
  postFromUser(channelId: string, user: PlaygroundUser, text: string): void {
    const wire: WireMessage = {
      id: newMessageId(),
      channelId,
      author: { ...user, bot: false },
      text,
      mentions: {},
      buttons: [],
      result: false,
      reactions: [],
      createdAt: Date.now(),
    };
    this.feed.upsert({ message: wire });
    this.sessions.broadcast({ type: 'message', message: wire });
  }

  /** Adds or takes back a reaction; the message's reactions after it, or undefined if it is gone. */
  react(messageId: string, user: PlaygroundUser, emoji: string, on: boolean): WireReaction[] | undefined {
    const entry = this.feed.find(messageId, user.id);
    if (!entry) return undefined;
    const reactions = this.feed.react(entry, emoji, user.id, on);
    const frame = { type: 'reactions', channelId: entry.message.channelId, messageId, reactions } as const;
    if (entry.recipient === undefined) this.sessions.broadcast(frame);
    else this.sessions.sendToUser(entry.recipient, frame);
    return reactions;
  }

  #ensureChannel(channelId: string): void {
    if (this.feed.ensureChannel(channelId))
      this.sessions.broadcast({ type: 'channels', channels: this.feed.channels() });
  }
}

/** Sortable and unique across restarts, so an edit after a restart cannot hit a newer message. */
function newMessageId(): string {
  return `m${newJobId()}`;
}

function wireInteraction({ user, action }: Interaction): WireMessage['interaction'] {
  return { user: { id: user.id, name: user.name }, action };
}
