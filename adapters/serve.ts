/** Starts the chat surfaces on a loaded app (filled in by the adapters issue). */
import type { ServeContext } from '../src/cli/main.js';

export async function serve({ app }: ServeContext): Promise<void> {
  app.logger.info('no chat surface is configured');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}
