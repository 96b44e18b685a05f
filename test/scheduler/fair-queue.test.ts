import { describe, expect, it } from 'vitest';
import { FairQueue } from '../../src/scheduler/index.js';

const noop = async () => undefined;

function drain(queue: FairQueue, labels: Map<() => Promise<unknown>, string>): string[] {
  const order: string[] = [];
  for (let run = queue.dequeue(); run; run = queue.dequeue()) order.push(labels.get(run)!);
  return order;
}

function add(
  queue: FairQueue,
  labels: Map<() => Promise<unknown>, string>,
  id: string,
  userKey: string,
  units = 1,
  priority = 0,
) {
  const run = async () => id;
  labels.set(run, id);
  queue.enqueue(run, { id, userKey, units, priority });
}

describe('FairQueue', () => {
  it('.dequeue() - takes users in turn, each in FIFO order', () => {
    const queue = new FairQueue();
    const labels = new Map();
    for (const id of ['a1', 'a2', 'a3']) add(queue, labels, id, 'a');
    for (const id of ['b1', 'b2', 'b3']) add(queue, labels, id, 'b');
    add(queue, labels, 'c1', 'c');
    expect(drain(queue, labels)).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'b3']);
  });

  it('.dequeue() - a newcomer waits for at most one job of a user with 20 queued', () => {
    const queue = new FairQueue();
    const labels = new Map();
    for (let i = 1; i <= 20; i++) add(queue, labels, `a${i}`, 'a');
    queue.dequeue(); // a1 is running
    add(queue, labels, 'b1', 'b');
    const order = drain(queue, labels);
    expect(order.indexOf('b1')).toBe(0);
  });

  it('.dequeue() - orders users who come back by when they were last served', () => {
    const queue = new FairQueue();
    const labels = new Map();
    add(queue, labels, 'a1', 'a');
    add(queue, labels, 'b1', 'b');
    expect(drain(queue, labels)).toEqual(['a1', 'b1']);
    // b was served after a, so a goes first again; c was never served and goes before both.
    add(queue, labels, 'b2', 'b');
    add(queue, labels, 'a2', 'a');
    add(queue, labels, 'c1', 'c');
    expect(drain(queue, labels)).toEqual(['c1', 'a2', 'b2']);
  });

  it('.dequeue() - priority entries go first, highest first, FIFO within one priority', () => {
    const queue = new FairQueue();
    const labels = new Map();
    add(queue, labels, 'a1', 'a');
    add(queue, labels, 'r1', 'x', 1, 1);
    add(queue, labels, 'r2', 'y', 1, 2);
    add(queue, labels, 'r3', 'z', 1, 1);
    expect(drain(queue, labels)).toEqual(['r2', 'r1', 'r3', 'a1']);
  });

  it('.remove() - takes a job out and keeps the others in turn', () => {
    const queue = new FairQueue();
    const labels = new Map();
    add(queue, labels, 'a1', 'a');
    add(queue, labels, 'b1', 'b');
    add(queue, labels, 'a2', 'a');
    queue.remove('b1');
    queue.remove('missing');
    expect(queue.size).toBe(2);
    expect(drain(queue, labels)).toEqual(['a1', 'a2']);
  });

  it('.enqueue() - refuses an entry without an id or with a duplicate id', () => {
    const queue = new FairQueue();
    expect(() => queue.enqueue(noop, {})).toThrow(TypeError);
    queue.enqueue(noop, { id: 'x' });
    expect(() => queue.enqueue(noop, { id: 'x' })).toThrow(/unique id/);
  });

  it('positionOf, positionIfAdded and forEachInOrder agree with the real dispatch order', () => {
    // A seeded random mix of enqueues, removals and dequeues; after each operation the
    // predicted positions must match the order the queue really dispatches in.
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const queue = new FairQueue();
    const labels = new Map<() => Promise<unknown>, string>();
    const live: string[] = [];
    for (let op = 0; op < 400; op++) {
      const roll = random();
      if (roll < 0.6 || live.length === 0) {
        const id = `j${op}`;
        const user = `u${Math.floor(random() * 7)}`;
        const priority = random() < 0.05 ? 1 : 0;
        const predicted = queue.positionIfAdded(user, priority);
        add(queue, labels, id, user, 1 + Math.floor(random() * 4), priority);
        live.push(id);
        expect(queue.positionOf(id)).toEqual(predicted);
      } else if (roll < 0.8) {
        const id = live.splice(Math.floor(random() * live.length), 1)[0]!;
        queue.remove(id);
      } else {
        const run = queue.dequeue()!;
        live.splice(live.indexOf(labels.get(run)!), 1);
      }
      const walked: { id: string; position: number; unitsAhead: number }[] = [];
      queue.forEachInOrder((id, position, unitsAhead) => walked.push({ id, position, unitsAhead }));
      for (const { id, position, unitsAhead } of walked) {
        expect(queue.positionOf(id)).toEqual({ position, unitsAhead });
      }
      expect(walked.length).toBe(queue.size);
    }
    // Draining follows forEachInOrder exactly.
    const expected: string[] = [];
    queue.forEachInOrder((id) => expected.push(id));
    expect(drain(queue, labels)).toEqual(expected);
  });
});
