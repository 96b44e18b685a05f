import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import { type FailureHandle, FailureInjector, type InjectedFailure } from '../../shared/failures.js';
import { headerValue, readBody, sendJson } from '../../shared/http.js';
import { isMultipart, parseMultipart } from '../../shared/multipart.js';
import type { ApiCallRecord } from '../types.js';
import { type MethodDefinition, type MethodDeps, SlackApiError } from './methods.js';

/**
 * Slack's Web API front door (`POST <apiUrl><method>`): argument parsing (form, JSON, query),
 * tokens (`not_authed`, `invalid_auth`, `not_allowed_token_type`), Slack's rate limits and
 * injected failures (429 with `Retry-After`), and the call log. Method handlers only know meaning.
 */
export class SlackApiRouter {
  readonly log: ApiCallRecord[] = [];
  readonly failures = new FailureInjector<ApiCallRecord>();
  #seq = 0;

  constructor(
    private readonly deps: MethodDeps,
    private readonly methods: Record<string, MethodDefinition>,
  ) {}

  get methodNames(): string[] {
    return Object.keys(this.methods);
  }

  failNext(method: string, failure?: InjectedFailure): FailureHandle<ApiCallRecord> {
    if (!(method in this.methods) && method !== 'upload_url' && method !== 'response_url') {
      throw new TypeError(
        `unknown Slack method "${method}"; simulated: ${this.methodNames.join(', ')}, upload_url, response_url`,
      );
    }
    return this.failures.add(method, failure);
  }

  /** Records a call and emits it; used for Web API methods, the upload URL and response_url posts. */
  record(record: Omit<ApiCallRecord, 'seq'>): ApiCallRecord {
    const full = { seq: ++this.#seq, ...record };
    this.log.push(full);
    this.deps.state.events.emit('apiCall', full);
    return full;
  }

  /** Answers an injected failure if one is armed for `route`; returns whether it did. */
  injectFailure(
    route: string,
    res: ServerResponse,
    args: Record<string, unknown>,
    token: ApiCallRecord['token'],
  ): boolean {
    const failure = this.failures.take(route);
    if (!failure) return false;
    const { status, retryAfter } = failure.spec;
    const headers: Record<string, string> =
      status === 429 ? { 'retry-after': String(Math.ceil(retryAfter)) } : {};
    const error = status === 429 ? 'ratelimited' : 'fatal_error';
    sendJson(res, status, { ok: false, error }, headers);
    const record = this.record({
      method: route,
      args,
      token,
      status,
      ok: false,
      error,
      at: Date.now(),
      injected: true,
    });
    this.failures.served(failure, record);
    return true;
  }

  async handle(method: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    let args: Record<string, unknown>;
    try {
      args = await parseArgs(req);
    } catch {
      sendJson(res, 200, { ok: false, error: 'invalid_json' });
      return;
    }
    const bearer = /^Bearer (.+)$/.exec(headerValue(req, 'authorization') ?? '')?.[1];
    const presented = bearer ?? (typeof args.token === 'string' ? args.token : undefined);
    delete args.token;
    const token: ApiCallRecord['token'] =
      presented === undefined
        ? 'none'
        : presented === this.deps.options.botToken
          ? 'bot'
          : presented === this.deps.options.appToken
            ? 'app'
            : 'invalid';

    if (this.injectFailure(method, res, args, token)) return;

    const answer = (body: Record<string, unknown>) => {
      sendJson(res, 200, body);
      const ok = body.ok === true;
      const record = this.record({
        method,
        args,
        token,
        status: 200,
        ok,
        error: ok ? null : String(body.error),
        at,
        injected: false,
      });
      if (ok) this.failures.answered(method, record);
    };

    const definition = this.methods[method];
    if (!definition) return answer({ ok: false, error: 'unknown_method' });
    if (token === 'none') return answer({ ok: false, error: 'not_authed' });
    if (token === 'invalid') return answer({ ok: false, error: 'invalid_auth' });
    if (token !== (definition.token ?? 'bot')) return answer({ ok: false, error: 'not_allowed_token_type' });
    const retryAfter = this.deps.rateLimits.check(method, args);
    if (retryAfter !== undefined) {
      sendJson(res, 429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(retryAfter) });
      this.record({ method, args, token, status: 429, ok: false, error: 'ratelimited', at, injected: false });
      return;
    }
    try {
      const result = await definition.handle({ args, token });
      this.deps.rateLimits.count(method, args);
      answer({ ok: true, ...result, response_metadata: { warnings: [] } });
    } catch (error) {
      if (!(error instanceof SlackApiError)) throw error;
      answer({ ok: false, error: error.error, ...error.extra });
    }
  }
}

/** Web API arguments: query string, then form or JSON body (the WebClient sends forms). */
async function parseArgs(req: IncomingMessage): Promise<Record<string, unknown>> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const args: Record<string, unknown> = Object.fromEntries(url.searchParams);
  const raw = await readBody(req);
  if (raw.length === 0) return args;
  const contentType = headerValue(req, 'content-type') ?? '';
  if (contentType.startsWith('application/json'))
    return { ...args, ...(JSON.parse(raw.toString('utf8')) as object) };
  if (isMultipart(contentType)) {
    const form = await parseMultipart(raw, contentType);
    return {
      ...args,
      ...Object.fromEntries(form.fields),
      ...(form.files.length > 0 ? { _files: form.files } : {}),
    };
  }
  return { ...args, ...parseQuery(raw.toString('utf8')) };
}
