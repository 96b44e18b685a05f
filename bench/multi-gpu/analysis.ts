/**
 * What a multi-GPU run's records mean: images per minute, time to first image, whether the
 * scheduler kept its round-robin promise, whether the limits held. Pure functions over what the
 * load driver saw (./users.ts) and what the product stored (its SQLite `jobs` rows), so they are
 * tested on made-up timelines (multi-gpu.test.ts) and the GPU run only supplies the numbers.
 *
 * The promise checked (src/scheduler/fair-queue.ts, restated here independently): each user has a
 * FIFO lane; the lanes wait in a ring ordered by when each user was last served, users never served
 * first in the order their lane joined; a user who just had a turn goes to the back. So at every
 * dispatch the job that starts belongs to the waiting user served least recently.
 */

/** One job as the product stored it (`jobs` table), times in ms since the epoch. */
export interface StoredJobRow {
  id: string;
  seq: number;
  user: string;
  state: string;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

export interface FairnessViolation {
  /** 0-based dispatch index. */
  index: number;
  at: number;
  jobId: string;
  /** Whose job started. */
  started: string;
  /** The waiting user served least recently, whose job should have started. */
  expected: string;
}

export interface FairnessReport {
  ok: boolean;
  dispatches: number;
  /** Users in the order their jobs started (the product's own timestamps). */
  startOrder: string[];
  violations: FairnessViolation[];
  /**
   * The most jobs one user started while another waited the whole time without starting one.
   * Round robin promises 1.
   */
  maxTurnsWhileWaiting: number;
  /** Created and started times closer than this are treated as simultaneous (ms timestamps). */
  toleranceMs: number;
}

/**
 * Replays the dispatches in the product's start order against the round-robin rule. A job created
 * within `toleranceMs` of a dispatch may or may not have been queued then, so it is never counted
 * against that dispatch; jobs that started in the same millisecond are taken in the order the rule
 * prefers (the product's order between them is not recorded).
 */
export function checkRoundRobin(rows: readonly StoredJobRow[], toleranceMs = 2): FairnessReport {
  const started = rows
    .filter((r): r is StoredJobRow & { startedAt: number } => r.startedAt !== null)
    .sort((a, b) => a.startedAt - b.startedAt || a.seq - b.seq);
  const dispatched = new Set<string>();
  const lastServed = new Map<string, number>();
  const turns = new Map<string, Map<string, number>>();
  const violations: FairnessViolation[] = [];
  const startOrder: string[] = [];
  let maxTurnsWhileWaiting = 0;

  /** A user's waiting jobs at `t`: created by then (`slack` ms early or late) and not started or gone. */
  const waitingAt = (t: number, slack: number) => {
    const lanes = new Map<string, StoredJobRow>();
    for (const r of rows) {
      if (dispatched.has(r.id) || r.createdAt > t + slack) continue;
      // Cancelled or failed before it started: it left the queue.
      if (r.startedAt === null && r.finishedAt !== null && r.finishedAt <= t) continue;
      const first = lanes.get(r.user);
      if (!first || r.createdAt < first.createdAt || (r.createdAt === first.createdAt && r.seq < first.seq))
        lanes.set(r.user, r);
    }
    return lanes;
  };
  /** Ring order: last served (never first), then when the lane joined. */
  const before = (a: string, aHead: StoredJobRow, b: string, bHead: StoredJobRow) => {
    const la = lastServed.get(a) ?? Number.NEGATIVE_INFINITY;
    const lb = lastServed.get(b) ?? Number.NEGATIVE_INFINITY;
    if (la !== lb) return la < lb;
    return (
      aHead.createdAt < bHead.createdAt || (aHead.createdAt === bHead.createdAt && aHead.seq < bHead.seq)
    );
  };

  let i = 0;
  while (i < started.length) {
    const t = started[i]!.startedAt;
    const group: typeof started = [];
    while (i < started.length && started[i]!.startedAt === t) group.push(started[i++]!);
    while (group.length > 0) {
      const maybe = waitingAt(t, toleranceMs);
      // Of the jobs that started at t, the one the rule would take first.
      let pick = 0;
      for (let g = 1; g < group.length; g++) {
        const a = group[g]!;
        const b = group[pick]!;
        if (before(a.user, maybe.get(a.user) ?? a, b.user, maybe.get(b.user) ?? b)) pick = g;
      }
      const job = group.splice(pick, 1)[0]!;
      const head = maybe.get(job.user) ?? job;
      const surely = waitingAt(t, -toleranceMs);
      let expected = job.user;
      let expectedHead = head;
      for (const [user, userHead] of surely) {
        if (user !== expected && before(user, userHead, expected, expectedHead)) {
          expected = user;
          expectedHead = userHead;
        }
      }
      const index = startOrder.length;
      if (expected !== job.user)
        violations.push({ index, at: t, jobId: job.id, started: job.user, expected });
      // Turns `job.user` took while each other user surely waited; a user's own start resets its count.
      for (const user of surely.keys()) {
        if (user === job.user) continue;
        const counts = turns.get(user) ?? new Map<string, number>();
        const n = (counts.get(job.user) ?? 0) + 1;
        counts.set(job.user, n);
        turns.set(user, counts);
        maxTurnsWhileWaiting = Math.max(maxTurnsWhileWaiting, n);
      }
      turns.delete(job.user);
      for (const user of turns.keys()) if (!surely.has(user)) turns.delete(user);
      dispatched.add(job.id);
      lastServed.set(job.user, index);
      startOrder.push(job.user);
    }
  }
  return {
    ok: violations.length === 0,
    dispatches: startOrder.length,
    startOrder,
    violations,
    maxTurnsWhileWaiting,
    toleranceMs,
  };
}

export interface CompletionOrderReport {
  /** Users in the order their results reached them (what each person sees). */
  order: string[];
  /**
   * The most results one user got between two results of another user who had jobs waiting all
   * the while: 1 under round robin; up to 2 when jobs on several GPUs finish in another order than
   * they started.
   */
  maxBetween: number;
  /** Whether each consecutive run of `users` results (after the first) went to `users` different people. */
  fullRounds: number;
  rounds: number;
}

/** Reads the completion order a user sees against the round robin's one-turn-each promise. */
export function completionOrder(order: readonly string[], users: number): CompletionOrderReport {
  let maxBetween = 0;
  const since = new Map<string, Map<string, number>>();
  for (const user of order) {
    for (const [waiting, counts] of since) {
      if (waiting === user) continue;
      const n = (counts.get(user) ?? 0) + 1;
      counts.set(user, n);
      maxBetween = Math.max(maxBetween, n);
    }
    since.set(user, new Map());
  }
  let rounds = 0;
  let fullRounds = 0;
  for (let start = 0; start + users <= order.length; start += users) {
    rounds++;
    if (new Set(order.slice(start, start + users)).size === users) fullRounds++;
  }
  return { order: [...order], maxBetween, fullRounds, rounds };
}

/** The most jobs one user had waiting or running at once, from the stored rows (cancelled ones left out). */
export function maxOutstandingPerUser(rows: readonly StoredJobRow[]): Record<string, number> {
  const events = new Map<string, { t: number; d: number }[]>();
  for (const r of rows) {
    if (r.state === 'cancelled') continue;
    const list = events.get(r.user) ?? [];
    list.push({ t: r.createdAt, d: 1 });
    if (r.finishedAt !== null) list.push({ t: r.finishedAt, d: -1 });
    events.set(r.user, list);
  }
  const out: Record<string, number> = {};
  for (const [user, list] of events) {
    // A job that finished at the same millisecond another was created had left first.
    list.sort((a, b) => a.t - b.t || a.d - b.d);
    let n = 0;
    let max = 0;
    for (const e of list) {
      n += e.d;
      max = Math.max(max, n);
    }
    out[user] = max;
  }
  return out;
}

export interface RateReport {
  /** Results inside the window, per minute of the window. */
  imagesPerMinute: number;
  /** Between the first and the last result inside the window (null with fewer than 2). */
  steadyImagesPerMinute: number | null;
  images: number;
  windowSeconds: number;
}

/** Images per minute from result times (ms) inside [from, from + windowMs]. */
export function rates(doneAt: readonly number[], from: number, windowMs: number): RateReport {
  const inside = doneAt.filter((t) => t >= from && t <= from + windowMs).sort((a, b) => a - b);
  const minutes = windowMs / 60_000;
  const steady = inside.length >= 2 ? ((inside.length - 1) / (inside.at(-1)! - inside[0]!)) * 60_000 : null;
  return {
    imagesPerMinute: minutes > 0 ? inside.length / minutes : 0,
    steadyImagesPerMinute: steady,
    images: inside.length,
    windowSeconds: windowMs / 1000,
  };
}

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    mean: sorted.reduce((s, v) => s + v, 0) / sorted.length,
    p50: sorted[Math.floor((sorted.length - 1) / 2)]!,
    max: sorted.at(-1)!,
  };
}
