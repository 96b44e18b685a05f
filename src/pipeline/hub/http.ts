/**
 * The Hugging Face hub's file protocol, as huggingface_hub's file_download.py speaks it:
 * `HEAD {endpoint}/{repo}/resolve/{revision}/{path}` answers 200 for small files kept in git (ETag
 * = the git blob sha1) and 302 to a CDN for LFS files, whose sha256 is in `X-Linked-Etag` and
 * size in `X-Linked-Size`. Redirects within the hub (renamed repositories) keep the token; the
 * token never goes to another origin. Gated repositories answer 401 without a token and 403 when
 * the token's account has not accepted the licence (`X-Error-Code: GatedRepo`).
 */
import { HubError } from './errors.js';

export interface HubFileRef {
  repo: string;
  path: string;
  /** Branch, tag or commit. */
  revision: string;
}

export interface HubClientOptions {
  /** Hub endpoint (HF_ENDPOINT); e.g. https://huggingface.co or a mirror. */
  baseUrl: string;
  /** Access token (HF_TOKEN); null for none. */
  token: string | null;
  signal?: AbortSignal;
}

export interface RemoteFile {
  ref: HubFileRef;
  /** Where the bytes are fetched from: a CDN URL for LFS files, else the resolve URL. */
  url: string;
  size: number;
  /** sha256 of the content (LFS files). */
  sha256?: string;
  /** git blob sha1 (files kept in git). */
  gitSha1?: string;
  /** Commit the revision resolved to. */
  commit?: string;
}

const MAX_REDIRECTS = 10;

export function resolveUrl(baseUrl: string, ref: HubFileRef): string {
  const path = ref.path.split('/').map(encodeURIComponent).join('/');
  return `${baseUrl.replace(/\/+$/, '')}/${ref.repo}/resolve/${encodeURIComponent(ref.revision)}/${path}`;
}

/** Headers for a request to `url`: the token only when it goes to the hub itself. */
export function requestHeaders(
  url: string,
  options: HubClientOptions,
  extra: Record<string, string> = {},
): Headers {
  const headers = new Headers({ 'User-Agent': 'atelier', ...extra });
  if (options.token && new URL(url).origin === new URL(options.baseUrl).origin) {
    headers.set('Authorization', `Bearer ${options.token}`);
  }
  return headers;
}

/** One request, following redirects by hand so the token is dropped when the origin changes. */
export async function fetchFollowing(
  url: string,
  init: { method: 'GET' | 'HEAD'; headers?: Record<string, string> },
  options: HubClientOptions,
  stopAtCrossOrigin = false,
): Promise<{ response: Response; url: string }> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const response = await fetch(current, {
      method: init.method,
      headers: requestHeaders(current, options, init.headers),
      redirect: 'manual',
      signal: options.signal,
    });
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || !location) return { response, url: current };
    const next = new URL(location, current).href;
    if (stopAtCrossOrigin && new URL(next).origin !== new URL(current).origin)
      return { response, url: current };
    await response.body?.cancel();
    current = next;
  }
  throw new Error(`too many redirects from ${url}`);
}

function unquote(etag: string | null): string | undefined {
  return etag?.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;
}

/** Size, hash and download URL of a file, or a HubError saying what the hub refused and how to fix it. */
export async function headFile(ref: HubFileRef, options: HubClientOptions): Promise<RemoteFile> {
  const url = resolveUrl(options.baseUrl, ref);
  let response: Response;
  let finalUrl: string;
  try {
    ({ response, url: finalUrl } = await fetchFollowing(
      url,
      { method: 'HEAD', headers: { 'Accept-Encoding': 'identity' } },
      options,
      true,
    ));
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new HubError(
      ref.repo,
      ref.path,
      undefined,
      `Cannot reach ${options.baseUrl} for ${ref.repo}/${ref.path}: ${networkCause(error, options.baseUrl)}. ` +
        'Set HF_ENDPOINT to a reachable mirror, or copy the files in by hand (the README lists where each goes).',
      {
        cause: error,
      },
    );
  }
  if (response.status >= 400) throw refusal(ref, response, options);
  const etag = unquote(response.headers.get('x-linked-etag') ?? response.headers.get('etag'));
  const sizeHeader = response.headers.get('x-linked-size') ?? response.headers.get('content-length');
  const size = Number(sizeHeader);
  if (sizeHeader === null || !Number.isSafeInteger(size)) {
    throw new HubError(
      ref.repo,
      ref.path,
      response.status,
      `${url}: the hub did not say how large the file is`,
    );
  }
  const redirected = response.status >= 300 && response.status < 400;
  const location = response.headers.get('location');
  return {
    ref,
    url: redirected && location ? new URL(location, finalUrl).href : finalUrl,
    size,
    sha256: etag && /^[0-9a-f]{64}$/i.test(etag) ? etag.toLowerCase() : undefined,
    gitSha1: etag && /^[0-9a-f]{40}$/i.test(etag) ? etag.toLowerCase() : undefined,
    commit: response.headers.get('x-repo-commit') ?? undefined,
  };
}

/** A HubError for a 4xx/5xx answer, in words an operator can act on. */
export function refusal(ref: HubFileRef, response: Response, options: HubClientOptions): HubError {
  const code = response.headers.get('x-error-code');
  const detail = response.headers.get('x-error-message');
  const page = `${options.baseUrl.replace(/\/+$/, '')}/${ref.repo}`;
  const said = detail ? ` The hub said: "${detail}"` : '';
  let message: string;
  if (response.status === 401 || (response.status === 403 && code === 'GatedRepo')) {
    message = options.token
      ? response.status === 401
        ? `The hub did not accept the token in HF_TOKEN for ${ref.repo} (401): it may be mistyped or revoked. Create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN to it.`
        : `${ref.repo} is gated and the account of HF_TOKEN has not been granted access (403). Accept the licence at ${page} while logged in with that account, then try again.`
      : `${ref.repo} is gated: downloading it needs a Hugging Face token (401). Accept the licence at ${page}, create a read token at https://huggingface.co/settings/tokens, and set HF_TOKEN to it.`;
  } else if (response.status === 403) {
    message = `The hub refused ${ref.repo}/${ref.path} (403). If the repository is gated, accept its licence at ${page} and set HF_TOKEN.`;
  } else if (response.status === 404) {
    const what =
      code === 'RepoNotFound'
        ? `the repository ${ref.repo} does not exist (or is private)`
        : code === 'RevisionNotFound'
          ? `the revision ${ref.revision} does not exist in ${ref.repo}`
          : `${ref.path} is not in ${ref.repo} at ${ref.revision}`;
    message = `Not found (404): ${what}.`;
  } else {
    message = `The hub answered ${response.status} for ${ref.repo}/${ref.path}.`;
  }
  return new HubError(ref.repo, ref.path, response.status, message + said);
}

/** Why a request never got an answer, in words: undici's "fetch failed" hides it in `cause`. */
export function networkCause(error: unknown, baseUrl: string): string {
  let host = baseUrl;
  try {
    host = new URL(baseUrl).host;
  } catch {}
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (error as { code?: string }).code ?? '';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return `the name ${host} does not resolve (DNS: offline, or no DNS server answers)`;
  if (code === 'ECONNREFUSED')
    return `the connection to ${host} was refused (nothing listens there, or a firewall)`;
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT')
    return `the connection to ${host} timed out (offline, or a proxy or firewall drops it)`;
  if (code === 'ECONNRESET') return `the connection to ${host} was reset`;
  if (/CERT|SSL|TLS|SELF_SIGNED/i.test(code) || /certificate|TLS|SSL/i.test(cause?.message ?? ''))
    return `TLS with ${host} failed (${code || cause?.message}: an intercepting proxy? set NODE_EXTRA_CA_CERTS)`;
  return cause?.message ? `${(error as Error).message} (${cause.message})` : String((error as Error).message);
}
