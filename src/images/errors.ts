import { ValidationError } from '../errors.js';

/** An image file is not what it claims to be (bad signature, truncated, CRC mismatch). */
export class InvalidImageError extends ValidationError {
  constructor(reason: string) {
    super('image', `That file isn't a valid image (${reason}).`);
  }
}
