/**
 * Round-robin fairness over users, as a p-queue `queueClass`. Each user has a FIFO; the user
 * served least recently goes next (users never served, in arrival order, before everyone), and
 * a user who just had a turn goes to the back. That is round-robin among waiting users, and a
 * newcomer's first job goes before the second job of a user whose first is running: a user with
 * 20 queued jobs delays another user's first job by at most one job (the one already running).
 *
 * Entries with `priority > 0` skip the round-robin and run first, highest priority first, in
 * arrival order within one priority: restart recovery uses it for jobs that were running.
 *
 * Every entry carries `units` (its estimated work) so a position can be turned into a wait.
 * `positionOf` costs O(users); `forEachInOrder` walks the whole queue once in dispatch order.
 */
import type { Queue, QueueAddOptions } from 'p-queue';

type RunFunction = () => Promise<unknown>;

export type FairQueueAddOptions = QueueAddOptions & {
  /** Whose turn this job waits for. Entries without one share an anonymous lane. */
  userKey?: string;
  /** Estimated work of the job, summed into `unitsAhead`. @default 1 */
  units?: number;
};

interface Entry {
  id: string;
  run: RunFunction;
  priority: number;
  units: number;
  userKey: string;
  /** Absent for priority entries, which wait outside the round-robin. */
  lane?: Lane;
}

class Lane {
  readonly entries: Entry[] = [];
  /** prefix[i] = units of entries[0..i-1]; rebuilt when the lane changes (lanes are short). */
  prefix: number[] = [0];

  constructor(readonly key: string) {}

  reindex(): void {
    const prefix = [0];
    for (const entry of this.entries) prefix.push(prefix.at(-1)! + entry.units);
    this.prefix = prefix;
  }
}

export interface QueuePosition {
  /** 1 = the next job to start. */
  position: number;
  /** Work (units) of the jobs that start before this one. */
  unitsAhead: number;
}

export class FairQueue implements Queue<RunFunction, FairQueueAddOptions> {
  readonly #urgent: Entry[] = [];
  /** Lanes with queued entries, in turn order; the head has the next turn. */
  #ring: Lane[] = [];
  readonly #lanes = new Map<string, Lane>();
  readonly #byId = new Map<string, Entry>();
  /** When each user was last served (a dispatch counter), to order lanes that join the ring. */
  readonly #lastServed = new Map<string, number>();
  #served = 0;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Number of users with queued jobs. */
  get users(): number {
    return this.#ring.length;
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  enqueue(run: RunFunction, options: Partial<FairQueueAddOptions> = {}): void {
    const id = options.id;
    if (id === undefined) throw new TypeError('Expected an `id` for every FairQueue entry');
    if (this.#byId.has(id)) throw new TypeError(`Expected a unique id, got \`${id}\` twice`);
    const userKey = options.userKey ?? '';
    const entry: Entry = { id, run, priority: options.priority ?? 0, units: options.units ?? 1, userKey };
    if (entry.priority > 0) {
      // Stable insert: after every entry of the same or higher priority.
      let index = this.#urgent.length;
      while (index > 0 && this.#urgent[index - 1]!.priority < entry.priority) index--;
      this.#urgent.splice(index, 0, entry);
    } else {
      let lane = this.#lanes.get(userKey);
      if (!lane) {
        lane = new Lane(userKey);
        this.#lanes.set(userKey, lane);
        this.#ring.splice(this.#ringIndexFor(userKey), 0, lane);
      }
      lane.entries.push(entry);
      lane.prefix.push(lane.prefix.at(-1)! + entry.units);
      entry.lane = lane;
    }
    this.#byId.set(id, entry);
    this.#size++;
  }

  dequeue(): RunFunction | undefined {
    let entry = this.#urgent.shift();
    if (!entry) {
      const lane = this.#ring.shift();
      if (!lane) return undefined;
      entry = lane.entries.shift()!;
      lane.reindex();
      // Served just now, so the most recently served: the back of the ring is its place.
      this.#lastServed.set(lane.key, ++this.#served);
      if (lane.entries.length > 0) this.#ring.push(lane);
      else this.#lanes.delete(lane.key);
      this.#forgetOldTurns();
    }
    // Priority entries are not turns: counting them would reorder a lane already in the ring.
    this.#byId.delete(entry.id);
    this.#size--;
    return entry.run;
  }

  remove(id: string): void {
    const entry = this.#byId.get(id);
    if (!entry) return;
    this.#byId.delete(id);
    this.#size--;
    const lane = entry.lane;
    if (!lane) {
      this.#urgent.splice(this.#urgent.indexOf(entry), 1);
      return;
    }
    lane.entries.splice(lane.entries.indexOf(entry), 1);
    lane.reindex();
    if (lane.entries.length === 0) {
      this.#ring.splice(this.#ring.indexOf(lane), 1);
      this.#lanes.delete(lane.key);
    }
  }

  filter(options: Readonly<Partial<FairQueueAddOptions>>): RunFunction[] {
    const out: RunFunction[] = [];
    this.forEachInOrder((id) => {
      const entry = this.#byId.get(id)!;
      if (options.priority === undefined || entry.priority === options.priority) out.push(entry.run);
    });
    return out;
  }

  setPriority(id: string, priority: number): void {
    const entry = this.#byId.get(id);
    if (!entry) throw new ReferenceError(`No job with the id "${id}" is queued.`);
    const userKey = entry.lane?.key;
    this.remove(id);
    this.enqueue(entry.run, {
      id,
      priority,
      units: entry.units,
      ...(userKey === undefined ? {} : { userKey }),
    });
  }

  /** Where a queued job stands, or undefined if it is not queued. O(number of users). */
  positionOf(id: string): QueuePosition | undefined {
    const entry = this.#byId.get(id);
    if (!entry) return undefined;
    if (!entry.lane) {
      const index = this.#urgent.indexOf(entry);
      let unitsAhead = 0;
      for (let i = 0; i < index; i++) unitsAhead += this.#urgent[i]!.units;
      return { position: index + 1, unitsAhead };
    }
    return this.#turnPosition(this.#ring.indexOf(entry.lane), entry.lane.entries.indexOf(entry));
  }

  /** Where a job of `userKey` would stand if it were enqueued now with `priority`. */
  positionIfAdded(userKey: string, priority = 0): QueuePosition {
    if (priority > 0) {
      let position = 1;
      let unitsAhead = 0;
      for (const other of this.#urgent) {
        if (other.priority < priority) break;
        position++;
        unitsAhead += other.units;
      }
      return { position, unitsAhead };
    }
    const lane = this.#lanes.get(userKey);
    if (lane) return this.#turnPosition(this.#ring.indexOf(lane), lane.entries.length);
    return this.#turnPosition(this.#ringIndexFor(userKey), 0);
  }

  /** Where a new lane of `userKey` joins the ring: after every lane served no later than it. */
  #ringIndexFor(userKey: string): number {
    const last = this.#lastServed.get(userKey) ?? Number.NEGATIVE_INFINITY;
    let low = 0;
    let high = this.#ring.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const other = this.#lastServed.get(this.#ring[middle]!.key) ?? Number.NEGATIVE_INFINITY;
      if (other <= last) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /**
   * A user served before every lane now waiting sorts like one never served, so those turns can
   * be forgotten; this keeps the map about as small as the set of recent users.
   */
  #forgetOldTurns(): void {
    if (this.#lastServed.size <= 2 * this.#ring.length + 1024) return;
    // The ring is sorted by last service, never-served lanes first: the first known turn is the oldest.
    let oldest = this.#served;
    for (const lane of this.#ring) {
      const served = this.#lastServed.get(lane.key);
      if (served !== undefined) {
        oldest = served;
        break;
      }
    }
    for (const [key, served] of this.#lastServed) {
      if (served < oldest && !this.#lanes.has(key)) this.#lastServed.delete(key);
    }
  }

  /**
   * The position of job `depth` (0-based) of the lane at `turn` in the ring: it starts after
   * every priority entry, after the first `depth` jobs of every lane, and after job `depth` of
   * the lanes whose turn comes before. (A lane about to join passes the index it would take.)
   */
  #turnPosition(turn: number, depth: number): QueuePosition {
    let ahead = this.#urgent.length;
    let unitsAhead = 0;
    for (const other of this.#urgent) unitsAhead += other.units;
    this.#ring.forEach((other, index) => {
      const rounds = Math.min(other.entries.length, index < turn ? depth + 1 : depth);
      ahead += rounds;
      unitsAhead += other.prefix[rounds]!;
    });
    return { position: ahead + 1, unitsAhead };
  }

  /** Calls `visit` for every queued job in the order they will start. O(queued jobs). */
  forEachInOrder(visit: (id: string, position: number, unitsAhead: number) => void): void {
    let position = 0;
    let unitsAhead = 0;
    const take = (entry: Entry) => {
      position++;
      visit(entry.id, position, unitsAhead);
      unitsAhead += entry.units;
    };
    for (const entry of this.#urgent) take(entry);
    let active = this.#ring;
    for (let round = 0; active.length > 0; round++) {
      const next: Lane[] = [];
      for (const lane of active) {
        take(lane.entries[round]!);
        if (lane.entries.length > round + 1) next.push(lane);
      }
      active = next;
    }
  }
}
