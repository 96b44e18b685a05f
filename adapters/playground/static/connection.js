/**
 * The page's WebSocket to the server: says hello on every (re)connect, reconnects with a growing
 * pause when the server goes away, and hands each frame to `onFrame`.
 */

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

export class Connection {
  /**
   * @param {{ url: string, hello: () => object, onFrame: (frame: any) => void, onStatus: (status: 'connecting' | 'online' | 'offline') => void }} options
   */
  constructor(options) {
    this.options = options;
    this.retryMs = RETRY_MIN_MS;
    this.socket = undefined;
    this.connect();
  }

  connect() {
    this.options.onStatus('connecting');
    const socket = new WebSocket(this.options.url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.retryMs = RETRY_MIN_MS;
      this.options.onStatus('online');
      this.send(this.options.hello());
    });
    socket.addEventListener('message', (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.options.onFrame(frame);
    });
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return;
      this.options.onStatus('offline');
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
  }

  get online() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** @returns {boolean} whether the frame went out */
  send(frame) {
    if (!this.online) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}
