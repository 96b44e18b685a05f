/**
 * Playground identities. There are no accounts: a tab speaks as the name typed in its name field,
 * and the user id is that name normalized, so "Alice" in two tabs is one user (her private
 * messages reach both) and `limits.admins.playground.userIds` can list plain names.
 */
import { ValidationError } from '../../src/errors.js';

/** Longest display name; long enough for real names, short enough for the sidebar. */
export const MAX_NAME_LENGTH = 32;

export interface PlaygroundUser {
  id: string;
  name: string;
}

/** The user a name stands for; throws ValidationError with a message for the name field. */
export function userFromName(raw: string): PlaygroundUser {
  const name = raw.normalize('NFC').replace(/\s+/g, ' ').trim();
  if (name.length === 0) throw new ValidationError('name', 'Type a name first: it is how others see you.');
  if ([...name].length > MAX_NAME_LENGTH)
    throw new ValidationError('name', `Names are at most ${MAX_NAME_LENGTH} characters.`);
  // Letters, digits, spaces and a few joiners: a name is shown in mentions and must not fake markup.
  if (!/^[\p{L}\p{N}\p{M} ._'-]+$/u.test(name))
    throw new ValidationError('name', "Use letters, digits, spaces and . _ ' - in names.");
  return { id: name.toLowerCase().replace(/ /g, '-'), name };
}

/** Display names seen since the server started, for rendering `<@id>` mentions as `@name`. */
export class KnownUsers {
  readonly #names = new Map<string, string>();

  remember(user: PlaygroundUser): void {
    this.#names.set(user.id, user.name);
  }

  /** The last name a user id was seen with; the id itself (a normalized name) otherwise. */
  nameOf(userId: string): string {
    return this.#names.get(userId) ?? userId;
  }
}
