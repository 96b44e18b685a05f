/** `models pull` offline: the cause in words, and the ways around it (HF_ENDPOINT, copying by hand). */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { headFile } from '../../src/pipeline/hub/http.js';

const ref = { repo: 'owner/model', path: 'x.safetensors', revision: 'main' };

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const failure = (baseUrl: string) =>
  headFile(ref, { baseUrl, token: null }).then(
    () => new Error('reached'),
    (e: Error) => e,
  );

describe('an unreachable hub', () => {
  it('says the connection was refused and how to go on', async () => {
    const port = await closedPort();
    const error = await failure(`http://127.0.0.1:${port}`);
    expect(error.message).toContain(`Cannot reach http://127.0.0.1:${port} for owner/model/x.safetensors`);
    expect(error.message).toContain(`the connection to 127.0.0.1:${port} was refused`);
    expect(error.message).not.toContain('fetch failed');
    expect(error.message).toContain('HF_ENDPOINT');
    expect(error.message).toContain('copy the files in by hand');
  });

  it('says the name does not resolve', async () => {
    const error = await failure('http://hub.invalid');
    expect(error.message).toMatch(/hub\.invalid does not resolve \(DNS/);
  });
});
