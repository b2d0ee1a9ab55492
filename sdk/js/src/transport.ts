import { parseRetryAfter } from './backoff.js';
import { PersonalizeError } from './errors.js';
import type { FetchLike } from './types.js';

export interface PostOptions {
  fetch?: FetchLike;
  headers?: Record<string, string>;
  /** fetch's keepalive: the request outlives the page (used on page hide). */
  keepalive?: boolean;
}

/** `endpoint` + `path`, without a doubled slash. */
export function url(endpoint: string, path: string): string {
  return endpoint.replace(/\/+$/, '') + path;
}

function resolveFetch(f?: FetchLike): FetchLike {
  const g = f ?? (globalThis as { fetch?: FetchLike }).fetch;
  if (!g) throw new PersonalizeError('ConfigurationError', 'no fetch: pass options.fetch', 0);
  return f ? g : (u, i) => g.call(globalThis, u, i);
}

/** The error name as the AWS SDKs read it: x-amzn-ErrorType, else the body's `__type`, without
 * a `namespace#` prefix or a `:uri` suffix. */
function errorName(header: string | null, body: { __type?: string; code?: string }, status: number): string {
  const raw = header || body.__type || body.code || (status === 429 ? 'ThrottlingException'
    : status >= 500 ? 'ServiceUnavailableException' : 'UnknownError');
  return raw.split(':')[0]!.split('#').pop()!;
}

/** POST a JSON body; resolve with the parsed JSON answer or reject with a PersonalizeError. */
export async function postJson<T>(target: string, body: unknown, o: PostOptions = {}): Promise<T> {
  const f = resolveFetch(o.fetch);
  let res;
  try {
    res = await f(target, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...o.headers },
      body: JSON.stringify(body),
      ...(o.keepalive ? { keepalive: true } : {}),
    });
  } catch (e) {
    throw new PersonalizeError('NetworkError', `POST ${target} failed: ${(e as Error)?.message ?? e}`, 0);
  }
  let text = '';
  try {
    text = await res.text();
  } catch {
    // a body cut short: the status says enough
  }
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    if (res.ok) throw new PersonalizeError('SerializationException', `not JSON: ${text.slice(0, 200)}`, res.status);
  }
  if (res.ok) return parsed as T;
  const message = String(parsed.message ?? parsed.Message ?? (text.slice(0, 200) || `HTTP ${res.status}`));
  throw new PersonalizeError(errorName(res.headers.get('x-amzn-ErrorType'), parsed, res.status), message,
    res.status, parseRetryAfter(res.headers.get('Retry-After'), Date.now()));
}

/** navigator.sendBeacon with a string body (sent as text/plain, a CORS "simple" request: no
 * preflight). True when the browser took it; it then delivers it even after the page is gone. */
export function beacon(target: string, body: unknown): boolean {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (!nav || typeof nav.sendBeacon !== 'function') return false;
  try {
    return nav.sendBeacon(target, JSON.stringify(body));
  } catch {
    return false;
  }
}
