/**
 * Socket Mode: `apps.connections.open` hands out a one-time WebSocket URL; the connection gets
 * `hello`, then envelopes (`slash_commands`, `interactive`, `events_api`) that the app must ack
 * with `{ envelope_id, payload? }`. The server pings like Slack's, so @slack/socket-mode's
 * liveness checks run against it.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { SocketTransport } from './delivery.js';
import type { SlackState } from './state.js';

interface Connection {
  id: string;
  socket: WebSocket;
  at: number;
  ping: NodeJS.Timeout;
}

export class SocketModeServer implements SocketTransport {
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #tickets = new Set<string>();
  readonly #connections: Connection[] = [];
  readonly #pendingAcks = new Map<string, (payload: unknown) => void>();
  /** Envelopes whose window passed; an ack for one is late. */
  readonly #expired = new Set<string>();
  /** Called when an ack arrives after Slack stopped waiting for it. */
  onLateAck: (envelopeId: string) => void = () => {};
  wsBaseUrl = '';

  constructor(
    private readonly state: SlackState,
    private readonly pingIntervalMs: number,
  ) {}

  get connected(): boolean {
    return this.#connections.some((c) => c.socket.readyState === 1);
  }

  get connectionCount(): number {
    return this.#connections.filter((c) => c.socket.readyState === 1).length;
  }

  /** A one-time URL for apps.connections.open. */
  issueUrl(): string {
    const ticket = randomUUID();
    this.#tickets.add(ticket);
    return `${this.wsBaseUrl}/link/?ticket=${ticket}&app_id=${this.state.appId}`;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ticket = new URL(req.url ?? '/', 'http://localhost').searchParams.get('ticket') ?? '';
    if (!this.#tickets.delete(ticket)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws));
  }

  deliver(envelope: Record<string, unknown>, timeoutMs: number): Promise<{ payload: unknown } | undefined> {
    // Slack picks one of the app's open connections; the newest is as good as any.
    const connection = [...this.#connections].reverse().find((c) => c.socket.readyState === 1);
    if (!connection) return Promise.resolve(undefined);
    const id = String(envelope.envelope_id);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pendingAcks.delete(id);
        this.#expired.add(id);
        resolve(undefined);
      }, timeoutMs);
      timer.unref();
      this.#pendingAcks.set(id, (payload) => {
        clearTimeout(timer);
        resolve({ payload });
      });
      connection.socket.send(JSON.stringify(envelope));
    });
  }

  /** Sends Slack's `disconnect` message (e.g. `refresh_requested`): the client should reconnect. */
  requestReconnect(reason: 'refresh_requested' | 'warning' | 'link_disabled' = 'refresh_requested'): void {
    for (const connection of this.#connections) {
      connection.socket.send(
        JSON.stringify({ type: 'disconnect', reason, debug_info: { host: 'applink-simulated' } }),
      );
    }
  }

  /** Closes every connection with a proper close handshake (so clients log no errors), then stops. */
  async close(): Promise<void> {
    await Promise.all(
      this.#connections.map(async (connection) => {
        clearInterval(connection.ping);
        if (connection.socket.readyState === 3) return;
        const closed = new Promise<void>((resolve) => connection.socket.once('close', () => resolve()));
        if (connection.socket.readyState === 1) connection.socket.close(1001, 'simulator stopping');
        const timer = setTimeout(() => connection.socket.terminate(), 1000);
        await closed;
        clearTimeout(timer);
      }),
    );
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #accept(socket: WebSocket): void {
    const connection: Connection = {
      id: randomUUID(),
      socket,
      at: Date.now(),
      ping: setInterval(() => socket.ping(), this.pingIntervalMs).unref(),
    };
    this.#connections.push(connection);
    socket.on('message', (data) => {
      let message: { envelope_id?: string; payload?: unknown };
      try {
        message = JSON.parse(data.toString()) as typeof message;
      } catch {
        return;
      }
      const resolve = message.envelope_id ? this.#pendingAcks.get(message.envelope_id) : undefined;
      if (resolve) {
        this.#pendingAcks.delete(message.envelope_id!);
        resolve(message.payload ?? {});
      } else if (message.envelope_id && this.#expired.delete(message.envelope_id)) {
        this.onLateAck(message.envelope_id);
      }
    });
    socket.on('close', (code) => {
      clearInterval(connection.ping);
      this.#connections.splice(this.#connections.indexOf(connection), 1);
      this.state.events.emit('socketClosed', { id: connection.id, code });
    });
    socket.send(
      JSON.stringify({
        type: 'hello',
        num_connections: this.connectionCount,
        debug_info: { host: 'applink-simulated', build_number: 1, approximate_connection_time: 18_060 },
        connection_info: { app_id: this.state.appId },
      }),
    );
    this.state.events.emit('socketConnected', { id: connection.id, at: connection.at });
  }
}
