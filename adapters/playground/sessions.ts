/**
 * The open tabs: one WebSocket each, with the user it currently speaks as. Public frames go to
 * every tab that said hello; private ones only to the tabs of one user.
 */
import WebSocket from 'ws';
import type { ServerFrame } from './protocol.js';
import type { PlaygroundUser } from './users.js';

/**
 * A tab whose socket holds more than this much unsent data is too slow to keep up; it is closed
 * and its page reconnects (and gets the feed afresh) rather than the server buffering without end.
 */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export class Sessions {
  readonly #users = new Map<WebSocket, PlaygroundUser | undefined>();

  add(socket: WebSocket): void {
    this.#users.set(socket, undefined);
  }

  remove(socket: WebSocket): void {
    this.#users.delete(socket);
  }

  identify(socket: WebSocket, user: PlaygroundUser): void {
    this.#users.set(socket, user);
  }

  userOf(socket: WebSocket): PlaygroundUser | undefined {
    return this.#users.get(socket);
  }

  get size(): number {
    return this.#users.size;
  }

  send(socket: WebSocket, frame: ServerFrame): void {
    this.#sendRaw(socket, JSON.stringify(frame));
  }

  /** To every identified tab. */
  broadcast(frame: ServerFrame): void {
    const json = JSON.stringify(frame);
    for (const [socket, user] of this.#users) {
      if (user !== undefined) this.#sendRaw(socket, json);
    }
  }

  /** To the tabs of one user only. */
  sendToUser(userId: string, frame: ServerFrame): void {
    const json = JSON.stringify(frame);
    for (const [socket, user] of this.#users) {
      if (user?.id === userId) this.#sendRaw(socket, json);
    }
  }

  sockets(): WebSocket[] {
    return [...this.#users.keys()];
  }

  #sendRaw(socket: WebSocket, json: string): void {
    if (socket.readyState !== WebSocket.OPEN) return;
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      socket.close(1013, 'too slow; reconnect');
      return;
    }
    socket.send(json);
  }
}
