/**
 * The pictures of posted messages, served over HTTP at `/images/<messageId>/<hash>`. The hash is
 * of the bytes, so a URL never changes meaning and the page may cache it forever; every progress
 * edit gets a new URL. Only each message's latest image and preview are kept, and the oldest are
 * dropped beyond a byte budget (a result stays reachable through the gallery, from the database).
 */
import { createHash } from 'node:crypto';
import type { ChatImage } from '../../commands/types.js';

export interface StoredImage {
  data: Uint8Array;
  mime: string;
}

export type ImageSlot = 'image' | 'preview';

export class ImageStore {
  readonly #maxBytes: number;
  /** `messageId/hash` → bytes, in insertion order (a Map iterates oldest first). */
  readonly #images = new Map<string, StoredImage>();
  /** `messageId:slot` → its current key, so a replaced image is freed at once. */
  readonly #current = new Map<string, string>();
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Stores a message's image or preview, replacing the previous one; returns its URL path. */
  put(messageId: string, slot: ImageSlot, image: ChatImage): string {
    const hash = createHash('sha256').update(image.data).digest('base64url').slice(0, 16);
    const key = `${messageId}/${hash}`;
    const slotKey = `${messageId}:${slot}`;
    const previous = this.#current.get(slotKey);
    if (previous !== key) {
      if (previous !== undefined && !this.#isCurrentElsewhere(previous, slotKey)) this.#drop(previous);
      this.#current.set(slotKey, key);
    }
    if (!this.#images.has(key)) {
      this.#images.set(key, { data: image.data, mime: image.mime });
      this.#bytes += image.data.byteLength;
      this.#evict(key);
    }
    return `/images/${encodeURIComponent(messageId)}/${hash}`;
  }

  /** Forgets a slot (an edit without a preview) or, without `slot`, everything of a message. */
  clear(messageId: string, slot?: ImageSlot): void {
    for (const s of slot ? [slot] : (['image', 'preview'] as const)) {
      const slotKey = `${messageId}:${s}`;
      const key = this.#current.get(slotKey);
      this.#current.delete(slotKey);
      if (key !== undefined && !this.#isCurrentElsewhere(key, slotKey)) this.#drop(key);
    }
  }

  get(messageId: string, hash: string): StoredImage | undefined {
    return this.#images.get(`${messageId}/${hash}`);
  }

  get bytes(): number {
    return this.#bytes;
  }

  #isCurrentElsewhere(key: string, slotKey: string): boolean {
    const [messageId] = key.split('/');
    for (const s of ['image', 'preview']) {
      const other = `${messageId}:${s}`;
      if (other !== slotKey && this.#current.get(other) === key) return true;
    }
    return false;
  }

  #drop(key: string): void {
    const image = this.#images.get(key);
    if (!image) return;
    this.#images.delete(key);
    this.#bytes -= image.data.byteLength;
  }

  /** Drops the oldest images until the budget holds, never the one just stored. */
  #evict(keep: string): void {
    for (const key of this.#images.keys()) {
      if (this.#bytes <= this.#maxBytes) return;
      if (key !== keep) this.#drop(key);
    }
  }
}
