/**
 * Which URLs the agent may fetch blobs from. The agent fetches whatever a
 * land request names, so without this list anyone holding the token could
 * make it read cloud metadata endpoints (169.254.169.254, 169.254.170.2) or
 * any other host the target can reach.
 */
import { FailureType } from '../core/errors';
import { AgentFailure } from './failure';

function parseHttpUrl(text: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.username !== '' || url.password !== '') return undefined;
  return url;
}

/**
 * The comparable form of a URL: origin plus path, as the URL parser
 * normalises them (lower-case host, default port dropped, `..` resolved).
 * A prefix without a path gets `/`, so `http://store` cannot match `http://store.evil`.
 */
function comparableForm(url: URL): string {
  return url.origin + url.pathname;
}

export class UrlAllowlist {
  private readonly prefixes: string[];

  /** Throws when a prefix is not a plain http(s) URL. */
  constructor(prefixes: string[]) {
    if (prefixes.length === 0) throw new Error('at least one allowed URL prefix is required');
    this.prefixes = prefixes.map((prefix) => {
      const url = parseHttpUrl(prefix);
      if (!url) throw new Error(`allowed URL prefix ${JSON.stringify(prefix)} is not an http(s) URL without credentials`);
      return comparableForm(url);
    });
  }

  /** Throws UrlNotAllowed naming the URL's origin; the rest of a presigned URL is a credential and stays out of errors. */
  check(text: unknown, path: string): void {
    const url = typeof text === 'string' ? parseHttpUrl(text) : undefined;
    if (!url) throw new AgentFailure(FailureType.UrlNotAllowed, `url for ${JSON.stringify(path)} is not an http(s) URL without credentials`, { path });
    const candidate = comparableForm(url);
    if (!this.prefixes.some((prefix) => candidate.startsWith(prefix))) {
      throw new AgentFailure(FailureType.UrlNotAllowed, `url for ${JSON.stringify(path)} at ${url.origin} is not under an allowed prefix`, {
        path,
        url: url.origin,
      });
    }
  }
}
