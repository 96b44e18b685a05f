import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

export interface LocalServer {
  server: Server;
  /** `http://127.0.0.1:<port>` without a trailing slash. */
  url: string;
  port: number;
  /** Closes the listener and every open connection (keep-alive sockets included). */
  close(): Promise<void>;
}

export interface LocalServerHandlers {
  request(req: IncomingMessage, res: ServerResponse): void | Promise<void>;
  upgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/** Listens on 127.0.0.1 at a random free port. Handler errors become a 500 so a bug fails the test loudly, not as a hang. */
export async function startLocalServer(handlers: LocalServerHandlers): Promise<LocalServer> {
  const server = createServer((req, res) => {
    Promise.resolve(handlers.request(req, res)).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'simulator_bug', message: String(error) });
      else res.destroy();
      process.emitWarning(`simulator handler failed for ${req.method} ${req.url}: ${String(error)}`);
    });
  });
  if (handlers.upgrade) server.on('upgrade', handlers.upgrade);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Reads the whole request body. */
export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end();
}

export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}
