/**
 * Display names for people the bot only knows by id (a reaction carries no name). One users.info
 * call per person, remembered; without the `users:read` scope, or on any failure, the id stands in.
 */
import type { webApi } from '@slack/bolt';

const REMEMBERED = 5000;
/** A reaction should not wait on a slow lookup (the WebClient retries for minutes). */
const LOOKUP_TIMEOUT_MS = 2000;

export class SlackPeople {
  readonly #names = new Map<string, string>();

  constructor(private readonly client: webApi.WebClient) {}

  /** Remembers a name the platform already told us (slash commands and clicks carry one). */
  remember(userId: string, name: string | undefined): void {
    if (!name) return;
    this.#names.delete(userId);
    this.#names.set(userId, name);
    if (this.#names.size > REMEMBERED) this.#names.delete(this.#names.keys().next().value!);
  }

  async displayName(userId: string): Promise<string> {
    const known = this.#names.get(userId);
    if (known) return known;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), LOOKUP_TIMEOUT_MS);
    });
    const name = await Promise.race([this.#lookup(userId), timeout]);
    clearTimeout(timer);
    return name ?? userId;
  }

  async #lookup(userId: string): Promise<string | undefined> {
    try {
      const { user } = await this.client.users.info({ user: userId });
      const name = user?.profile?.display_name || user?.real_name || user?.name;
      this.remember(userId, name);
      return name;
    } catch {
      // A name is a courtesy; the id is enough to act on.
      return undefined;
    }
  }
}
