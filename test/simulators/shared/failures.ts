import { Deferred } from './waiting.js';

export interface InjectedFailure {
  /** HTTP status to answer with. @default 429 */
  status?: number;
  /** Seconds the client must wait (`Retry-After` header and the platform's body field). @default 1 */
  retryAfter?: number;
  /** Discord only: mark the 429 as the global limit (`X-RateLimit-Global`). @default false */
  global?: boolean;
  /** How many consecutive matching requests fail. @default 1 */
  times?: number;
}

/** What a test gets back from `failNext`: promises for the failure being served and the client retrying. */
export interface FailureHandle<R> {
  readonly route: string;
  /** Resolves with the request that received the (last) injected failure. */
  readonly served: Promise<R>;
  /** Resolves with the first request on the same route answered normally after the failure was served. */
  readonly retried: Promise<R>;
}

interface ActiveFailure<R> {
  route: string;
  spec: Required<Omit<InjectedFailure, 'global'>> & { global: boolean };
  remaining: number;
  served: Deferred<R>;
  retried: Deferred<R>;
}

/**
 * "The next request to route X fails" — shared by both simulators. A route is the simulator's
 * route key (Discord: `'POST /channels/:channelId/messages'`; Slack: a Web API method name).
 */
export class FailureInjector<R> {
  #pending: ActiveFailure<R>[] = [];
  #awaitingRetry: ActiveFailure<R>[] = [];

  add(route: string, spec: InjectedFailure = {}): FailureHandle<R> {
    const failure: ActiveFailure<R> = {
      route,
      spec: {
        status: spec.status ?? 429,
        retryAfter: spec.retryAfter ?? 1,
        global: spec.global ?? false,
        times: spec.times ?? 1,
      },
      remaining: spec.times ?? 1,
      served: new Deferred<R>(),
      retried: new Deferred<R>(),
    };
    this.#pending.push(failure);
    return { route, served: failure.served.promise, retried: failure.retried.promise };
  }

  /** The failure to serve for this request, if one is armed for its route (consumes one use). */
  take(route: string): ActiveFailure<R> | undefined {
    const failure = this.#pending.find((f) => f.route === route);
    if (!failure) return undefined;
    failure.remaining -= 1;
    if (failure.remaining === 0) this.#pending.splice(this.#pending.indexOf(failure), 1);
    return failure;
  }

  /** Call after a failure was written: the last use resolves `served`. */
  served(failure: ActiveFailure<R>, record: R): void {
    if (failure.remaining > 0) return;
    failure.served.resolve(record);
    this.#awaitingRetry.push(failure);
  }

  /** Call after a normal answer on `route`: resolves `retried` of failures served on it. */
  answered(route: string, record: R): void {
    for (const failure of this.#awaitingRetry.filter((f) => f.route === route)) {
      failure.retried.resolve(record);
      this.#awaitingRetry.splice(this.#awaitingRetry.indexOf(failure), 1);
    }
  }
}
