/** Failures talking to the Hugging Face hub, with the repository and file they concern. */
import { ModelError } from '../../errors.js';

export class HubError extends ModelError {
  constructor(
    readonly repo: string,
    readonly path: string,
    /** HTTP status when the hub or its CDN answered; undefined for network failures. */
    readonly status: number | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${repo}/${path}`, message, options);
  }

  /** Worth trying again: the network failed or the server had a temporary problem. */
  get transient(): boolean {
    return this.status === undefined || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}
