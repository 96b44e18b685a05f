/**
 * Workers announce themselves through Redis: each keeps a card (`<prefix>:worker:<id>`, JSON) that
 * expires `ttlMs` after its last heartbeat, and its id in the `<prefix>:workers` set. A worker that
 * dies (SIGKILL, power, network) simply stops heartbeating: its card expires and readers drop its
 * id. No clocks are compared across machines: Redis's own key expiry decides who is alive.
 *
 * The gateway learns of changes by events, not by polling: a worker publishes `up`/`down` on
 * `<prefix>:workers` when it starts, stops, or finds its card gone at a heartbeat (frozen past its
 * TTL, or Redis restarted without its data); a card that expires is Redis's own keyspace event
 * (`__keyevent@<db>__:expired`, which the gateway enables with `notify-keyspace-events Ex`). Where
 * Redis refuses `CONFIG SET`, the gateway re-reads the workers every `intervalMs` instead.
 */
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { PipelineInfo } from '../pipeline/types.js';
import type { ClusterKeys } from './keys.js';

/** What a worker tells about itself (`atelier doctor`, the gateway's pool). */
export interface WorkerCard {
  id: string;
  host: string;
  pid: number;
  /** GPU index (`--device`). */
  device: number;
  model: string;
  /** The model's own settings (the gateway's chat validation uses them). */
  defaults: PipelineInfo['defaults'];
  /** Every model it serves (config `models.list`), for the gateway's model choices. */
  models?: PipelineInfo['models'];
  /** Jobs it takes at once (1: one pipeline per GPU). */
  capacity: number;
  busy: boolean;
  /** The job it runs, if any. */
  jobId?: string;
  startedAt: number;
}

export interface HeartbeatOptions {
  redis: Redis;
  keys: ClusterKeys;
  /** A card not refreshed for this long is gone. */
  ttlMs: number;
  /** @default ttlMs / 3 */
  intervalMs?: number;
  onError?(error: unknown): void;
}

/** The worker's side: keeps its card alive until `stop()`, which removes it at once. */
export class Heartbeat {
  readonly #options: Required<Omit<HeartbeatOptions, 'onError'>> & Pick<HeartbeatOptions, 'onError'>;
  #card: WorkerCard;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(card: WorkerCard, options: HeartbeatOptions) {
    this.#card = card;
    this.#options = { intervalMs: Math.max(50, Math.floor(options.ttlMs / 3)), ...options };
  }

  get card(): WorkerCard {
    return this.#card;
  }

  /** Writes the card and announces the worker; heartbeats from then on. */
  async start(): Promise<void> {
    await this.beat({ announce: true });
    const tick = () => {
      if (this.#stopped) return;
      this.beat()
        .catch((error: unknown) => this.#options.onError?.(error))
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, this.#options.intervalMs);
        });
    };
    this.#timer = setTimeout(tick, this.#options.intervalMs);
  }

  /** Changes the card (busy, job) and writes it now. */
  async update(change: Partial<WorkerCard>): Promise<void> {
    this.#card = { ...this.#card, ...change };
    if (!this.#stopped) await this.beat().catch((error: unknown) => this.#options.onError?.(error));
  }

  /**
   * Writes the card with a fresh TTL. A card that was gone (this worker was frozen past its TTL, or
   * Redis lost it) is announced again, so the gateway counts the worker without polling.
   */
  async beat(options: { announce?: boolean } = {}): Promise<void> {
    const { redis, keys, ttlMs } = this.#options;
    const key = keys.worker(this.#card.id);
    const replies = await redis
      .multi()
      .exists(key)
      .set(key, JSON.stringify(this.#card), 'PX', ttlMs)
      .sadd(keys.workers, this.#card.id)
      .exec();
    const existed = replies?.[0]?.[1] === 1;
    if (options.announce || !existed) await redis.publish(keys.channels.workers, `up ${this.#card.id}`);
  }

  /** Removes the card: the gateway stops counting this worker at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const { redis, keys } = this.#options;
    if (redis.status !== 'ready') return;
    await redis
      .multi()
      .del(keys.worker(this.#card.id))
      .srem(keys.workers, this.#card.id)
      .publish(keys.channels.workers, `down ${this.#card.id}`)
      .exec()
      .catch((error: unknown) => this.#options.onError?.(error));
  }
}

/** The live workers' cards, pruning ids whose card expired. */
export async function readWorkers(redis: Redis, keys: ClusterKeys): Promise<WorkerCard[]> {
  const ids = (await redis.smembers(keys.workers)).sort();
  if (ids.length === 0) return [];
  const cards = await redis.mget(ids.map((id) => keys.worker(id)));
  const live: WorkerCard[] = [];
  const gone: string[] = [];
  cards.forEach((text, i) => {
    if (text === null) gone.push(ids[i]!);
    else {
      try {
        live.push(JSON.parse(text) as WorkerCard);
      } catch {
        gone.push(ids[i]!);
      }
    }
  });
  if (gone.length > 0) await redis.srem(keys.workers, ...gone);
  return live;
}

export interface WorkerWatchOptions {
  /** A command connection. */
  redis: Redis;
  /** A connection for SUBSCRIBE only (a subscribed ioredis connection takes no other commands). */
  subscriber: Redis;
  keys: ClusterKeys;
  /**
   * How often the set is re-read where Redis sends no key-expiry events (a dead worker is then seen
   * within ttl + this); unused where it does.
   */
  intervalMs: number;
  onError?(error: unknown): void;
}

/** The keyspace-notification classes a card's expiry needs: `E` (keyevent channels), `x` (expired). */
const EXPIRY_EVENTS = 'Ex';

/**
 * Turns on Redis's `expired` key events (keeping any classes already on), or says Redis refuses
 * (managed Redis services may disable CONFIG); a lost connection rejects. Redis forgets the
 * setting when it restarts without a config file that has it, so the gateway sets it again at every
 * reconnect.
 */
export async function enableExpiryEvents(redis: Redis): Promise<boolean> {
  try {
    const reply = (await redis.config('GET', 'notify-keyspace-events')) as string[];
    const current = reply[1] ?? '';
    const hasExpired = current.includes('x') || current.includes('A');
    if (current.includes('E') && hasExpired) return true;
    const wanted = `${current}${current.includes('E') ? '' : 'E'}${hasExpired ? '' : 'x'}`;
    await redis.config('SET', 'notify-keyspace-events', wanted || EXPIRY_EVENTS);
    return true;
  } catch (error) {
    // Redis answered no (unknown command, NOPERM): a refusal. Anything else is the connection.
    if ((error as Error).name === 'ReplyError') return false;
    throw error;
  }
}

/**
 * The gateway's side: re-reads the live workers whenever one announces itself or a card expires,
 * and emits `change` when their set or capacity changed. While Redis is unreachable the last known
 * set is kept (the jobs they run are still theirs; BullMQ decides about them); `resync()` after a
 * reconnect catches up on what happened meanwhile.
 */
export class WorkerWatch extends EventEmitter<{ change: [workers: readonly WorkerCard[]] }> {
  readonly #options: WorkerWatchOptions;
  #workers: WorkerCard[] = [];
  #signature = '';
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  /** Redis sends card expiries; else `intervalMs` polling stands in (undefined: not asked yet). */
  #expiryEvents: boolean | undefined;
  readonly #expiredChannel: string;
  readonly #onMessage = (channel: string, message: string) => {
    if (channel === this.#options.keys.channels.workers) void this.refresh();
    else if (channel === this.#expiredChannel && message.startsWith(this.#options.keys.worker('')))
      void this.refresh();
  };

  constructor(options: WorkerWatchOptions) {
    super();
    this.#options = options;
    this.#expiredChannel = `__keyevent@${options.redis.options.db ?? 0}__:expired`;
  }

  get workers(): readonly WorkerCard[] {
    return this.#workers;
  }

  /** Jobs the live workers can take at once. */
  get capacity(): number {
    return this.#workers.reduce((sum, card) => sum + Math.max(0, card.capacity), 0);
  }

  async start(): Promise<void> {
    this.#options.subscriber.on('message', this.#onMessage);
    await this.#options.subscriber.subscribe(this.#options.keys.channels.workers, this.#expiredChannel);
    await this.resync();
  }

  /** Turns on expiry events (polling where Redis refuses) and reads the workers now. */
  async resync(): Promise<void> {
    if (this.#stopped) return;
    let events: boolean;
    try {
      events = await enableExpiryEvents(this.#options.redis);
    } catch (error) {
      // The connection dropped again: the next reconnect resyncs.
      this.#options.onError?.(error);
      return;
    }
    if (!events && this.#expiryEvents !== false) {
      this.#options.onError?.(
        new Error(
          `Redis refused CONFIG SET notify-keyspace-events ${EXPIRY_EVENTS}: re-reading the workers every ${this.#options.intervalMs} ms instead`,
        ),
      );
    }
    this.#expiryEvents = events;
    if (events) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    } else if (!this.#timer) this.#poll();
    await this.refresh();
  }

  /** The fallback where Redis sends no expiry events. */
  #poll(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped || this.#expiryEvents) return;
      void this.refresh().finally(() => {
        if (!this.#stopped && !this.#expiryEvents) this.#poll();
      });
    }, this.#options.intervalMs);
    this.#timer.unref?.();
  }

  /** Reads the workers now (coalesced with a read in flight). */
  refresh(): Promise<void> {
    if (this.#reading) {
      this.#again = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      do {
        this.#again = false;
        try {
          this.#apply(await readWorkers(this.#options.redis, this.#options.keys));
        } catch (error) {
          this.#options.onError?.(error);
        }
      } while (this.#again && !this.#stopped);
    })().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  #apply(workers: WorkerCard[]): void {
    if (this.#stopped) return;
    this.#workers = workers;
    const signature = workers.map((card) => `${card.id}×${card.capacity}`).join(',');
    if (signature === this.#signature) return;
    this.#signature = signature;
    this.emit('change', workers);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#options.subscriber.off('message', this.#onMessage);
  }
}
