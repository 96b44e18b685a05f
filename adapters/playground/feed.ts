/**
 * What the channels hold: the recent public messages of each channel and each user's private
 * ones, so a tab that opens (or reconnects) sees the conversation so far. The hub mirrors every
 * change into the database (when it has one) and loads it back on start, so the window outlives
 * restarts; older results stay in the gallery.
 */
import type { WireMessage, WireReaction } from './protocol.js';

export interface FeedOptions {
  /** Channels that exist from the start (more appear when the bot posts to one). */
  channels: readonly string[];
  /** Public messages kept per channel. */
  maxPerChannel: number;
  /** Private messages kept per user. */
  maxPrivatePerUser: number;
  /** Called for each message that falls out of the window (to free its images). */
  onEvict?: (message: WireMessage) => void;
}

export interface FeedEntry {
  message: WireMessage;
  /** The only user who sees it; absent for public messages. */
  recipient?: string;
}

export class Feed {
  #options: FeedOptions;
  readonly #channels = new Map<string, Map<string, FeedEntry>>();
  readonly #private = new Map<string, Map<string, FeedEntry>>();

  constructor(options: FeedOptions) {
    this.#options = options;
    for (const id of options.channels) this.#channels.set(id, new Map());
  }

  /** Changes how many messages each list keeps (applied from the next change on). */
  setLimits(limits: Pick<FeedOptions, 'maxPerChannel' | 'maxPrivatePerUser'>): void {
    this.#options = { ...this.#options, ...limits };
  }

  channels(): string[] {
    return [...this.#channels.keys()];
  }

  hasChannel(channelId: string): boolean {
    return this.#channels.has(channelId);
  }

  /** Makes a channel exist; true when it is new. */
  ensureChannel(channelId: string): boolean {
    if (this.#channels.has(channelId)) return false;
    this.#channels.set(channelId, new Map());
    return true;
  }

  /** Adds a message or replaces the one with its id (an edit keeps its place in the feed). */
  upsert(entry: FeedEntry): void {
    const list = this.#listFor(entry);
    list.set(entry.message.id, entry);
    const max = entry.recipient === undefined ? this.#options.maxPerChannel : this.#options.maxPrivatePerUser;
    for (const [id, old] of list) {
      if (list.size <= max) break;
      list.delete(id);
      this.#options.onEvict?.(old.message);
    }
  }

  /** A public message, or a private one when `viewer` is its recipient. */
  find(messageId: string, viewer?: string): FeedEntry | undefined {
    for (const list of this.#channels.values()) {
      const entry = list.get(messageId);
      if (entry) return entry;
    }
    return viewer === undefined ? undefined : this.#private.get(viewer)?.get(messageId);
  }

  remove(messageId: string): FeedEntry | undefined {
    for (const list of [...this.#channels.values(), ...this.#private.values()]) {
      const entry = list.get(messageId);
      if (entry) {
        list.delete(messageId);
        return entry;
      }
    }
    return undefined;
  }

  /** Adds or takes back one user's reaction; the message's reactions after the change. */
  react(entry: FeedEntry, emoji: string, userId: string, on: boolean): WireReaction[] {
    const reactions = entry.message.reactions;
    let reaction = reactions.find((r) => r.emoji === emoji);
    if (on && !reaction) {
      reaction = { emoji, userIds: [] };
      reactions.push(reaction);
    }
    if (reaction) {
      const has = reaction.userIds.includes(userId);
      if (on && !has) reaction.userIds.push(userId);
      if (!on && has) reaction.userIds = reaction.userIds.filter((id) => id !== userId);
    }
    entry.message.reactions = reactions.filter((r) => r.userIds.length > 0);
    return entry.message.reactions;
  }

  /**
   * Every public message and `userId`'s private ones, oldest first; with `maxBytes`, only the
   * newest that fit in that much JSON (so a welcome frame stays small whatever the feed holds).
   */
  historyFor(userId: string, maxBytes = Number.POSITIVE_INFINITY): WireMessage[] {
    const entries = [...this.#channels.values(), this.#private.get(userId) ?? new Map()].flatMap((list) => [
      ...list.values(),
    ]);
    const sorted = entries
      .map((e) => e.message)
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
    if (!Number.isFinite(maxBytes)) return sorted;
    let bytes = 0;
    let first = sorted.length;
    while (first > 0) {
      const size = Buffer.byteLength(JSON.stringify(sorted[first - 1]));
      if (bytes + size > maxBytes) break;
      bytes += size;
      first -= 1;
    }
    return sorted.slice(first);
  }

  #listFor(entry: FeedEntry): Map<string, FeedEntry> {
    const { recipient, message } = entry;
    const lists = recipient === undefined ? this.#channels : this.#private;
    const key = recipient ?? message.channelId;
    let list = lists.get(key);
    if (!list) {
      list = new Map();
      lists.set(key, list);
    }
    return list;
  }
}
