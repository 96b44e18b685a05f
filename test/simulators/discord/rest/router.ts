import type { IncomingMessage, ServerResponse } from 'node:http';
import { type FailureHandle, FailureInjector, type InjectedFailure } from '../../shared/failures.js';
import { headerValue, readBody, sendEmpty, sendJson } from '../../shared/http.js';
import { isMultipart, parseMultipart, type UploadedPart } from '../../shared/multipart.js';
import type { RestRequestRecord } from '../types.js';
import { DiscordErrors, DiscordHttpError } from './errors.js';
import { RateLimitBuckets, tooManyRequests } from './rate-limits.js';
import {
  DISCORD_ROUTES,
  type DiscordRoute,
  type RestDeps,
  type RouteDefinition,
  type RouteResponse,
} from './routes.js';

const API_PREFIX = '/api/v10';

interface CompiledRoute {
  definition: RouteDefinition;
  method: string;
  segments: string[];
}

/**
 * Discord's REST front door: routing, the bot-token check, injected failures, rate-limit buckets
 * and their headers, error bodies, and the request log. Route handlers only know meaning.
 */
export class DiscordRouter {
  readonly log: RestRequestRecord[] = [];
  readonly failures = new FailureInjector<RestRequestRecord>();
  readonly #routes: CompiledRoute[];
  readonly #buckets: RateLimitBuckets;
  #seq = 0;

  constructor(
    private readonly deps: RestDeps,
    definitions: RouteDefinition[],
  ) {
    const missing = DISCORD_ROUTES.filter((key) => !definitions.some((d) => d.key === key));
    if (missing.length > 0) throw new Error(`simulator bug: routes without handlers: ${missing.join(', ')}`);
    this.#routes = definitions.map((definition) => {
      const [method, path] = definition.key.split(' ') as [string, string];
      return { definition, method, segments: path.split('/').filter(Boolean) };
    });
    this.#buckets = new RateLimitBuckets(deps.options.rateLimit);
  }

  failNext(route: DiscordRoute, failure?: InjectedFailure): FailureHandle<RestRequestRecord> {
    if (!DISCORD_ROUTES.includes(route)) {
      throw new TypeError(`unknown Discord route "${route}"; known: ${DISCORD_ROUTES.join(', ')}`);
    }
    return this.failures.add(route, failure);
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = (req.method ?? 'GET').toUpperCase();
    const record: RestRequestRecord = {
      seq: ++this.#seq,
      method,
      route: null,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      status: 0,
      at: Date.now(),
      authorized: headerValue(req, 'authorization') === `Bot ${this.deps.options.token}`,
      body: undefined,
      files: [],
      rateLimited: false,
      injected: false,
      errorCode: null,
    };
    const respond = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      if (
        body &&
        typeof body === 'object' &&
        'code' in body &&
        typeof body.code === 'number' &&
        status >= 400
      ) {
        record.errorCode = body.code;
      }
      if (body === undefined) sendEmpty(res, status, headers);
      else sendJson(res, status, body, headers);
      this.log.push(record);
      this.deps.state.events.emit('request', record);
    };

    if (!url.pathname.startsWith(`${API_PREFIX}/`)) {
      const notFound = DiscordErrors.notFound();
      return respond(notFound.status, notFound.body);
    }
    const segments = url.pathname.slice(API_PREFIX.length).split('/').filter(Boolean).map(decodeURIComponent);
    const candidates = this.#match(segments);
    const matched = candidates.find((c) => c.route.method === method);
    if (!matched) {
      const error = candidates.length > 0 ? DiscordErrors.methodNotAllowed() : DiscordErrors.notFound();
      return respond(error.status, error.body);
    }
    const { definition } = matched.route;
    record.route = definition.key;

    let body: unknown;
    let files: UploadedPart[] = [];
    try {
      ({ body, files } = await parseBody(req));
    } catch {
      return respond(400, { message: 'The request body contains invalid JSON.', code: 50109 });
    }
    record.body = body;
    record.files = files.map((f) => ({ field: f.field, filename: f.filename, size: f.data.length }));

    if ((definition.auth ?? true) && !record.authorized) {
      const error = DiscordErrors.unauthorized();
      return respond(error.status, error.body);
    }

    const injected = this.failures.take(definition.key);
    if (injected) {
      record.injected = true;
      const { status, retryAfter, global } = injected.spec;
      if (status === 429) {
        record.rateLimited = true;
        const limited = tooManyRequests(definition.key, retryAfter, {
          global,
          limit: this.deps.options.rateLimit.limit,
        });
        respond(429, limited.body, limited.headers);
      } else {
        respond(status, { message: `${status}: Simulated failure`, code: 0 });
      }
      this.failures.served(injected, record);
      return;
    }

    let rateHeaders: Record<string, string> = {};
    if (definition.rateLimited ?? true) {
      const bucket = this.#buckets.take(definition.key, majorParameter(matched.params));
      if (bucket.limited) {
        record.rateLimited = true;
        const limited = tooManyRequests(definition.key, bucket.retryAfter, {
          global: false,
          limit: this.deps.options.rateLimit.limit,
        });
        return respond(429, limited.body, limited.headers);
      }
      rateHeaders = bucket.headers;
    }

    let result: RouteResponse;
    try {
      result = await definition.handle({ params: matched.params, query: url.searchParams, body, files });
    } catch (error) {
      if (!(error instanceof DiscordHttpError)) throw error;
      return respond(error.status, error.body, rateHeaders);
    }
    respond(result.status, result.status === 204 ? undefined : result.body, rateHeaders);
    this.failures.answered(definition.key, record);
  }

  /** Routes whose path fits, most literal segments first (`/users/@me` beats `/users/:userId`). */
  #match(segments: string[]): { route: CompiledRoute; params: Record<string, string> }[] {
    const matches: { route: CompiledRoute; params: Record<string, string>; literals: number }[] = [];
    for (const route of this.#routes) {
      if (route.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let literals = 0;
      const fits = route.segments.every((pattern, i) => {
        if (pattern.startsWith(':')) {
          params[pattern.slice(1)] = segments[i]!;
          return true;
        }
        literals += 1;
        return pattern === segments[i];
      });
      if (fits) matches.push({ route, params, literals });
    }
    return matches.sort((a, b) => b.literals - a.literals);
  }
}

/** The bucket's major parameter, as @discordjs/rest derives it: webhook id+token, channel, or guild. */
function majorParameter(params: Record<string, string>): string {
  if (params.token && params.applicationId) return `${params.applicationId}/${params.token}`;
  return params.channelId ?? params.guildId ?? 'global';
}

async function parseBody(req: IncomingMessage): Promise<{ body: unknown; files: UploadedPart[] }> {
  const raw = await readBody(req);
  if (raw.length === 0) return { body: undefined, files: [] };
  const contentType = headerValue(req, 'content-type');
  if (isMultipart(contentType)) {
    const form = await parseMultipart(raw, contentType);
    const payload = form.fields.get('payload_json');
    return { body: payload === undefined ? {} : JSON.parse(payload), files: form.files };
  }
  return { body: JSON.parse(raw.toString('utf8')), files: [] };
}
