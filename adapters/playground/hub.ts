/**
 * The playground's channels as one place: every change to the feed (a post, an edit, a deletion,
 * a reaction, a private note) is recorded and sent to exactly the tabs that may see it. The
 * ChatAdapter port and the page's own actions both go through here.
 */
import type { ChatMessage } from '../../commands/types.js';
import { newJobId } from '../../src/jobs/ids.js';
import type { Logger } from '../../src/log.js';
import type { StoredFeedMessage } from '../../src/store/playground-feed-repository.js';
import { Feed, type FeedEntry } from './feed.js';
import { ImageStore } from './image-store.js';
import { CHANNEL_ID, type WireMessage, type WireReaction, type WireUser } from './protocol.js';
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

/** Where the feed is kept across restarts (the database's playground_messages). */
export interface FeedStore {
  put(entry: StoredFeedMessage): void;
  remove(id: string): void;
  /** Everything kept, oldest first. */
  all(): StoredFeedMessage[];
  /** The job a message shows, so an old result's picture can be served from the job's files. */
  jobOfMessage(messageId: string): string | undefined;
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
  #store: FeedStore | undefined;
  #logger: Logger | undefined;
  #storeFailing = false;

  constructor(options: HubOptions) {
    this.images = new ImageStore(options.imageCacheBytes);
    this.feed = new Feed({
      channels: options.channels,
      maxPerChannel: options.maxMessagesPerChannel,
      maxPrivatePerUser: options.maxPrivatePerUser,
      onEvict: (message) => {
        this.images.clear(message.id);
        this.#persist(() => this.#store?.remove(message.id));
      },
    });
    this.#bot = { id: 'atelier', name: options.botName, bot: true };
  }

  /**
   * Keeps the feed in `store` from now on, after loading what it holds: the conversation of the
   * last run comes back, each old result's picture served from its job (the message images of
   * the last run were only in memory) and its buttons working as before.
   */
  useStore(store: FeedStore, logger: Logger): void {
    this.#logger = logger;
    let stored: StoredFeedMessage[];
    try {
      stored = store.all();
    } catch (error) {
      logger.warn({ err: error }, 'playground: could not read the saved conversation; starting empty');
      stored = [];
    }
    this.#store = store;
    for (const row of stored) {
      const message = restoredMessage(row, store);
      if (!message) {
        this.#persist(() => store.remove(row.id));
        continue;
      }
      if (row.recipient === undefined) this.feed.ensureChannel(message.channelId);
      for (const user of [message.author, message.interaction?.user])
        if (user && !('bot' in user && user.bot)) this.users.remember({ id: user.id, name: user.name });
      const entry: FeedEntry = { message, recipient: row.recipient };
      this.feed.upsert(entry);
      if (message !== row.message) this.#save(entry);
    }
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
    this.#upsert({ message: wire });
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
    // A progress edit with a preview is not written to the database: a restored feed drops
    // previews, and the next edit (or the result) supersedes it within seconds.
    this.#upsert({ message: wire, recipient: existing?.recipient }, { persist: next.preview === undefined });
    this.sessions.broadcast({ type: 'message', message: wire });
  }

  delete(messageId: string): void {
    const removed = this.feed.remove(messageId);
    this.images.clear(messageId);
    this.#persist(() => this.#store?.remove(messageId));
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
    this.#upsert({ message: wire, recipient: userId });
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
    this.#upsert({ message: wire });
    this.sessions.broadcast({ type: 'message', message: wire });
  }

  /** Adds or takes back a reaction; the message's reactions after it, or undefined if it is gone. */
  react(messageId: string, user: PlaygroundUser, emoji: string, on: boolean): WireReaction[] | undefined {
    const entry = this.feed.find(messageId, user.id);
    if (!entry) return undefined;
    const reactions = this.feed.react(entry, emoji, user.id, on);
    this.#save(entry);
    const frame = { type: 'reactions', channelId: entry.message.channelId, messageId, reactions } as const;
    if (entry.recipient === undefined) this.sessions.broadcast(frame);
    else this.sessions.sendToUser(entry.recipient, frame);
    return reactions;
  }

  #upsert(entry: FeedEntry, { persist = true } = {}): void {
    this.feed.upsert(entry);
    // An entry the feed dropped at once (a window of 0) is not kept either.
    if (persist && this.feed.find(entry.message.id, entry.recipient) === entry) this.#save(entry);
  }

  #save(entry: FeedEntry): void {
    const { message, recipient } = entry;
    this.#persist(() =>
      this.#store?.put({
        id: message.id,
        channelId: message.channelId,
        recipient,
        message,
        createdAt: message.createdAt,
      }),
    );
  }

  /** A failing database must not stop the chat: the feed goes on in memory and says so once. */
  #persist(write: () => void): void {
    if (!this.#store) return;
    try {
      write();
      this.#storeFailing = false;
    } catch (error) {
      if (!this.#storeFailing)
        this.#logger?.warn(
          { err: error },
          'playground: could not save the conversation; it goes on in memory',
        );
      this.#storeFailing = true;
    }
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

/**
 * A saved message as the feed holds it, or undefined when the row is not one. Pictures of the
 * last run were kept in memory only: a result's picture is served from its job instead, any
 * other picture and every preview (of a job that will post again) are left out.
 */
function restoredMessage(row: StoredFeedMessage, store: FeedStore): WireMessage | undefined {
  const message = row.message as WireMessage;
  if (
    typeof message !== 'object' ||
    message === null ||
    message.id !== row.id ||
    typeof message.channelId !== 'string' ||
    !CHANNEL_ID.test(message.channelId) ||
    typeof message.text !== 'string' ||
    typeof message.author?.id !== 'string' ||
    !Array.isArray(message.buttons) ||
    !Array.isArray(message.reactions) ||
    typeof message.createdAt !== 'number'
  )
    return undefined;
  if (!message.image && !message.preview) return message;
  const { preview: _preview, image, ...rest } = message;
  const jobId = image?.url.startsWith('/images/') ? store.jobOfMessage(message.id) : undefined;
  if (image && !image.url.startsWith('/images/')) return { ...rest, image };
  if (!image || !jobId) return { ...rest, result: false };
  return { ...rest, image: { ...image, url: `/results/${encodeURIComponent(jobId)}/grid` } };
}

function wireInteraction({ user, action }: Interaction): WireMessage['interaction'] {
  return { user: { id: user.id, name: user.name }, action };
}
