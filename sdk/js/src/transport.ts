import { parseRetryAfter } from './backoff.js';
import { PersonalizeError } from './errors.js';
import type { FetchLike } from './types.js';

export interface PostOptions {
  fetch?: FetchLike;
  headers?: Record<string, string>;
  /** fetch's keepalive: the request outlives the page (used on page hide). */
  keepalive?: boolean;
  /** Give up after this many ms without a complete answer (TimeoutError); 0 or absent: never. */
  timeoutMs?: number;
  /** Any of these aborting aborts the request (AbortError). */
  signals?: Array<AbortSignal | undefined>;
}

/** The default time a request may take, headers and body, before it fails with a TimeoutError. */
export const DEFAULT_TIMEOUT_MS = 10_000;

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

/** An AbortError for `signal` (the name the DOM and Node use for an aborted request). */
export function abortError(target: string): PersonalizeError {
  return new PersonalizeError('AbortError', `POST ${target} aborted`, 0);
}

/** POST a JSON body; resolve with the parsed JSON answer or reject with a PersonalizeError.
 * The whole exchange (connect, headers, body) must end within `timeoutMs`, else it is aborted
 * and rejects with a `TimeoutError` (status 0, retryable); any of `signals` aborts it with an
 * `AbortError`. Both hold even for a custom fetch that ignores `signal`. */
export async function postJson<T>(target: string, body: unknown, o: PostOptions = {}): Promise<T> {
  const f = resolveFetch(o.fetch);
  const outer = (o.signals ?? []).filter((x): x is AbortSignal => !!x);
  if (outer.some((x) => x.aborted)) throw abortError(target);
  const Ctl = (globalThis as { AbortController?: typeof AbortController }).AbortController;
  const ctl = Ctl ? new Ctl() : undefined;
  let fail: ((e: PersonalizeError) => void) | undefined;
  const stopped = new Promise<never>((_, reject) => { fail = reject; });
  stopped.catch(() => undefined);
  const stop = (e: PersonalizeError) => {
    fail!(e);
    try {
      ctl?.abort(e);
    } catch {
      // an old AbortController without a reason argument
    }
  };
  const ms = o.timeoutMs ?? 0;
  const timer = ms > 0 && Number.isFinite(ms)
    ? setTimeout(() => stop(new PersonalizeError('TimeoutError', `POST ${target}: no answer within ${ms} ms`, 0)), ms)
    : undefined;
  const onAbort = () => stop(abortError(target));
  outer.forEach((x) => x.addEventListener('abort', onAbort));
  try {
    return await Promise.race([exchange<T>(f, target, body, o, ctl?.signal), stopped]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    outer.forEach((x) => x.removeEventListener('abort', onAbort));
  }
}

async function exchange<T>(f: FetchLike, target: string, body: unknown, o: PostOptions,
                           signal: AbortSignal | undefined): Promise<T> {
  let res;
  try {
    res = await f(target, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...o.headers },
      body: JSON.stringify(body),
      ...(o.keepalive ? { keepalive: true } : {}),
      ...(signal ? { signal } : {}),
    });
  } catch (e) {
    if (e instanceof PersonalizeError) throw e;
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
