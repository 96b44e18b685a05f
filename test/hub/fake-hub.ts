/**
 * A local Hugging Face hub for tests, serving files the way huggingface.co does: the resolve
 * endpoint answers 200 (with the git blob sha1 as ETag) for small git-stored files and 302 to a
 * CDN on another origin for LFS files (sha256 in X-Linked-Etag, size in X-Linked-Size); the CDN
 * serves byte ranges; gated repositories want a token whose account accepted the licence.
 * Faults can be switched on: a connection dropped mid-file, a CDN that ignores Range, corrupt
 * bytes, expired CDN links. Every request is logged, so tests assert on what crossed the wire.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range?: string;
  authorization?: string;
  /** Body bytes sent back. */
  sent: number;
}

interface StoredFile {
  content: Buffer;
  lfs: boolean;
  sha256: string;
  gitSha1: string;
  /** Size announced in headers, when a test wants the hub to lie about it. */
  claimedSize?: number;
}

interface Repo {
  gated: boolean;
  files: Map<string, StoredFile>;
}

export interface Faults {
  /** Drop the connection after this many body bytes, for the next `times` CDN downloads of `path`. */
  drop?: { path: string; afterBytes: number; times: number };
  /** The CDN answers every request with the whole file (200), ignoring Range. */
  ignoreRange?: boolean;
  /** Serve this file with one byte changed. */
  corrupt?: string;
  /** Send this many bytes of `path`, then hold the connection open without sending more (emits `stalled`). */
  stall?: { path: string; afterBytes: number };
}

export const COMMIT = 'a'.repeat(40);

export class FakeHub {
  readonly log: LoggedRequest[] = [];
  readonly faults: Faults = {};
  /** Emits `stalled` when a stalled download has sent its bytes. */
  readonly events = new EventEmitter();
  /** Tokens the hub knows, and the gated repositories each one's account has access to. */
  readonly tokens = new Map<string, Set<string>>();
  readonly #repos = new Map<string, Repo>();
  readonly #blobs = new Map<string, { repo: string; path: string }>();
  #linkGeneration = 1;

  private constructor(
    readonly hub: Server,
    readonly cdn: Server,
  ) {}

  static async start(): Promise<FakeHub> {
    let self: FakeHub | undefined;
    const hub = createServer((req, res) => self!.#onHub(req, res));
    const cdn = createServer((req, res) => self!.#onCdn(req, res));
    self = new FakeHub(hub, cdn);
    await Promise.all([listen(hub), listen(cdn)]);
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
  }

  get cdnUrl(): string {
    // Another origin than the hub (a different port), as the real CDN is another host.
    return `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  addRepo(name: string, options: { gated?: boolean } = {}): void {
    this.#repos.set(name, { gated: options.gated ?? false, files: new Map() });
  }

  /** Adds a file; `.safetensors` files are LFS unless told otherwise. */
  addFile(
    repo: string,
    path: string,
    content: Buffer,
    options: { lfs?: boolean; claimedSize?: number } = {},
  ): StoredFile {
    const lfs = options.lfs ?? path.endsWith('.safetensors');
    const file: StoredFile = {
      content,
      lfs,
      sha256: createHash('sha256').update(content).digest('hex'),
      gitSha1: createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex'),
      claimedSize: options.claimedSize,
    };
    this.#repos.get(repo)!.files.set(path, file);
    this.#blobs.set(file.sha256, { repo, path });
    return file;
  }

  /** CDN links handed out so far stop working (signed URLs expire). */
  expireLinks(): void {
    this.#linkGeneration++;
  }

  cdnRequests(path?: string): LoggedRequest[] {
    return this.log.filter((r) => r.server === 'cdn' && (!path || r.path.includes(this.#sha(path))));
  }

  #sha(path: string): string {
    for (const repo of this.#repos.values()) {
      const file = repo.files.get(path);
      if (file) return file.sha256;
    }
    return path;
  }

  async close(): Promise<void> {
    await Promise.all([close(this.hub), close(this.cdn)]);
  }

  #onHub(req: IncomingMessage, res: ServerResponse): void {
    const entry = this.#record('hub', req);
    const url = new URL(req.url ?? '/', this.url);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return void this.#error(res, 404, 'EntryNotFound', 'Not found');
    const [, repoName, revision, rawPath] = m;
    const path = decodeURIComponent(rawPath);
    const repo = this.#repos.get(repoName);
    if (!repo) return void this.#error(res, 404, 'RepoNotFound', 'Repository not found');
    if (repo.gated) {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const access = token ? this.tokens.get(token) : undefined;
      if (!access) {
        return void this.#error(
          res,
          401,
          'GatedRepo',
          `Access to model ${repoName} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
        );
      }
      if (!access.has(repoName)) {
        return void this.#error(
          res,
          403,
          'GatedRepo',
          `Access to model ${repoName} is restricted and you are not in the authorized list. Visit https://huggingface.co/${repoName} to ask for access.`,
        );
      }
    }
    if (revision !== 'main' && revision !== COMMIT)
      return void this.#error(res, 404, 'RevisionNotFound', 'Invalid rev id');
    const file = repo.files.get(path);
    if (!file) return void this.#error(res, 404, 'EntryNotFound', `${path} does not exist on "${revision}"`);
    const size = file.claimedSize ?? file.content.length;
    if (file.lfs) {
      res.writeHead(302, {
        Location: `${this.cdnUrl}/blobs/${file.sha256}?gen=${this.#linkGeneration}&sig=s3cr3t`,
        'X-Linked-Etag': `"${file.sha256}"`,
        'X-Linked-Size': String(size),
        ETag: `W/"${file.gitSha1}"`,
        'X-Repo-Commit': COMMIT,
        'Content-Length': '0',
      });
      res.end();
      return;
    }
    res.writeHead(200, {
      ETag: `"${file.gitSha1}"`,
      'Content-Length': String(size),
      'X-Repo-Commit': COMMIT,
    });
    if (req.method === 'HEAD') return void res.end();
    entry.sent = file.content.length;
    res.end(file.content);
  }

  #onCdn(req: IncomingMessage, res: ServerResponse): void {
    const entry = this.#record('cdn', req);
    const url = new URL(req.url ?? '/', this.cdnUrl);
    const sha = /^\/blobs\/([0-9a-f]{64})$/.exec(url.pathname)?.[1];
    const where = sha ? this.#blobs.get(sha) : undefined;
    if (!where) return void res.writeHead(404).end();
    if (url.searchParams.get('gen') !== String(this.#linkGeneration)) {
      return void res
        .writeHead(403, { 'Content-Type': 'application/xml' })
        .end('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>');
    }
    const file = this.#repos.get(where.repo)!.files.get(where.path)!;
    let content = file.content;
    if (this.faults.corrupt === where.path) {
      content = Buffer.from(content);
      content[content.length >> 1] ^= 0xff;
    }
    const size = content.length;
    let start = 0;
    let end = size - 1;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && !this.faults.ignoreRange) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size) return void res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
      res.writeHead(206, {
        'Content-Range': `bytes ${start}-${end}/${size}`,
        'Content-Length': String(end - start + 1),
        'Accept-Ranges': 'bytes',
      });
    } else {
      res.writeHead(200, { 'Content-Length': String(size), 'Accept-Ranges': 'bytes' });
    }
    const body = content.subarray(start, end + 1);
    const drop = this.faults.drop;
    if (drop && drop.path === where.path && drop.times > 0 && body.length > drop.afterBytes) {
      drop.times--;
      entry.sent = drop.afterBytes;
      // Send part of the body, then close the connection as a flaky network would (FIN, not RST,
      // so the client gets every byte sent and the test knows where it must resume).
      res.write(body.subarray(0, drop.afterBytes), () => res.socket?.end());
      return;
    }
    const stall = this.faults.stall;
    if (stall && stall.path === where.path) {
      entry.sent = stall.afterBytes;
      res.write(body.subarray(0, stall.afterBytes), () => this.events.emit('stalled'));
      return;
    }
    entry.sent = req.method === 'HEAD' ? 0 : body.length;
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  #record(server: 'hub' | 'cdn', req: IncomingMessage): LoggedRequest {
    const entry: LoggedRequest = {
      server,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      range: req.headers.range,
      authorization: req.headers.authorization,
      sent: 0,
    };
    this.log.push(entry);
    return entry;
  }

  #error(res: ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, {
      'X-Error-Code': code,
      'X-Error-Message': message,
      'Content-Type': 'application/json',
    });
    res.end(JSON.stringify({ error: message }));
  }
}

function listen(server: Server): Promise<void> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
