/**
 * Rations progress edits to what Slack allows. `chat.update` is a Tier 3 method (about 50 calls a
 * minute per workspace) and Slack takes about one message a second per channel, while a fast job
 * reports a step every few milliseconds. Progress is a passing state, so only the newest one of
 * each message matters: offering a newer one replaces the one waiting, and one goes out when
 *
 * - the message was last edited at least `messageIntervalMs` ago,
 * - its channel saw no progress edit (nor any other edit) in the last `channelIntervalMs`,
 * - the workspace made fewer than `updatesPerMinute` chat.update calls in the last minute, and its
 *   last one was at least a minute / `updatesPerMinute` ago (the budget is spread over the minute,
 *   not spent in a burst followed by silence), and
 * - Slack has not just said 429 (`pause`).
 *
 * Final edits (the result, a failure) do not wait here; the adapter reports them (`noteUpdate`)
 * so they count. Messages that have waited longest go first.
 */

export interface EditPacerOptions {
  messageIntervalMs: number;
  channelIntervalMs: number;
  updatesPerMinute: number;
}

const WINDOW_MS = 60_000;
/** Edit times kept per message/channel beyond this many are pruned when stale. */
const PRUNE_ABOVE = 1000;

interface Waiting<T> {
  channel: string;
  item: T;
}

export class EditPacer<T> {
  readonly #options: EditPacerOptions;
  readonly #send: (key: string, item: T) => Promise<void>;
  readonly #waiting = new Map<string, Waiting<T>>();
  readonly #lastByMessage = new Map<string, number>();
  readonly #lastByChannel = new Map<string, number>();
  /** Times of chat.update calls in the last minute, oldest first. */
  readonly #window: number[] = [];
  #lastUpdateAt = Number.NEGATIVE_INFINITY;
  /** Sends under way (each reserves one call of the minute's budget until it ends). */
  readonly #sending = new Set<Promise<void>>();
  #pausedUntil = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `send` shows an item; it calls `noteUpdate` for each chat.update it makes. */
  constructor(options: EditPacerOptions, send: (key: string, item: T) => Promise<void>) {
    this.#options = options;
    this.#send = send;
  }

  /**
   * `item` is the newest state of message `key` in `channel`: it replaces the one waiting
   * (`merge` may carry something of that one over) and goes out when the limits allow.
   */
  offer(key: string, channel: string, item: T, merge?: (older: T, newer: T) => T): void {
    const older = this.#waiting.get(key);
    if (older) older.item = merge ? merge(older.item, item) : item;
    else this.#waiting.set(key, { channel, item });
    this.#pump();
  }

  /** Forgets the state waiting for `key` (a final edit or a delete supersedes it). */
  drop(key: string): void {
    this.#waiting.delete(key);
  }

  /** A message was posted or edited now (any edit: progress or final). */
  noteUpdate(key: string, channel: string, options: { chatUpdate: boolean }): void {
    const now = Date.now();
    this.#lastByMessage.set(key, now);
    this.#lastByChannel.set(channel, now);
    if (options.chatUpdate) {
      this.#window.push(now);
      this.#lastUpdateAt = now;
    }
    if (this.#lastByMessage.size > PRUNE_ABOVE) this.#prune(now);
  }

  /** Slack answered 429: no progress edits for `ms`. */
  pause(ms: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + ms);
    this.#pump();
  }

  /** Drops everything waiting (the surface stops); later offers are paced as before. */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#waiting.clear();
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /** Resolves when no send is under way (those it starts included). */
  async idle(): Promise<void> {
    while (this.#sending.size > 0) await Promise.allSettled([...this.#sending]);
  }

  #pump(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#waiting.size === 0) return;
    const now = Date.now();
    while (this.#window.length > 0 && this.#window[0]! <= now - WINDOW_MS) this.#window.shift();
    let wakeAt = Number.POSITIVE_INFINITY;
    if (now < this.#pausedUntil) {
      wakeAt = this.#pausedUntil;
    } else {
      const { messageIntervalMs, channelIntervalMs, updatesPerMinute } = this.#options;
      const spacing = WINDOW_MS / updatesPerMinute;
      for (const [key, waiting] of this.#waiting) {
        const readyAt = Math.max(
          (this.#lastByMessage.get(key) ?? Number.NEGATIVE_INFINITY) + messageIntervalMs,
          (this.#lastByChannel.get(waiting.channel) ?? Number.NEGATIVE_INFINITY) + channelIntervalMs,
          this.#lastUpdateAt + spacing,
        );
        if (readyAt > now) {
          wakeAt = Math.min(wakeAt, readyAt);
          continue;
        }
        if (this.#window.length + this.#sending.size >= updatesPerMinute) {
          // The oldest call leaves the window then; sends under way wake the pump when they end.
          if (this.#window.length > 0) wakeAt = Math.min(wakeAt, this.#window[0]! + WINDOW_MS);
          break;
        }
        this.#waiting.delete(key);
        // Claimed now, so nothing else in this channel (or of this message) goes in this round.
        this.#lastByMessage.set(key, now);
        this.#lastByChannel.set(waiting.channel, now);
        this.#lastUpdateAt = now;
        const sending: Promise<void> = this.#send(key, waiting.item)
          .catch(() => undefined) // `send` reports its own failures
          .finally(() => {
            this.#sending.delete(sending);
            this.#pump();
          });
        this.#sending.add(sending);
      }
    }
    if (Number.isFinite(wakeAt)) {
      this.#timer = setTimeout(() => this.#pump(), Math.max(0, wakeAt - now));
      this.#timer.unref?.();
    }
  }

  #prune(now: number): void {
    const horizon = now - Math.max(this.#options.messageIntervalMs, this.#options.channelIntervalMs);
    for (const map of [this.#lastByMessage, this.#lastByChannel]) {
      for (const [key, at] of map) if (at < horizon) map.delete(key);
    }
  }
}
